"""DESIGN.md's dependency rule: components meet only through ireid.core (and files)."""

import ast
from pathlib import Path

PACKAGES = Path(__file__).resolve().parents[1] / "packages"
ALLOWED = {
    "core": {"core"},
    "retriever": {"core"},
    "selector": {"core"},
    "questioner": {"core", "selector"},
    "answerer": {"core"},
    "chatreid": {"core"},
    "interactive": {"core", "retriever", "selector", "questioner", "answerer", "chatreid", "interactive"},
}


def imported_components(source: str) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(source)):
        names = []
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module]
        found.update(n.split(".")[1] for n in names if n.startswith("ireid.") and n.count(".") >= 1)
    return found


def test_rule_checker_sees_both_import_forms():
    assert imported_components("import ireid.selector.model\nfrom ireid.core import records") == {"selector", "core"}


def test_components_import_only_what_the_design_allows():
    violations = []
    for package in sorted(p for p in PACKAGES.iterdir() if p.is_dir()):
        assert package.name in ALLOWED, f"new package {package.name}: add it to the rule in DESIGN.md and here"
        for path in package.rglob("*.py"):
            own = {package.name}
            for target in imported_components(path.read_text()) - ALLOWED[package.name] - own:
                violations.append(f"{path.relative_to(PACKAGES)} imports ireid.{target}")
    assert not violations, "\n".join(violations)


def test_every_package_has_a_readme():
    missing = [p.name for p in PACKAGES.iterdir() if p.is_dir() and not (p / "README.md").exists()]
    assert not missing, f"packages without README.md: {missing}"

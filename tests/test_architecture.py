"""The dependency rules of ARCHITECTURE.md, checked on the source: components meet only through ireid.core and files.

- Every package may import `ireid.core`; the questioner may also import the selector (joint training).
- `ireid.interactive` (the loop, the strategies, the harness) imports only `ireid.core`.
- `ireid.app` composes everything: the `ireid` command, the demo, the end-to-end pipelines.
- No library module imports a command module (`cli.py`, `*_cli.py`, `__main__.py`): the library works without them.
- Each trained component loads its model through `inference.py`, which imports neither its LightningModule nor
  Lightning.
"""

import ast
import subprocess
import sys
from pathlib import Path

PACKAGES = Path(__file__).resolve().parents[1] / "packages"
COMPONENTS = {"core", "retriever", "selector", "questioner", "answerer", "chatreid", "icl", "interactive", "app"}
ALLOWED = {
    "core": {"core"},
    "retriever": {"core"},
    "selector": {"core"},
    "questioner": {"core", "selector"},
    "answerer": {"core"},
    "chatreid": {"core"},
    "icl": {"core"},
    "interactive": {"core"},
    "app": COMPONENTS,
}
INFERENCE = ("retriever", "selector", "questioner", "chatreid")


def imported_modules(source: str) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            found.update(f"{node.module}.{a.name}" for a in node.names)
    return {name for name in found if name.startswith("ireid.")}


def imported_components(source: str) -> set[str]:
    return {name.split(".")[1] for name in imported_modules(source) if name.count(".") >= 1}


def is_command_module(name: str) -> bool:
    last = name.rsplit(".", 1)[-1]
    return last in ("cli", "__main__") or last.endswith("_cli")


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGES).with_suffix("").parts
    return ".".join(("ireid", *parts))


def test_rule_checker_sees_both_import_forms():
    source = "import ireid.selector.model\nfrom ireid.core import records\nfrom ireid.app import eval_cli"
    assert imported_components(source) == {"selector", "core", "app"}
    assert any(is_command_module(m) for m in imported_modules(source))
    assert not is_command_module("ireid.core.records") and is_command_module("ireid.retriever.index_cli")


def test_components_import_only_what_the_design_allows():
    violations = []
    for package in sorted(p for p in PACKAGES.iterdir() if p.is_dir() and p.name != "__pycache__"):
        assert package.name in ALLOWED, f"new package {package.name}: add it to the rule in ARCHITECTURE.md and here"
        for path in package.rglob("*.py"):
            for target in imported_components(path.read_text()) - ALLOWED[package.name] - {package.name}:
                violations.append(f"{path.relative_to(PACKAGES)} imports ireid.{target}")
    assert not violations, "\n".join(violations)


def test_no_library_module_imports_a_command_module():
    violations = []
    for path in PACKAGES.rglob("*.py"):
        name = module_name(path)
        if name.startswith("ireid.app") or is_command_module(name):
            continue
        violations += [f"{name} imports {m}" for m in imported_modules(path.read_text()) if is_command_module(m)]
    assert not violations, "\n".join(violations)


def test_inference_loads_without_lightning_or_the_module():
    """One interpreter imports every inference surface; none may pull in Lightning or a LightningModule."""
    assert all((PACKAGES / c / "inference.py").exists() for c in INFERENCE)
    modules = [f"ireid.{c}.inference" for c in INFERENCE]
    code = (
        f"import importlib, sys\nfor m in {modules!r}: importlib.import_module(m)\n"
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in ('lightning', 'pytorch_lightning')"
        f" or m in {[f'ireid.{c}.module' for c in INFERENCE]!r})\n"
        "assert not bad, bad"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-2000:]


def test_every_package_has_a_readme():
    missing = [p.name for p in PACKAGES.iterdir() if p.is_dir() and not (p / "README.md").exists()]
    assert not missing, f"packages without README.md: {missing}"

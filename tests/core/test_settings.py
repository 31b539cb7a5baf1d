"""Settings files read into nested dataclasses, with errors naming the file and the field."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import pytest

from ireid.core.settings import load_settings


@dataclass
class Inner:
    steps: int = 10
    name: str = "a"


@dataclass
class Outer:
    seeds: list[int] = field(default_factory=lambda: [1, 2])
    inner: Inner = field(default_factory=Inner)
    optional: Inner | None = None

    def __post_init__(self) -> None:
        if not self.seeds:
            raise ValueError("config field 'seeds': at least one seed")


def write(tmp_path: Path, text: str | bytes) -> Path:
    path = tmp_path / "settings.yaml"
    path.write_bytes(text.encode() if isinstance(text, str) else text)
    return path


def test_defaults_then_the_file_nested_fields_included(tmp_path: Path) -> None:
    assert load_settings(Outer, None) == Outer()
    read = load_settings(Outer, write(tmp_path, "seeds: [4]\ninner: {steps: 3}\noptional: {name: b}\n"))
    assert read == Outer(seeds=[4], inner=Inner(steps=3), optional=Inner(name="b"))
    assert load_settings(Outer, write(tmp_path, "optional: null\n")).optional is None


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("seedz: [1]\n", r"settings\.yaml: unknown keys \['seedz'\]"),
        ("inner: {step: 3}\n", r"settings\.yaml: field 'inner': unknown keys \['step'\]"),
        ("inner: 3\n", r"settings\.yaml: field 'inner': expected a mapping, got int"),
        ("seeds: []\n", r"settings\.yaml: config field 'seeds': at least one seed"),
        ("- 1\n- 2\n", r"settings\.yaml: expected a mapping of settings at the top level"),
        ("inner: {steps: [1\n", r"settings\.yaml: not a readable YAML file"),
        (b"name: \xff\xfe\n", r"settings\.yaml: not a readable YAML file"),
    ],
)
def test_bad_files_name_the_file_and_field(tmp_path: Path, text: str | bytes, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        load_settings(Outer, write(tmp_path, text))


def test_a_missing_file_is_named(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=r"nothing\.yaml: config file not found"):
        load_settings(Outer, tmp_path / "nothing.yaml")

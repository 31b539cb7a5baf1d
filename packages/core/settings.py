"""Settings files: a YAML mapping read into a (nested) dataclass, every unknown or mistyped key named.

Commands that take a config file (`ireid eval interactive`, `ireid eval learning`) describe it as dataclasses
whose defaults are the embedded settings; this turns the file into them, with errors that name the file and the
field, so a typo is one clear line rather than a setting silently ignored.
"""

from __future__ import annotations

import dataclasses
import typing
from pathlib import Path
from typing import Any, TypeVar

import yaml

T = TypeVar("T")


def _dataclass_of(annotation: Any) -> type | None:
    """The dataclass an annotation names (also inside `X | None`), else None."""
    if dataclasses.is_dataclass(annotation):
        return annotation  # type: ignore[return-value]
    for arg in typing.get_args(annotation):
        if dataclasses.is_dataclass(arg):
            return arg  # type: ignore[return-value]
    return None


def from_mapping(cls: type[T], data: Any, where: str = "config") -> T:
    """`cls(**data)`, with nested dataclass fields built from nested mappings; unknown keys are errors."""
    if not isinstance(data, dict):
        raise ValueError(f"{where}: expected a mapping, got {type(data).__name__}")
    hints = typing.get_type_hints(cls)
    known = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    unknown = sorted(set(data) - known)
    if unknown:
        raise ValueError(f"{where}: unknown keys {unknown}; known: {sorted(known)}")
    values = {}
    for name, value in data.items():
        nested = _dataclass_of(hints[name])
        if nested is not None and value is not None:
            value = from_mapping(nested, value, f"{where}: field {name!r}")
        values[name] = value
    try:
        return cls(**values)
    except (TypeError, ValueError) as error:  # a missing argument, or a value `__post_init__` refuses
        raise ValueError(f"{where}: {error}") from error


def load_settings(cls: type[T], path: Path | str | None) -> T:
    """The defaults of `cls`, updated by the YAML file at `path` (when given)."""
    if path is None:
        return cls()
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: config file not found")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except (UnicodeDecodeError, yaml.YAMLError) as error:
        raise ValueError(f"{path}: not a readable YAML file ({error})") from error
    if not isinstance(data, dict):
        raise ValueError(f"{path}: expected a mapping of settings at the top level")
    return from_mapping(cls, data, where=str(path))

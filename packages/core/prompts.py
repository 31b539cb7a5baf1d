"""Prompt files: each package keeps its prompts as data under `prompts/`, the first line citing the source."""

from __future__ import annotations

from importlib import resources


def read_prompt(package: str, name: str) -> str:
    """`<package>/prompts/<name>` without its first-line citation comment ("# ..."), stripped."""
    lines = resources.files(package).joinpath("prompts", name).read_text(encoding="utf-8").splitlines()
    return "\n".join(lines[1:] if lines and lines[0].startswith("#") else lines).strip()

"""Reading torch files and Lightning checkpoints safely: one place for `torch.load(..., weights_only=True)` and
its refusals.

A file that is missing, not a torch file, or holds anything beyond tensors and plain types is an error that names
it (a `ValueError`, so commands end it in one line), never a traceback from inside `torch.load`.
"""

from __future__ import annotations

import io
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch

from ireid.core.shards import atomic_write_bytes


def save_torch_file(path: str | Path, obj: Any) -> Path:
    """`torch.save` written whole or not at all: a reader, or a job resumed after a kill, never sees half a file."""
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    atomic_write_bytes(Path(path), buffer.getvalue())
    return Path(path)


def read_torch_file(path: str | Path, what: str, mmap: bool = False) -> Any:
    """A file written by `torch.save`, on CPU (`weights_only=True`; `mmap` maps the tensors instead of reading
    them); `what` names the expected kind in errors."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: {what} not found")
    try:
        return torch.load(path, map_location="cpu", weights_only=True, mmap=mmap)
    except Exception as error:  # torch.load raises many types for foreign, damaged or code-carrying files
        raise ValueError(f"{path}: {refusal(error)} (expected a {what})") from error


def read_format_file(
    path: str | Path, what: str, file_format: str, fields: Sequence[str], hint: str = ""
) -> dict[str, Any]:  # fmt: skip
    """A `read_torch_file` dict whose field 'format' is `file_format` and which holds every one of `fields`; errors name
    the file and the field (`hint` follows a foreign format of this project)."""
    data = read_torch_file(path, what)
    if not isinstance(data, dict) or data.get("format") != file_format:
        found = data.get("format") if isinstance(data, dict) else type(data).__name__
        advice = hint if hint and str(found).startswith("ireid.") else ""
        raise ValueError(f"{path}: field 'format' must be {file_format!r}, got {found!r}{advice}")
    for key in fields:
        if key not in data:
            raise ValueError(f"{path}: missing field {key!r}")
    return data


_GLOBAL = re.compile(r"(?:unsupported GLOBAL|Unsupported global: GLOBAL) ([\w.]+)")


def refusal(error: BaseException) -> str:
    """Why `torch.load(weights_only=True)` refused a file, in one line, without torch's advice to turn the check off:
    a file that would run code is refused, not worked around."""
    message = str(error)
    found = _GLOBAL.search(message)
    if found:
        return f"refused: not a weights-only checkpoint (it holds {found.group(1)}, not only tensors and plain types)"
    if isinstance(error, EOFError) or "central directory" in message or "failed reading zip archive" in message:
        return "truncated or damaged: not a complete torch file (written only partly, or copied incompletely?)"
    if "Weights only load failed" in message and "Unsupported operand" not in message:
        return "refused: not a weights-only checkpoint (it holds more than tensors and plain types)"
    return f"not a torch file ({type(error).__name__})"


def read_checkpoint_file(path: str | Path, what: str = "checkpoint", mmap: bool = False) -> dict[str, Any]:
    """A Lightning checkpoint's contents (`read_torch_file`), which must hold a 'state_dict'."""
    checkpoint = read_torch_file(path, what, mmap)
    if not isinstance(checkpoint, dict) or not isinstance(checkpoint.get("state_dict"), Mapping):
        raise ValueError(f"{path}: not a {what}, expected a dict with field 'state_dict'")
    return checkpoint

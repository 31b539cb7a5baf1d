"""Reading torch files and Lightning checkpoints safely: one place for `torch.load(..., weights_only=True)` and
its refusals.

A file that is missing, not a torch file, or holds anything beyond tensors and plain types is an error that names
it (a `ValueError`, so commands end it in one line), never a traceback from inside `torch.load`.
"""

from __future__ import annotations

import pickle
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch


def read_torch_file(path: str | Path, what: str, mmap: bool = False) -> Any:
    """A file written by `torch.save`, on CPU (`weights_only=True`; `mmap` maps the tensors instead of reading
    them); `what` names the expected kind in errors."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: {what} not found")
    try:
        return torch.load(path, map_location="cpu", weights_only=True, mmap=mmap)
    except (pickle.UnpicklingError, RuntimeError, EOFError) as error:
        reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise ValueError(f"{path}: not a {what} (torch.load with weights_only=True refused it: {reason})") from error


def read_checkpoint_file(path: str | Path, what: str = "checkpoint", mmap: bool = False) -> dict[str, Any]:
    """A Lightning checkpoint's contents (`read_torch_file`), which must hold a 'state_dict'."""
    checkpoint = read_torch_file(path, what, mmap)
    if not isinstance(checkpoint, dict) or not isinstance(checkpoint.get("state_dict"), Mapping):
        raise ValueError(f"{path}: not a {what}, expected a dict with field 'state_dict'")
    return checkpoint

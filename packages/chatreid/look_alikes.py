"""Look-alikes: for each image of a split, the other people a retriever ranks closest to it.

The instruction engine can draw image-to-image distractors from them (`Pool.look_alikes`), so that the
decoder learns to tell apart the people that the retriever's filter leaves together at evaluation time, not
only strangers. This is a departure from the paper (its distractors are random people), offered as an option.
The file is JSON, written atomically: `{"format": FORMAT, "source": {...}, "top_k": k, "look_alikes": {key: [keys]}}`.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ireid.core.gallery import Gallery, closest_other_people
from ireid.core.shards import atomic_write_json

FORMAT = "ireid.look-alikes/1"
CHUNK = 1024  # query rows per similarity block: [CHUNK, N] floats at a time


class LookAlikeError(ValueError):
    """A look-alike file that cannot be used; the message names the file and the field."""


def look_alikes_from_gallery(gallery: Gallery, top_k: int) -> dict[str, list[str]]:
    """For every image, the keys of the `top_k` most similar images of other people, most similar first."""
    if top_k < 1:
        raise ValueError(f"top_k must be at least 1, got {top_k}")
    found: dict[str, list[str]] = {}
    for start in range(0, len(gallery), CHUNK):
        pids = gallery.pids[start : start + CHUNK]
        others = (pids[:, None] != gallery.pids[None, :]).sum(dim=1)
        k = min(top_k, int(others.min()))  # the same count for every image
        if k < 1:
            raise ValueError("look-alikes need images of at least two people")
        scores = gallery.embeddings[start : start + CHUNK] @ gallery.embeddings.T
        for offset, indices in enumerate(closest_other_people(scores, pids, gallery.pids, k)):
            found[gallery.keys[start + offset]] = [gallery.keys[i] for i in indices]
    return found


def save_look_alikes(
    path: Path | str, look_alikes: Mapping[str, list[str]], top_k: int, source: dict[str, Any]
) -> Path:
    """Write the file (atomically); `source` says where it came from (retriever, data, split)."""
    path = Path(path)
    atomic_write_json(path, {"format": FORMAT, "source": source, "top_k": top_k, "look_alikes": dict(look_alikes)})
    return path


def load_look_alikes(path: Path | str, known_keys: set[str] | None = None) -> dict[str, list[str]]:
    """Read and check a look-alike file; with `known_keys`, every key must be one of them (the split it is used on)."""
    path = Path(path)
    try:
        payload = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        hint = "write one with `ireid chatreid mine-look-alikes`"
        raise LookAlikeError(f"{path}: no such look-alike file ({hint})") from None
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise LookAlikeError(f"{path}: not a UTF-8 JSON look-alike file ({exc})") from None
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        found = payload.get("format") if isinstance(payload, dict) else type(payload).__name__
        raise LookAlikeError(f"{path}: field 'format' is {found!r}, expected {FORMAT!r}")
    table = payload.get("look_alikes")
    if not isinstance(table, dict) or not all(
        isinstance(key, str) and isinstance(keys, list) and all(isinstance(k, str) for k in keys)
        for key, keys in table.items()
    ):
        raise LookAlikeError(f"{path}: field 'look_alikes' must map image keys to lists of image keys")
    if known_keys is not None:
        named = set(table) | {k for keys in table.values() for k in keys}
        unknown = sorted(named - known_keys)
        if unknown:
            raise LookAlikeError(
                f"{path}: field 'look_alikes' names {len(unknown)} images the data does not have "
                f"(first: {unknown[0]!r}); mine it again on this data and split"
            )
    return table

"""A base T-ReID model's similarities saved as a file, for LLaVA-ReID's Table 2 integration (§5.3): the base model
(IRRA, RDE, or any other) scores each query's initial description against the gallery once, in its own code or
with `ireid eval similarity`, and the harness averages those scores with the dialogue's.

The file is a NumPy `.npz` read without pickle: `scores` (float, queries × gallery), `query_keys` and
`gallery_keys` (strings, the records' keys, in the order of the rows and columns). Rows and columns are looked up by
key, so the file's order need not match the evaluation's.
"""

from __future__ import annotations

import io
import zipfile
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from ireid.core.shards import atomic_write_bytes

FIELDS = ("scores", "query_keys", "gallery_keys")


def save_similarity(path: str | Path, scores: np.ndarray, query_keys: Sequence[str], gallery_keys: Sequence[str]):
    """Write the matrix (rows: queries, columns: gallery images) with the keys that name them, atomically."""
    scores = np.asarray(scores, dtype=np.float32)
    if scores.shape != (len(query_keys), len(gallery_keys)):
        raise ValueError(f"scores of shape {scores.shape} for {len(query_keys)} queries × {len(gallery_keys)} images")
    buffer = io.BytesIO()
    np.savez(buffer, scores=scores, query_keys=np.array(query_keys, dtype=str),
             gallery_keys=np.array(gallery_keys, dtype=str))  # fmt: skip
    atomic_write_bytes(Path(path), buffer.getvalue())


class SimilarityFile:
    """A saved similarity matrix, indexed by query and gallery keys."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        if not self.path.is_file():
            raise FileNotFoundError(f"{self.path}: similarity file not found")
        try:
            with np.load(self.path, allow_pickle=False) as data:
                arrays = {name: data[name] for name in data.files}
        except (OSError, ValueError, EOFError, zipfile.BadZipFile) as error:
            raise ValueError(f"{self.path}: not a NumPy .npz similarity file ({error})") from error
        for name in FIELDS:
            if name not in arrays:
                raise ValueError(f"{self.path}: field {name!r} missing (expected {', '.join(FIELDS)})")
        scores, queries, gallery = arrays["scores"], arrays["query_keys"], arrays["gallery_keys"]
        if scores.ndim != 2 or not np.issubdtype(scores.dtype, np.floating):
            raise ValueError(
                f"{self.path}: field 'scores' must be a 2-D float matrix, got {scores.dtype} {scores.shape}"
            )
        for name, keys, size in (("query_keys", queries, scores.shape[0]), ("gallery_keys", gallery, scores.shape[1])):
            if keys.ndim != 1 or keys.dtype.kind != "U" or len(keys) != size:
                raise ValueError(f"{self.path}: field {name!r} must hold {size} strings, got {keys.dtype} {keys.shape}")
            if len(set(keys.tolist())) != size:
                raise ValueError(f"{self.path}: field {name!r} repeats a key")
        if not np.isfinite(scores).all():
            raise ValueError(f"{self.path}: field 'scores' holds a NaN or infinite value")
        self.scores = torch.from_numpy(scores.astype(np.float32))
        self.rows = {key: i for i, key in enumerate(queries.tolist())}
        self.columns = {key: i for i, key in enumerate(gallery.tolist())}

    def lookup(self, query_keys: Sequence[str], gallery_keys: Sequence[str]) -> Tensor:
        """[len(query_keys), len(gallery_keys)]: the saved scores in the evaluation's order."""
        for name, wanted, have in (("query_keys", query_keys, self.rows), ("gallery_keys", gallery_keys, self.columns)):
            missing = [key for key in wanted if key not in have]
            if missing:
                raise ValueError(f"{self.path}: field {name!r} lacks {len(missing)} key(s) of this evaluation, "
                                 f"first {missing[0]!r}")  # fmt: skip
        rows = torch.tensor([self.rows[k] for k in query_keys], dtype=torch.long)
        columns = torch.tensor([self.columns[k] for k in gallery_keys], dtype=torch.long)
        return self.scores[rows][:, columns]

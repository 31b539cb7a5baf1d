"""Row arrays of a gallery: L2 normalisation and chunked traversal, shared by the search backends and the storage.

A gallery may be millions of fp16 rows memory-mapped from disk; anything that converts or scores them does so
CHUNK_ROWS rows at a time, so the float32 temporaries stay bounded whatever the gallery's size. CHUNK_ROWS is
read at call time, so a test may patch it here to exercise chunk boundaries.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
from torch import Tensor

CHUNK_ROWS = 65536  # rows upcast / scored at a time: bounds the float32 temporaries


def rows_float32(x: Tensor | np.ndarray, what: str) -> np.ndarray:
    """[N, D] float32, C-contiguous, L2-normalised (zero rows stay zero); `what` names the input in errors."""
    a = x.detach().cpu().float().numpy() if isinstance(x, Tensor) else np.asarray(x, dtype=np.float32)
    if a.ndim != 2:
        raise ValueError(f"{what} must be [N, D], got shape {a.shape}")
    norms = np.linalg.norm(a, axis=1, keepdims=True)
    return np.ascontiguousarray(a / np.maximum(norms, 1e-12), dtype=np.float32)


def chunks(n: int) -> Iterator[tuple[int, int]]:
    """(start, stop) of consecutive CHUNK_ROWS-row slices covering n rows."""
    for start in range(0, n, CHUNK_ROWS):
        yield start, min(n, start + CHUNK_ROWS)


def upcast(embeddings: np.ndarray) -> np.ndarray:
    """float32 copy of fp16 rows, converted a chunk at a time (the source may be a memmap)."""
    out = np.empty(embeddings.shape, dtype=np.float32)
    for start, stop in chunks(len(embeddings)):
        out[start:stop] = embeddings[start:stop]
    return out

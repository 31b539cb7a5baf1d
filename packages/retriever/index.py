"""`GalleryIndex`: a searchable gallery of L2-normalised image embeddings, fp16 on disk, float32 scores.

This module is the facade; the parts live beside it:

- `gallery_search.py`: the backends, `faiss` (exact), `faiss-ivf` (approximate, for millions of images) and
  `torch` (exact, the reference), each holding a float32 copy of the embeddings in RAM (4·D bytes per image);
- `gallery_storage.py`: the folder format (index.json, fp16 .npy, keys, generation-tagged atomic writes, checked
  loading);
- `gallery_folder.py`: the reader of a folder of images (`iter_image_folder`);
- `gallery_rows.py`: normalisation and the CHUNK_ROWS chunking they share.

Their public names are importable from here too, as before the split. Scores are cosine similarities in float32.
Result order: descending score, equal scores by ascending gallery index. When equal scores straddle the k-th
place, `torch` returns the lowest indices among them (the first k of that stable order); the FAISS backends
return an unspecified subset of them (their heaps' choice).

CPU kinds: faiss-cpu picks its AVX2 or AVX-512 build at import (override with FAISS_OPT_LEVEL) and torch picks its
kernels by `torch.backends.cpu.get_cpu_capability()` (override with ATEN_CPU_CAPABILITY). The summation order,
and so the last bits of a float32 score, depends on that choice: scores agree to ~1e-6 across backends and CPU
kinds, and two images whose scores differ by less than that may swap places. `make test-avx2` runs the suite with
every library held to AVX2, to check a change on the other CPU kind.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from itertools import islice
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch import Tensor
from tqdm import tqdm

from ireid.retriever.gallery_folder import IMAGE_SUFFIXES, iter_image_folder
from ireid.retriever.gallery_rows import CHUNK_ROWS, rows_float32
from ireid.retriever.gallery_search import (
    BACKENDS,
    DEFAULT_NPROBE,
    TRAIN_POINTS_PER_LIST,
    FaissIVF,
    Searcher,
    default_nlist,
    make_searcher,
)
from ireid.retriever.gallery_storage import (
    FORMAT,
    INDEX_FILE,
    GalleryIndexError,
    NpyAppender,
    commit_generation,
    discard,
    embeddings_file,
    new_generation,
    read_gallery,
    write_embeddings,
)

__all__ = [
    "BACKENDS",
    "CHUNK_ROWS",
    "DEFAULT_NPROBE",
    "FORMAT",
    "IMAGE_SUFFIXES",
    "INDEX_FILE",
    "TRAIN_POINTS_PER_LIST",
    "EncodedBatch",
    "GalleryIndex",
    "GalleryIndexError",
    "Item",
    "default_nlist",
    "iter_image_folder",
]

Item = tuple[str, Image.Image] | tuple[str, Image.Image, int | None]


class GalleryIndex:
    """Embeddings (fp16 [N, D], normalised), unique keys, optional person ids, and top-k search over them.

    The search backend is built on the first search (or eagerly by `build`/`save` for IVF, to save its
    training); `load` is therefore cheap and only memory-maps the embeddings.
    """

    def __init__(
        self,
        embeddings: np.ndarray,
        keys: Sequence[str],
        pids: np.ndarray | None = None,
        backend: str = "faiss",
        nprobe: int = DEFAULT_NPROBE,
        nlist: int | None = None,
        ivf_state: tuple[np.ndarray, np.ndarray] | None = None,
    ):
        if backend not in BACKENDS:
            raise ValueError(f"unknown backend {backend!r}; expected one of {BACKENDS}")
        if embeddings.ndim != 2 or embeddings.dtype != np.float16:
            raise ValueError(f"embeddings must be float16 [N, D], got {embeddings.dtype} {embeddings.shape}")
        if len(embeddings) == 0:
            raise ValueError("a gallery needs at least one embedding")
        if len(keys) != len(embeddings):
            raise ValueError(f"{len(keys)} keys for {len(embeddings)} embeddings")
        if len(set(keys)) != len(keys):
            raise ValueError("gallery keys must be unique")
        if pids is not None:
            pids = np.asarray(pids, dtype=np.int64)
            if pids.shape != (len(embeddings),):
                raise ValueError(f"pids must be [{len(embeddings)}], got {pids.shape}")
        self.embeddings = embeddings
        self.keys = list(keys)
        self.pids = pids
        self.backend = backend
        self.nlist = nlist or default_nlist(len(embeddings))
        self._nprobe = nprobe
        self._ivf_state = ivf_state
        self._searcher: Searcher | None = None

    def __len__(self) -> int:
        return len(self.embeddings)

    @property
    def dim(self) -> int:
        return self.embeddings.shape[1]

    @property
    def nprobe(self) -> int:
        return self._nprobe

    @nprobe.setter
    def nprobe(self, value: int) -> None:
        self._nprobe = value
        if isinstance(self._searcher, FaissIVF):
            self._searcher.nprobe = value

    @classmethod
    def from_embeddings(
        cls,
        embeddings: Tensor | np.ndarray,
        keys: Sequence[str],
        pids: Sequence[int] | np.ndarray | Tensor | None = None,
        backend: str = "faiss",
        **options: Any,
    ) -> GalleryIndex:
        """An in-memory gallery; rows are L2-normalised in float32, then stored as fp16."""
        emb = rows_float32(embeddings, "embeddings").astype(np.float16)
        pid_array = None if pids is None else np.asarray(pids, dtype=np.int64)
        return cls(emb, keys, pid_array, backend=backend, **options)

    def _get_searcher(self) -> Searcher:
        if self._searcher is None:
            self._searcher = make_searcher(self.backend, self.embeddings, self.nlist, self._nprobe, self._ivf_state)
            self._ivf_state = None
        return self._searcher

    def search(self, queries: Tensor | np.ndarray, k: int) -> tuple[Tensor, Tensor]:
        """Top-k by cosine similarity: (scores [Q, k'] float32, indices [Q, k'] int64), k' = min(k, N).

        Queries are L2-normalised here, so raw encoder outputs may be passed.
        """
        if k < 1:
            raise ValueError(f"k must be at least 1, got {k}")
        q = rows_float32(queries, "queries")
        if q.shape[1] != self.dim:
            raise ValueError(f"queries have dimension {q.shape[1]}, the gallery {self.dim}")
        scores, ids = self._get_searcher().search(q, min(k, len(self)))
        order = np.lexsort((ids, -scores), axis=1)
        scores = np.take_along_axis(scores, order, axis=1).astype(np.float32)
        ids = np.take_along_axis(ids, order, axis=1).astype(np.int64)
        return torch.from_numpy(scores), torch.from_numpy(ids)

    def search_keys(self, queries: Tensor | np.ndarray, k: int) -> list[list[str]]:
        """Keys of the top-k items of each query, best first (IVF padding, index -1, is dropped)."""
        _, ids = self.search(queries, k)
        return [[self.keys[i] for i in row if i >= 0] for row in ids.tolist()]

    # --- persistence (the format is gallery_storage's) ---------------------------------------------

    def save(self, out_dir: Path | str) -> Path:
        """Write the gallery into `out_dir` atomically (see gallery_storage); returns index.json's path."""
        out_dir = Path(out_dir)
        out_dir.mkdir(parents=True, exist_ok=True)
        tag, tmp = new_generation(out_dir)
        try:
            write_embeddings(tmp, self.embeddings)
        except BaseException:
            discard(out_dir, tag)
            raise
        return self._commit(out_dir, tag, tmp)

    def _stored_arrays(self) -> dict[str, np.ndarray]:
        """The optional arrays saved beside embeddings and keys: pids, and for IVF its training (trained now)."""
        arrays = {} if self.pids is None else {"pids": self.pids}
        searcher = self._get_searcher() if self.backend == "faiss-ivf" else None
        if isinstance(searcher, FaissIVF):
            arrays.update(ivf_centroids=searcher.centroids(), ivf_lists=searcher.lists)
        return arrays

    def _commit(self, out_dir: Path, tag: str, embeddings_tmp: Path) -> Path:
        return commit_generation(
            out_dir,
            tag,
            embeddings_tmp,
            self.keys,
            self._stored_arrays,
            count=len(self),
            dim=self.dim,
            backend=self.backend,
            nlist=self.nlist,
            nprobe=self._nprobe,
        )

    @classmethod
    def load(cls, folder: Path | str, backend: str | None = None, **options: Any) -> GalleryIndex:
        """Open a saved gallery (embeddings memory-mapped read-only); `backend`/`options` override the saved ones.

        Missing, truncated or inconsistent files raise GalleryIndexError naming the file.
        """
        stored = read_gallery(Path(folder), backend, options.pop("nlist", None))
        options.setdefault("nprobe", stored.nprobe)
        return cls(
            stored.embeddings,
            stored.keys,
            stored.pids,
            backend=stored.backend,
            nlist=stored.nlist,
            ivf_state=stored.ivf_state,
            **options,
        )

    @classmethod
    def build(
        cls,
        embed_fn: Callable[[list[Image.Image]], Tensor],
        items: Iterable[Item],
        out_dir: Path | str,
        batch_size: int = 64,
        backend: str = "faiss",
        total: int | None = None,
        progress: bool = True,
        **options: Any,
    ) -> GalleryIndex:
        """Encode (key, image[, pid]) items in batches into `out_dir` and return the saved gallery.

        Embeddings go straight into an fp16 memmap on disk as they are computed, so the gallery never has to
        fit in RAM as float32 while encoding. `total` (default: len(items) when defined) sizes the progress
        bar and the first allocation. Person ids must be given for all items or for none.
        """
        if total is None and isinstance(items, Sequence):
            total = len(items)

        def encoded() -> Iterator[EncodedBatch]:
            for batch in _batched(items, batch_size):
                with torch.no_grad():
                    feats = rows_float32(embed_fn([item[1] for item in batch]), "embed_fn output")
                if len(feats) != len(batch):
                    raise ValueError(f"embed_fn returned {len(feats)} rows for {len(batch)} images")
                yield EncodedBatch(
                    [item[0] for item in batch], feats, [item[2] if len(item) > 2 else None for item in batch]
                )

        return cls.from_encoded(encoded(), out_dir, total, backend, progress, **options)

    @classmethod
    def from_encoded(
        cls,
        batches: Iterable[EncodedBatch],
        out_dir: Path | str,
        total: int | None = None,
        backend: str = "faiss",
        progress: bool = True,
        **options: Any,
    ) -> GalleryIndex:
        """Write batches of already encoded items, in order, into `out_dir` and return the saved gallery (what
        `build` does after encoding; encoding elsewhere, in other processes, comes in here)."""
        out_dir = Path(out_dir)
        out_dir.mkdir(parents=True, exist_ok=True)
        tag, tmp = new_generation(out_dir)
        keys: list[str] = []
        pids: list[int | None] = []
        writer: NpyAppender | None = None
        try:
            with tqdm(total=total, unit="img", desc="encoding gallery", disable=not progress) as bar:
                for batch in batches:
                    if not batch.keys:
                        continue
                    writer = writer or NpyAppender(tmp, batch.rows.shape[1], total or 4096)
                    writer.append(batch.rows.astype(np.float16))
                    keys.extend(batch.keys)
                    pids.extend(batch.pids)
                    bar.update(len(batch.keys))
            if writer is None:
                raise ValueError("no items to index")
            embeddings = writer.finish()
            known = [p is not None for p in pids]
            if any(known) and not all(known):
                raise ValueError(f"person ids given for {sum(known)} of {len(pids)} items: give all or none")
            pid_array = np.asarray(pids, dtype=np.int64) if all(known) else None
            index = cls(embeddings, keys, pid_array, backend=backend, **options)
        except BaseException:
            discard(out_dir, tag)
            raise
        index._commit(out_dir, tag, tmp)
        index.embeddings = np.load(out_dir / embeddings_file(tag), mmap_mode="r")
        return index


@dataclass
class EncodedBatch:
    """Consecutive gallery items with their embeddings (float32 rows [B, D]) and person ids (or None each)."""

    keys: list[str]
    rows: np.ndarray
    pids: list[int | None]


def _batched(items: Iterable[Item], size: int) -> Iterator[list[Item]]:
    if size < 1:
        raise ValueError(f"batch_size must be at least 1, got {size}")
    it = iter(items)
    while batch := list(islice(it, size)):
        yield batch

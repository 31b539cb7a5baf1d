"""A searchable gallery of L2-normalised image embeddings: fp16 on disk, float32 scores, three backends.

On disk a gallery is a folder: `index.json` (dim, count, backend, dtype and the names of the data files),
the embeddings as an fp16 `.npy` (memory-mapped on load), the keys as a JSON list, optionally the person ids
and, for IVF, the trained centroids and each item's list. Data files carry a generation tag in their names and
`index.json` is replaced last, so a reader sees either the old gallery or the new one, never a mix.

Backends: `faiss` (exact, IndexFlatIP), `faiss-ivf` (approximate, IVF-Flat with nlist ≈ 4·√N and `nprobe`
lists visited, for millions of images) and `torch` (exact, chunked matmul + top-k, the reference). Each holds
a float32 copy of the embeddings in RAM (4·D bytes per image); scores are cosine similarities in float32.
Result order: descending score, equal scores by ascending gallery index. When equal scores straddle the
k-th place, `torch` returns the lowest indices among them (the first k of that stable order); the FAISS
backends return an unspecified subset of them (their heaps' choice).

CPU kinds: faiss-cpu picks its AVX2 or AVX-512 build at import (override with FAISS_OPT_LEVEL) and torch picks its
kernels by `torch.backends.cpu.get_cpu_capability()` (override with ATEN_CPU_CAPABILITY). The summation order,
and so the last bits of a float32 score, depends on that choice: scores agree to ~1e-6 across backends and CPU
kinds, and two images whose scores differ by less than that may swap places. `make test-avx2` runs the suite with
every library held to AVX2, to check a change on the other CPU kind.
"""

from __future__ import annotations

import json
import logging
import math
import os
import uuid
from collections.abc import Callable, Iterable, Iterator, Sequence
from itertools import islice
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch import Tensor
from tqdm import tqdm

from ireid.core.loader import SkipCounter
from ireid.core.shards import atomic_write_json

log = logging.getLogger(__name__)

BACKENDS = ("faiss", "faiss-ivf", "torch")
INDEX_FILE = "index.json"
FORMAT = "ireid-gallery/1"
IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png"}
CHUNK_ROWS = 65536  # rows upcast / scored at a time: bounds the float32 temporaries
TRAIN_POINTS_PER_LIST = 40  # FAISS warns below 39 training points per IVF list
DEFAULT_NPROBE = 32

Item = tuple[str, Image.Image] | tuple[str, Image.Image, int | None]


class GalleryIndexError(RuntimeError):
    """A gallery folder that cannot be read or written as asked; the message names the file."""


def _rows_float32(x: Tensor | np.ndarray, what: str) -> np.ndarray:
    """[N, D] float32, C-contiguous, L2-normalised (zero rows stay zero)."""
    a = x.detach().cpu().float().numpy() if isinstance(x, Tensor) else np.asarray(x, dtype=np.float32)
    if a.ndim != 2:
        raise ValueError(f"{what} must be [N, D], got shape {a.shape}")
    norms = np.linalg.norm(a, axis=1, keepdims=True)
    return np.ascontiguousarray(a / np.maximum(norms, 1e-12), dtype=np.float32)


def _chunks(n: int) -> Iterator[tuple[int, int]]:
    for start in range(0, n, CHUNK_ROWS):
        yield start, min(n, start + CHUNK_ROWS)


def _upcast(embeddings: np.ndarray) -> np.ndarray:
    """float32 copy of fp16 rows, converted a chunk at a time (the source may be a memmap)."""
    out = np.empty(embeddings.shape, dtype=np.float32)
    for start, stop in _chunks(len(embeddings)):
        out[start:stop] = embeddings[start:stop]
    return out


def _top_k_first(scores: Tensor, k: int) -> tuple[Tensor, Tensor]:
    """Per-row top-k (scores, column positions); ties at the k-th place keep the lowest columns.

    torch.topk breaks such ties arbitrarily. A (k+1)-th value equal to the k-th reveals one; only those rows
    (rare with real embeddings) take the exact but slower path over the whole row.
    """
    k = min(k, scores.shape[1])
    top = scores.topk(min(k + 1, scores.shape[1]), dim=1)
    values, positions = top.values[:, :k].clone(), top.indices[:, :k].clone()
    if top.values.shape[1] > k:
        tied = (top.values[:, k] == top.values[:, k - 1]).nonzero().flatten()
        if len(tied):
            rows, kth = scores[tied], values[tied, -1:]
            above, level = rows > kth, rows == kth
            keep = above | (level & (level.cumsum(dim=1) <= k - above.sum(dim=1, keepdim=True)))
            positions[tied] = keep.nonzero()[:, 1].view(len(tied), k)
            values[tied] = rows.gather(1, positions[tied])
    return values, positions


def _best_first(scores: Tensor, ids: Tensor, k: int) -> tuple[Tensor, Tensor]:
    """The first k candidates in (descending score, ascending id) order: two stable sorts of a few columns."""
    order = ids.argsort(dim=1, stable=True)
    scores, ids = scores.gather(1, order), ids.gather(1, order)
    order = scores.argsort(dim=1, descending=True, stable=True)[:, :k]
    return scores.gather(1, order), ids.gather(1, order)


class _TorchSearch:
    """Exact search by float32 matmul over gallery chunks, merging per-chunk top-k."""

    def __init__(self, embeddings: np.ndarray):
        self.data = torch.from_numpy(_upcast(embeddings))

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        q = torch.from_numpy(queries)
        best_scores = torch.empty(len(q), 0)
        best_ids = torch.empty(len(q), 0, dtype=torch.long)
        for start, stop in _chunks(len(self.data)):
            scores, positions = _top_k_first(q @ self.data[start:stop].T, k)
            scores = torch.cat([best_scores, scores], dim=1)
            ids = torch.cat([best_ids, positions + start], dim=1)
            best_scores, best_ids = _best_first(scores, ids, k)
        return best_scores.numpy(), best_ids.numpy()


class _FaissFlat:
    """Exact inner-product search with FAISS."""

    def __init__(self, embeddings: np.ndarray):
        import faiss

        self.index = faiss.IndexFlatIP(embeddings.shape[1])
        for start, stop in _chunks(len(embeddings)):
            self.index.add(np.ascontiguousarray(embeddings[start:stop], dtype=np.float32))

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        return self.index.search(queries, k)


class _FaissIVF:
    """IVF-Flat: k-means lists over the gallery; a query scans the `nprobe` lists nearest to it.

    Training (k-means on a sample of TRAIN_POINTS_PER_LIST·nlist rows) and list assignment dominate the
    cost; both results are saved, so loading a saved IVF gallery only copies vectors into their lists.
    """

    def __init__(
        self,
        embeddings: np.ndarray,
        nlist: int,
        nprobe: int,
        centroids: np.ndarray | None = None,
        lists: np.ndarray | None = None,
    ):
        import faiss

        self.faiss = faiss
        dim = embeddings.shape[1]
        self.quantizer = faiss.IndexFlatIP(dim)
        self.index = faiss.IndexIVFFlat(self.quantizer, dim, nlist, faiss.METRIC_INNER_PRODUCT)
        if centroids is None:
            sample = min(len(embeddings), TRAIN_POINTS_PER_LIST * nlist)
            rows = np.sort(np.random.default_rng(0).choice(len(embeddings), sample, replace=False))
            self.index.train(np.ascontiguousarray(embeddings[rows], dtype=np.float32))
        else:
            self.quantizer.add(np.ascontiguousarray(centroids, dtype=np.float32))
            self.index.is_trained = True
        self.lists = np.empty(len(embeddings), dtype=np.int64)
        for start, stop in _chunks(len(embeddings)):
            x = np.ascontiguousarray(embeddings[start:stop], dtype=np.float32)
            if lists is None:
                self.lists[start:stop] = self.quantizer.search(x, 1)[1].ravel()
            else:
                self.lists[start:stop] = lists[start:stop]
            assigned = np.ascontiguousarray(self.lists[start:stop])
            self.index.add_core(len(x), faiss.swig_ptr(x), None, faiss.swig_ptr(assigned))
        self.nprobe = nprobe

    @property
    def nprobe(self) -> int:
        return self.index.nprobe

    @nprobe.setter
    def nprobe(self, value: int) -> None:
        self.index.nprobe = max(1, min(value, self.index.nlist))

    def centroids(self) -> np.ndarray:
        return self.quantizer.reconstruct_n(0, self.index.nlist)

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Fewer than k items in the visited lists pad the row with index -1 and score -3.4e38."""
        return self.index.search(queries, k)


def default_nlist(count: int) -> int:
    """≈ 4·√N IVF lists (a common FAISS rule of thumb), at most one per item."""
    return max(1, min(count, round(4 * math.sqrt(count))))


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
        self._searcher: _TorchSearch | _FaissFlat | _FaissIVF | None = None

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
        if isinstance(self._searcher, _FaissIVF):
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
        emb = _rows_float32(embeddings, "embeddings").astype(np.float16)
        pid_array = None if pids is None else np.asarray(pids, dtype=np.int64)
        return cls(emb, keys, pid_array, backend=backend, **options)

    def _get_searcher(self) -> _TorchSearch | _FaissFlat | _FaissIVF:
        if self._searcher is None:
            if self.backend == "torch":
                self._searcher = _TorchSearch(self.embeddings)
            elif self.backend == "faiss":
                self._searcher = _FaissFlat(self.embeddings)
            else:
                centroids, lists = self._ivf_state or (None, None)
                self._searcher = _FaissIVF(self.embeddings, self.nlist, self._nprobe, centroids, lists)
                self._ivf_state = None
        return self._searcher

    def search(self, queries: Tensor | np.ndarray, k: int) -> tuple[Tensor, Tensor]:
        """Top-k by cosine similarity: (scores [Q, k'] float32, indices [Q, k'] int64), k' = min(k, N).

        Queries are L2-normalised here, so raw encoder outputs may be passed.
        """
        if k < 1:
            raise ValueError(f"k must be at least 1, got {k}")
        q = _rows_float32(queries, "queries")
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

    # --- persistence -----------------------------------------------------------------------------

    def save(self, out_dir: Path | str) -> Path:
        """Write the gallery into `out_dir` atomically (see the module docstring); returns index.json's path."""
        out_dir = Path(out_dir)
        out_dir.mkdir(parents=True, exist_ok=True)
        tag = uuid.uuid4().hex[:12]
        tmp = out_dir / f"embeddings-{tag}.npy.tmp"
        try:
            copy = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.float16, shape=self.embeddings.shape)
            for start, stop in _chunks(len(self)):
                copy[start:stop] = self.embeddings[start:stop]
            _flush_memmap(copy)
            del copy
        except BaseException:
            _discard(out_dir, tag)
            raise
        return self._commit(out_dir, tag, tmp)

    def _commit(self, out_dir: Path, tag: str, embeddings_tmp: Path) -> Path:
        """Rename the written embeddings, write the other files, then replace index.json; drop the old files.

        Until index.json is replaced nothing refers to the new files, so a failure only discards them.
        """
        index_path = out_dir / INDEX_FILE
        previous = _listed_files(index_path)
        files = {"embeddings": f"embeddings-{tag}.npy", "keys": f"keys-{tag}.json"}
        try:
            os.replace(embeddings_tmp, out_dir / files["embeddings"])
            atomic_write_json(out_dir / files["keys"], self.keys)
            arrays = {} if self.pids is None else {"pids": self.pids}
            searcher = self._get_searcher() if self.backend == "faiss-ivf" else None
            if isinstance(searcher, _FaissIVF):
                arrays.update(ivf_centroids=searcher.centroids(), ivf_lists=searcher.lists)
            for name, array in arrays.items():
                files[name] = f"{name}-{tag}.npy"
                _atomic_save_npy(out_dir / files[name], array)
            meta = {
                "format": FORMAT,
                "count": len(self),
                "dim": self.dim,
                "dtype": "float16",
                "backend": self.backend,
                "nlist": self.nlist,
                "nprobe": self._nprobe,
                "files": files,
            }
            atomic_write_json(index_path, meta)
        except BaseException:
            _discard(out_dir, tag)
            raise
        for name in previous - set(files.values()):
            try:
                (out_dir / name).unlink(missing_ok=True)
            except OSError as exc:
                log.warning("could not remove the replaced gallery file %s (%s)", out_dir / name, exc)
        return index_path

    @classmethod
    def load(cls, folder: Path | str, backend: str | None = None, **options: Any) -> GalleryIndex:
        """Open a saved gallery (embeddings memory-mapped read-only); `backend`/`options` override the saved ones.

        Missing, truncated or inconsistent files raise GalleryIndexError naming the file.
        """
        folder = Path(folder)
        meta = _read_meta(folder / INDEX_FILE)
        files = meta["files"]
        count, dim = meta["count"], meta["dim"]
        embeddings = _load_npy(folder / files["embeddings"], np.float16, (count, dim), mmap=True)
        keys = _read_keys(folder / files["keys"], count)
        pids = _load_npy(folder / files["pids"], np.int64, (count,)) if "pids" in files else None
        backend = backend or meta["backend"]
        nlist = options.pop("nlist", None) or meta["nlist"]
        ivf_state = None
        if backend == "faiss-ivf" and "ivf_centroids" in files and nlist == meta["nlist"]:
            centroids = _load_npy(folder / files["ivf_centroids"], np.float32, (nlist, dim))
            lists = _load_npy(folder / files["ivf_lists"], np.int64, (count,))
            if lists.min() < 0 or lists.max() >= nlist:
                raise GalleryIndexError(f"{folder / files['ivf_lists']}: list ids outside [0, {nlist})")
            ivf_state = (centroids, lists)
        options.setdefault("nprobe", meta["nprobe"])
        return cls(embeddings, keys, pids, backend=backend, nlist=nlist, ivf_state=ivf_state, **options)

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
        out_dir = Path(out_dir)
        out_dir.mkdir(parents=True, exist_ok=True)
        tag = uuid.uuid4().hex[:12]
        tmp = out_dir / f"embeddings-{tag}.npy.tmp"
        if total is None and isinstance(items, Sequence):
            total = len(items)
        keys: list[str] = []
        pids: list[int | None] = []
        writer: _NpyAppender | None = None
        try:
            with tqdm(total=total, unit="img", desc="encoding gallery", disable=not progress) as bar:
                for batch in _batched(items, batch_size):
                    with torch.no_grad():
                        feats = _rows_float32(embed_fn([item[1] for item in batch]), "embed_fn output")
                    if len(feats) != len(batch):
                        raise ValueError(f"embed_fn returned {len(feats)} rows for {len(batch)} images")
                    writer = writer or _NpyAppender(tmp, feats.shape[1], total or 4096)
                    writer.append(feats.astype(np.float16))
                    keys.extend(item[0] for item in batch)
                    pids.extend(item[2] if len(item) > 2 else None for item in batch)
                    bar.update(len(batch))
            if writer is None:
                raise ValueError("no items to index")
            embeddings = writer.finish()
            known = [p is not None for p in pids]
            if any(known) and not all(known):
                raise ValueError(f"person ids given for {sum(known)} of {len(pids)} items: give all or none")
            pid_array = np.asarray(pids, dtype=np.int64) if all(known) else None
            index = cls(embeddings, keys, pid_array, backend=backend, **options)
        except BaseException:
            _discard(out_dir, tag)
            raise
        index._commit(out_dir, tag, tmp)
        index.embeddings = np.load(out_dir / f"embeddings-{tag}.npy", mmap_mode="r")
        return index


class _NpyAppender:
    """An fp16 [n, dim] .npy filled batch by batch through a memmap whose first axis grows in place.

    NumPy pads .npy headers so that the first dimension can grow without moving the data: growing (or the
    final trim) rewrites the header and changes the file length, never copies rows.
    """

    def __init__(self, path: Path, dim: int, capacity: int):
        self.path, self.dim, self.count = path, dim, 0
        self.array = np.lib.format.open_memmap(path, mode="w+", dtype=np.float16, shape=(max(1, capacity), dim))
        self.offset = self.array.offset

    def append(self, rows: np.ndarray) -> None:
        stop = self.count + len(rows)
        if stop > len(self.array):
            self._resize(max(stop, 2 * len(self.array)))
        self.array[self.count : stop] = rows
        self.count = stop

    def _resize(self, rows: int) -> None:
        _flush_memmap(self.array)
        del self.array
        with open(self.path, "r+b") as fh:
            header = {"descr": np.lib.format.dtype_to_descr(np.dtype(np.float16)), "fortran_order": False}
            np.lib.format.write_array_header_1_0(fh, {**header, "shape": (rows, self.dim)})
            if fh.tell() != self.offset:
                raise GalleryIndexError(f"{self.path}: .npy header changed size while resizing")
            fh.truncate(self.offset + rows * self.dim * 2)
        self.array = np.load(self.path, mmap_mode="r+")

    def finish(self) -> np.ndarray:
        """Trim to the rows written, flush to disk, and reopen read-only."""
        self._resize(self.count)
        _flush_memmap(self.array)
        del self.array
        return np.load(self.path, mmap_mode="r")


def _flush_memmap(array: np.memmap) -> None:
    array.flush()
    with open(array.filename, "rb+") as fh:
        os.fsync(fh.fileno())


def _batched(items: Iterable[Item], size: int) -> Iterator[list[Item]]:
    if size < 1:
        raise ValueError(f"batch_size must be at least 1, got {size}")
    it = iter(items)
    while batch := list(islice(it, size)):
        yield batch


def _atomic_save_npy(path: Path, array: np.ndarray) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as fh:
        np.save(fh, array)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def _listed_files(index_path: Path) -> set[str]:
    """File names the current index.json refers to (none if it is missing or unreadable)."""
    try:
        return set(json.loads(index_path.read_text())["files"].values())
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return set()


def _discard(out_dir: Path, tag: str) -> None:
    """Remove the files of an uncommitted save (their names carry its tag)."""
    for path in out_dir.glob(f"*-{tag}.*"):
        path.unlink(missing_ok=True)


def _read_json(path: Path, missing_hint: str) -> Any:
    """Parsed JSON of a gallery file; a missing or malformed file is an error naming it."""
    if not path.is_file():
        raise GalleryIndexError(f"{path}: missing ({missing_hint})")
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise GalleryIndexError(f"{path}: unreadable JSON ({exc})") from exc


def _read_meta(path: Path) -> dict[str, Any]:
    meta = _read_json(path, "not a saved gallery folder?")
    required = {"format": str, "count": int, "dim": int, "backend": str, "nlist": int, "nprobe": int, "files": dict}
    if not isinstance(meta, dict):
        raise GalleryIndexError(f"{path}: expected a JSON object")
    for name, kind in required.items():
        if not isinstance(meta.get(name), kind):
            raise GalleryIndexError(f"{path}: field {name!r} missing or not {kind.__name__}")
    if meta["format"] != FORMAT:
        raise GalleryIndexError(f"{path}: format {meta['format']!r}, expected {FORMAT!r}")
    files = meta["files"]
    for role in ("embeddings", "keys"):
        if role not in files:
            raise GalleryIndexError(f"{path}: no {role} file listed")
    for role, name in files.items():
        if not isinstance(name, str) or Path(name).name != name or name in ("", ".", ".."):
            raise GalleryIndexError(f"{path}: {role} file name {name!r} must be a plain name inside the folder")
    return meta


def _load_npy(path: Path, dtype: type, shape: tuple[int, ...], mmap: bool = False) -> np.ndarray:
    if not path.is_file():
        raise GalleryIndexError(f"{path}: missing (listed in {INDEX_FILE})")
    try:
        array = np.load(path, mmap_mode="r" if mmap else None, allow_pickle=False)
    except (OSError, ValueError) as exc:
        raise GalleryIndexError(f"{path}: not a readable .npy file ({exc})") from exc
    if array.dtype != dtype or array.shape != shape:
        raise GalleryIndexError(f"{path}: {array.dtype} {array.shape}, expected {np.dtype(dtype)} {shape}")
    return array


def _read_keys(path: Path, count: int) -> list[str]:
    keys = _read_json(path, f"listed in {INDEX_FILE}")
    if not isinstance(keys, list) or len(keys) != count or not all(isinstance(k, str) for k in keys):
        raise GalleryIndexError(f"{path}: expected a list of {count} strings")
    return keys


# --- image folders ---------------------------------------------------------------------------------


def _inside(root: Path, path: Path) -> Path:
    """`path` with symlinks resolved; refuses anything that resolves outside `root` (already resolved)."""
    target = path.resolve()
    if not target.is_relative_to(root):
        raise GalleryIndexError(f"{path}: resolves to {target}, outside the gallery folder {root}; refusing it")
    return target


def iter_image_folder(folder: Path | str, skips: SkipCounter | None = None) -> Iterator[tuple[str, Image.Image]]:
    """(key, RGB image) for every .jpg/.jpeg/.png under `folder`, in sorted path order.

    Keys are paths relative to `folder` (POSIX separators). Any file or directory symlink resolving outside
    the folder raises GalleryIndexError; directory symlinks inside it are not followed (their files are
    found under their real path). Undecodable images are skipped with a warning and counted in `skips`.
    """
    root = Path(folder).resolve(strict=True)
    if not root.is_dir():
        raise NotADirectoryError(f"{folder}: not a directory")
    for dirpath, dirnames, filenames in os.walk(root):
        here = Path(dirpath)
        dirnames.sort()
        for name in dirnames:
            if (here / name).is_symlink():
                _inside(root, here / name)
        for name in sorted(filenames):
            path = here / name
            if path.suffix.lower() not in IMAGE_SUFFIXES:
                continue
            target = _inside(root, path)
            key = path.relative_to(root).as_posix()
            try:
                with Image.open(target) as im:
                    image = im.convert("RGB")
            except Exception as exc:  # PIL raises several types for corrupt data
                log.warning("skipping undecodable image %s (%s)", key, exc)
                if skips is not None:
                    skips.add(f"{key}: {exc}")
                continue
            yield key, image

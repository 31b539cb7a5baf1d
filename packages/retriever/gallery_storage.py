"""The on-disk format of a gallery folder: `index.json`, fp16 `.npy` embeddings, keys, atomic generation-tagged writes.

A gallery is a folder: `index.json` (format, count, dim, dtype, backend, nlist, nprobe and the names of the data
files), the embeddings as an fp16 `.npy` (memory-mapped on load), the keys as a JSON list, optionally the person
ids and, for IVF, the trained centroids and each item's list. Every data file of one save carries that save's
generation tag in its name and `index.json` is replaced last, so a reader sees either the old gallery or the new
one, never a mix; a failed save removes only the files of its own tag. Whatever is read is checked against
`index.json`, and a missing, truncated or inconsistent file raises GalleryIndexError naming it.
"""

from __future__ import annotations

import json
import logging
import os
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ireid.core.shards import atomic_write_json
from ireid.retriever.gallery_rows import chunks

log = logging.getLogger(__name__)

INDEX_FILE = "index.json"
FORMAT = "ireid-gallery/1"


class GalleryIndexError(RuntimeError):
    """A gallery folder that cannot be read or written as asked; the message names the file."""


# --- writing -----------------------------------------------------------------------------------------


def new_generation(out_dir: Path) -> tuple[str, Path]:
    """A fresh generation tag and the temporary path its embeddings are written to before the commit."""
    tag = uuid.uuid4().hex[:12]
    return tag, out_dir / f"{embeddings_file(tag)}.tmp"


def embeddings_file(tag: str) -> str:
    """The name of a generation's embeddings file once committed."""
    return f"embeddings-{tag}.npy"


def write_embeddings(path: Path, embeddings: np.ndarray) -> None:
    """Copy fp16 rows into a new .npy at `path` a chunk at a time (the source may be a memmap) and fsync it."""
    copy = np.lib.format.open_memmap(path, mode="w+", dtype=np.float16, shape=embeddings.shape)
    for start, stop in chunks(len(embeddings)):
        copy[start:stop] = embeddings[start:stop]
    flush_memmap(copy)
    del copy


def commit_generation(
    out_dir: Path,
    tag: str,
    embeddings_tmp: Path,
    keys: Sequence[str],
    arrays: Callable[[], dict[str, np.ndarray]],
    *,
    count: int,
    dim: int,
    backend: str,
    nlist: int,
    nprobe: int,
) -> Path:
    """Rename the written embeddings, write keys and `arrays()`, then replace index.json; drop the old files.

    `arrays` (pids, IVF state) is called inside the guarded section, so a failure while computing them (IVF
    training) discards the new generation like any other. Until index.json is replaced nothing refers to the
    new files, so a failure only discards them. Returns index.json's path.
    """
    index_path = out_dir / INDEX_FILE
    previous = _listed_files(index_path)
    files = {"embeddings": embeddings_file(tag), "keys": f"keys-{tag}.json"}
    try:
        os.replace(embeddings_tmp, out_dir / files["embeddings"])
        atomic_write_json(out_dir / files["keys"], list(keys))
        for name, array in arrays().items():
            files[name] = f"{name}-{tag}.npy"
            _atomic_save_npy(out_dir / files[name], array)
        meta = {
            "format": FORMAT,
            "count": count,
            "dim": dim,
            "dtype": "float16",
            "backend": backend,
            "nlist": nlist,
            "nprobe": nprobe,
            "files": files,
        }
        atomic_write_json(index_path, meta)
    except BaseException:
        discard(out_dir, tag)
        raise
    for name in previous - set(files.values()):
        try:
            (out_dir / name).unlink(missing_ok=True)
        except OSError as exc:
            log.warning("could not remove the replaced gallery file %s (%s)", out_dir / name, exc)
    return index_path


def discard(out_dir: Path, tag: str) -> None:
    """Remove the files of an uncommitted save (their names carry its tag)."""
    for path in out_dir.glob(f"*-{tag}.*"):
        path.unlink(missing_ok=True)


class NpyAppender:
    """An fp16 [n, dim] .npy filled batch by batch through a memmap whose first axis grows in place.

    NumPy pads .npy headers so that the first dimension can grow without moving the data: growing (or the
    final trim) rewrites the header and changes the file length, never copies rows. This lets a gallery be
    encoded straight to disk without ever holding it in RAM as float32.
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
        flush_memmap(self.array)
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
        flush_memmap(self.array)
        del self.array
        return np.load(self.path, mmap_mode="r")


def flush_memmap(array: np.memmap) -> None:
    """Flush a memmap and fsync its file, so a later rename publishes data that is on disk."""
    array.flush()
    with open(array.filename, "rb+") as fh:
        os.fsync(fh.fileno())


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


# --- reading -----------------------------------------------------------------------------------------


@dataclass
class StoredGallery:
    """What a gallery folder holds, checked against its index.json; the facade turns it into a GalleryIndex."""

    embeddings: np.ndarray  # fp16 [count, dim], memory-mapped read-only
    keys: list[str]
    pids: np.ndarray | None
    backend: str
    nlist: int
    nprobe: int
    ivf_state: tuple[np.ndarray, np.ndarray] | None  # (centroids, lists) when they can be reused


def read_gallery(folder: Path, backend: str | None = None, nlist: int | None = None) -> StoredGallery:
    """Read a saved gallery; `backend` and `nlist` override the saved ones.

    The saved IVF training is returned only when it fits what will be built: backend `faiss-ivf` with the saved
    nlist. Missing, truncated or inconsistent files raise GalleryIndexError naming the file.
    """
    meta = _read_meta(folder / INDEX_FILE)
    files = meta["files"]
    count, dim = meta["count"], meta["dim"]
    embeddings = _load_npy(folder / files["embeddings"], np.float16, (count, dim), mmap=True)
    keys = _read_keys(folder / files["keys"], count)
    pids = _load_npy(folder / files["pids"], np.int64, (count,)) if "pids" in files else None
    backend = backend or meta["backend"]
    nlist = nlist or meta["nlist"]
    ivf_state = None
    if backend == "faiss-ivf" and "ivf_centroids" in files and nlist == meta["nlist"]:
        centroids = _load_npy(folder / files["ivf_centroids"], np.float32, (nlist, dim))
        lists = _load_npy(folder / files["ivf_lists"], np.int64, (count,))
        if lists.min() < 0 or lists.max() >= nlist:
            raise GalleryIndexError(f"{folder / files['ivf_lists']}: list ids outside [0, {nlist})")
        ivf_state = (centroids, lists)
    return StoredGallery(embeddings, keys, pids, backend, nlist, meta["nprobe"], ivf_state)


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

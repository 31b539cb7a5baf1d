"""The images an investigator searches: a folder of person crops, or a split of a shard folder.

A folder is encoded once with the retriever and its index kept beside it (`<folder>.ireid-index/`, or `--index-dir`):
the embeddings as a `GalleryIndex`, and `serve.json` with the retriever checkpoint's stamp and each file's size and
modification time. On the next start only new or changed files are encoded, removed files are dropped, and a
different retriever checkpoint re-encodes everything. Images are only ever read by a key the index holds, resolved
inside the folder: nothing outside it is served, whatever a request asks for.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from tqdm import tqdm

from ireid.core.gallery import Gallery, encode_split
from ireid.core.images import ImageSource, ImageStore
from ireid.core.loader import SkipCounter
from ireid.core.protocols import TextImageRetriever
from ireid.core.records import Record, make_key
from ireid.core.shards import atomic_write_json
from ireid.retriever.gallery_folder import list_image_folder, read_image
from ireid.retriever.index import GalleryIndex, GalleryIndexError

INDEX_SUFFIX = ".ireid-index"
STATE_FILE = "serve.json"


class FolderImages:
    """A folder's images by key: only keys of the index, each resolved inside the folder (no traversal, no symlink
    out), read from disk when asked."""

    def __init__(self, root: Path, keys: Sequence[str]):
        self.root = root.resolve()
        self.keys = set(keys)

    def path(self, key: str) -> Path:
        if key not in self.keys:
            raise KeyError(key)
        path = (self.root / key).resolve()
        if not path.is_relative_to(self.root):
            raise KeyError(key)
        return path

    def encoded(self, key: str) -> bytes:
        return self.path(key).read_bytes()

    def load(self, keys: Sequence[str]) -> list[Image.Image]:
        images = []
        for key in keys:
            with Image.open(self.path(key)) as image:
                images.append(image.convert("RGB"))
        return images


@dataclass
class SearchGallery:
    """What a session ranks (`gallery`: keys, embeddings, minimal records) and where its images come from."""

    gallery: Gallery
    images: ImageSource
    source: str
    skipped: int = 0  # undecodable files left out

    def __len__(self) -> int:
        return len(self.gallery)


def _stamp(path: Path) -> list[int]:
    stat = path.stat()
    return [stat.st_size, stat.st_mtime_ns]


def _previous(index_dir: Path, retriever: dict[str, Any]) -> dict[str, tuple[list[int], np.ndarray]]:
    """key -> (file stamp, embedding) from an index written with the same retriever; empty when there is none."""
    state_path = index_dir / STATE_FILE
    if not state_path.is_file():
        return {}
    try:
        state = json.loads(state_path.read_text(encoding="utf-8"))
        if state.get("retriever") != retriever:
            return {}
        index = GalleryIndex.load(index_dir, backend="torch")
    except (OSError, ValueError, GalleryIndexError):
        return {}  # unreadable or foreign: encode again
    stamps = state.get("files", {})
    embeddings = np.asarray(index.embeddings)
    return {key: (stamps[key], embeddings[i]) for i, key in enumerate(index.keys) if key in stamps}


def _records(keys: Sequence[str], source: str) -> list[Record]:
    """Unannotated records: strategies see a gallery of nobody known."""
    return [Record(key=make_key(source, key), pid=-1, split="test", source=source, image_path=key) for key in keys]


def index_folder(
    folder: Path | str,
    retriever: TextImageRetriever,
    retriever_ckpt: Path | str,
    index_dir: Path | str | None = None,
    batch_size: int = 64,
    progress: bool = True,
) -> SearchGallery:
    """The folder's gallery, encoding only what its saved index lacks (module docstring)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise ValueError(f"{folder}: gallery folder not found")
    listing = list_image_folder(folder)
    if not listing:
        raise ValueError(f"{folder}: no .jpg, .jpeg or .png images in the gallery folder")
    index_dir = Path(index_dir) if index_dir else folder.parent / f"{folder.name}{INDEX_SUFFIX}"
    ckpt = Path(retriever_ckpt)
    retriever_stamp = {"checkpoint": str(ckpt.resolve()), "stamp": _stamp(ckpt)}
    known = _previous(index_dir, retriever_stamp)
    stamps = {key: _stamp(path) for key, path in listing}
    rows: dict[str, np.ndarray] = {k: row for k, (stamp, row) in known.items() if stamps.get(k) == stamp}
    todo = [(key, path) for key, path in listing if key not in rows]
    skips = SkipCounter()
    with tqdm(total=len(todo), desc=f"indexing {folder}", unit="img", disable=not progress or not todo) as bar:
        for begin in range(0, len(todo), batch_size):
            batch = [(k, read_image(k, p, skips)) for k, p in todo[begin : begin + batch_size]]
            batch = [(k, im) for k, im in batch if im is not None]
            if batch:
                with torch.no_grad():
                    encoded = retriever.encode_images([im for _, im in batch]).float().numpy()
                rows.update((k, row.astype(np.float16)) for (k, _), row in zip(batch, encoded, strict=True))
            bar.update(min(batch_size, len(todo) - begin))
    keys = [key for key, _ in listing if key in rows]
    if not keys:
        raise ValueError(f"{folder}: none of its {len(listing)} images decodes")
    embeddings = np.stack([rows[k] for k in keys])
    if todo or len(keys) != len(known):
        GalleryIndex.from_embeddings(embeddings, keys, backend="torch").save(index_dir)
        files = {k: stamps[k] for k in keys}
        atomic_write_json(index_dir / STATE_FILE, {"folder": str(folder.resolve()), "retriever": retriever_stamp,
                                                   "files": files})  # fmt: skip
    vectors = torch.nn.functional.normalize(torch.from_numpy(embeddings).float(), dim=1)
    gallery = Gallery(keys, torch.full((len(keys),), -1, dtype=torch.long), vectors, _records(keys, "folder"))
    return SearchGallery(gallery, FolderImages(folder, keys), str(folder), skips.value)


def split_gallery(data_dir: Path | str, split: str, retriever: TextImageRetriever) -> SearchGallery:
    """A split of a shard folder (the demo's test gallery): its images from the shards, encoded on start."""
    gallery = encode_split(retriever, data_dir, split)
    return SearchGallery(gallery, ImageStore.from_shards(data_dir, split), f"{data_dir} ({split})")

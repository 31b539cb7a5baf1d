"""The reader of a folder of images as gallery items: (relative key, RGB image), in a stable order, safely.

A gallery folder may come from anywhere, so a symlink that resolves outside it is refused rather than followed
(it could expose files the caller never meant to index), and an undecodable image is skipped and counted
rather than ending a long encoding run.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from pathlib import Path

from PIL import Image

from ireid.core.loader import SkipCounter
from ireid.retriever.gallery_storage import GalleryIndexError

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png"}


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

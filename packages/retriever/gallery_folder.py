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


def list_image_folder(folder: Path | str) -> list[tuple[str, Path]]:
    """(key, resolved path) of every .jpg/.jpeg/.png under `folder`, in sorted path order, nothing decoded.

    Keys are paths relative to `folder` (POSIX separators). Any file or directory symlink resolving outside
    the folder raises GalleryIndexError; directory symlinks inside it are not followed (their files are
    found under their real path). Hidden folders (a name starting with ".", such as an index kept inside) are
    not searched.
    """
    root = Path(folder).resolve(strict=True)
    if not root.is_dir():
        raise NotADirectoryError(f"{folder}: not a directory")
    found = []
    for dirpath, dirnames, filenames in os.walk(root):
        here = Path(dirpath)
        dirnames[:] = sorted(name for name in dirnames if not name.startswith("."))
        for name in dirnames:
            if (here / name).is_symlink():
                _inside(root, here / name)
        for name in sorted(filenames):
            path = here / name
            if path.suffix.lower() in IMAGE_SUFFIXES:
                found.append((path.relative_to(root).as_posix(), _inside(root, path)))
    return found


def read_image(key: str, path: Path, skips: SkipCounter | None = None) -> Image.Image | None:
    """The RGB image at `path`, or None (warned about and counted in `skips`) when it does not decode."""
    try:
        with Image.open(path) as im:
            return im.convert("RGB")
    except Exception as exc:  # PIL raises several types for corrupt data
        log.warning("skipping undecodable image %s (%s)", key, exc)
        if skips is not None:
            skips.add(f"{key}: {exc}")
        return None


def iter_image_folder(folder: Path | str, skips: SkipCounter | None = None) -> Iterator[tuple[str, Image.Image]]:
    """(key, RGB image) for every image `list_image_folder` finds; undecodable ones are skipped and counted."""
    for key, path in list_image_folder(folder):
        image = read_image(key, path, skips)
        if image is not None:
            yield key, image

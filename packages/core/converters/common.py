"""What every converter shares: image checks, id remapping and atomic shard writing.

A format module only parses its annotations into `SourceItem`s; `convert_items` then checks that
every image exists and decodes *before* writing anything, remaps person ids to be contiguous from 0
within each split (the source id is kept as `orig_pid`), and writes shards through `DatasetWriter`.
"""

from __future__ import annotations

import io
import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from PIL import Image
from tqdm import tqdm

from ireid.core.records import QA, Record, RecordError, make_key
from ireid.core.shards import DatasetWriter, atomic_write_json

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
JPEG_MAGIC = b"\xff\xd8\xff"


class ConversionError(ValueError):
    """Annotations that cannot be converted; the message names the file and the record."""


@dataclass
class SourceItem:
    """One annotated image as a format module reads it, before ids are remapped."""

    image: Path
    orig_pid: str
    split: str
    where: str  # "file: record N", for error messages
    camid: int = 0
    role: str | None = None
    captions: list[str] = field(default_factory=list)
    initial_description: str = ""
    fine_description: str = ""
    qas: list[QA] = field(default_factory=list)
    distractor: bool = False  # gallery-only images of nobody (Market-1501 id -1)
    clothes_id: int = 0  # the outfit, where a cloth-changing data set names it (same pid, other clothes_id)
    modality: str = "rgb"  # the camera's: "rgb" or "infrared" (visible-infrared data sets)


@dataclass
class ConversionReport:
    counts: dict[str, int] = field(default_factory=dict)
    ids: dict[str, int] = field(default_factory=dict)
    missing: list[str] = field(default_factory=list)
    unreadable: list[str] = field(default_factory=list)
    skipped_junk: int = 0

    @property
    def bad(self) -> list[str]:
        return self.missing + self.unreadable

    def to_dict(self) -> dict[str, Any]:
        return {
            "counts": self.counts,
            "ids": self.ids,
            "missing": len(self.missing),
            "unreadable": len(self.unreadable),
            "skipped_junk": self.skipped_junk,
        }


def load_json_list(path: Path) -> list[dict[str, Any]]:
    """Read an annotation file that must be a JSON list of objects."""
    if not path.exists():
        raise ConversionError(f"{path}: annotation file not found")
    try:
        data = json.loads(path.read_bytes().decode("utf-8-sig"))
    except UnicodeDecodeError as exc:
        raise ConversionError(f"{path}: not UTF-8 text (byte {exc.start}); save the annotations as UTF-8") from exc
    except json.JSONDecodeError as exc:
        raise ConversionError(f"{path}: malformed JSON at line {exc.lineno}, column {exc.colno}: {exc.msg}") from exc
    if not isinstance(data, list):
        raise ConversionError(f"{path}: expected a JSON list of records, got {type(data).__name__}")
    for i, item in enumerate(data):
        if not isinstance(item, dict):
            raise ConversionError(f"{path}: record {i}: expected an object, got {type(item).__name__}")
    return data


def field_of(item: dict[str, Any], name: str, where: str, kind: type | tuple[type, ...]) -> Any:
    if name not in item:
        raise ConversionError(f"{where}: missing field '{name}'")
    value = item[name]
    if not isinstance(value, kind) or isinstance(value, bool):
        raise ConversionError(f"{where}: field '{name}': unexpected {type(value).__name__} {value!r}")
    return value


def is_junk(path: Path) -> bool:
    """Files a file manager leaves in image folders (dotfiles, `Thumbs.db`), never annotated images."""
    return path.name.startswith(".") or path.name == "Thumbs.db"


def leaves_root(rel: str) -> bool:
    """Whether an annotated relative path points outside its folder (absolute, or through `..`)."""
    return Path(rel).is_absolute() or ".." in Path(rel).parts


def require_dir(path: Path, layout: str) -> Path:
    if not path.is_dir():
        raise ConversionError(f"{path}: folder not found (expected {layout})")
    return path


def list_lines(path: Path, layout: str) -> list[tuple[int, str]]:
    """A list file's non-blank lines, stripped, with their 1-based numbers for error messages."""
    if not path.is_file():
        raise ConversionError(f"{path}: list file not found (expected {layout})")
    try:
        text = path.read_bytes().decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise ConversionError(f"{path}: not UTF-8 text (byte {exc.start})") from exc
    return [(n, line.strip()) for n, line in enumerate(text.splitlines(), 1) if line.strip()]


def labelled_paths(path: Path, layout: str, relative_to: str) -> list[tuple[int, str, str]]:
    """(line number, relative image path, label) of each line of a '<relative path> <label>' list file (MSMT17,
    RegDB); `relative_to` names, in errors, the folder the paths are relative to. Labels come back as plain
    integers in text ("007" -> "7")."""
    entries = []
    for number, line in list_lines(path, layout):
        parts = line.rsplit(maxsplit=1)
        if len(parts) != 2 or not parts[1].isdigit():
            raise ConversionError(f"{path}: line {number}: expected '<relative path> <label>', got {line!r}")
        rel, label = parts
        if leaves_root(rel):
            raise ConversionError(f"{path}: line {number}: {rel!r} leaves {relative_to}")
        entries.append((number, rel, str(int(label))))
    if not entries:
        raise ConversionError(f"{path}: no images listed (expected lines '<relative path> <label>')")
    return entries


def image_bytes(path: Path) -> tuple[bytes, str]:
    """The image's bytes as JPEG or PNG (other formats are re-encoded to PNG); raises if undecodable."""
    data = path.read_bytes()
    with Image.open(io.BytesIO(data)) as im:
        im.load()  # full decode: truncated files fail here, not at training time
        if data.startswith(JPEG_MAGIC):
            return data, "jpg"
        if data.startswith(PNG_MAGIC):
            return data, "png"
        buf = io.BytesIO()
        im.convert("RGB").save(buf, format="PNG")
        return buf.getvalue(), "png"


def _id_order(name: str) -> tuple[int, int | str]:
    """Sort key for source ids: numeric ids in numeric order, then the others as text."""
    return (0, int(name)) if name.lstrip("-").isdigit() else (1, name)


def _remap(items: list[SourceItem]) -> dict[tuple[str, str], int]:
    """Contiguous ids from 0 per split, in sorted order of the source ids (numeric where possible)."""
    mapping: dict[tuple[str, str], int] = {}
    for split in sorted({it.split for it in items}):
        pids = sorted({it.orig_pid for it in items if it.split == split and not it.distractor}, key=_id_order)
        mapping.update({(split, pid): i for i, pid in enumerate(pids)})
    return mapping


def number_outfits(pairs: list[tuple[SourceItem, str]]) -> list[SourceItem]:
    """The items with `clothes_id` set from the outfit name read beside each one.

    Outfit names are only unique within a person, so each (person, outfit) pair gets its own number,
    contiguous from 0 per split in the order of the source ids: two people never share a number, and a
    person's outfit has the same number in query and gallery.
    """
    numbers: dict[tuple[str, str, str], int] = {}
    for split in sorted({item.split for item, _ in pairs}):
        worn = {(item.orig_pid, outfit) for item, outfit in pairs if item.split == split}
        ordered = sorted(worn, key=lambda po: (_id_order(po[0]), _id_order(po[1])))
        numbers.update({(split, pid, outfit): i for i, (pid, outfit) in enumerate(ordered)})
    for item, outfit in pairs:
        item.clothes_id = numbers[(item.split, item.orig_pid, outfit)]
    return [item for item, _ in pairs]


def _record(item: SourceItem, source: str, root: Path, mapping: dict[tuple[str, str], int]) -> Record:
    """The record an item becomes; a field the record schema refuses is a `ConversionError` naming the item."""
    rel = item.image.relative_to(root) if item.image.is_relative_to(root) else Path(item.image.name)
    try:
        return Record(
            key=make_key(source, str(rel.with_suffix(""))),
            pid=-1 if item.distractor else mapping[(item.split, item.orig_pid)],
            split=item.split,
            source=source,
            camid=item.camid,
            orig_pid=item.orig_pid,
            role=item.role,
            captions=item.captions,
            initial_description=item.initial_description,
            fine_description=item.fine_description,
            qas=item.qas,
            image_path=str(rel),
            clothes_id=item.clothes_id,
            modality=item.modality,
        )
    except RecordError as error:
        raise ConversionError(f"{item.where}: {error}") from error


def _refuse_key_clashes(records: list[Record], items: list[SourceItem]) -> None:
    """Two images that become one sample key (`a.jpg` and `a.png`, or names that differ only in characters a key
    cannot hold) would overwrite each other: an error naming both."""
    seen: dict[tuple[str, str], SourceItem] = {}
    for record, item in zip(records, items, strict=True):
        first = seen.setdefault((record.split, record.key), item)
        if first is not item:
            raise ConversionError(
                f"{first.where} and {item.where}: both become sample key {record.key!r} ({first.image.name}, "
                f"{item.image.name}); rename one image"
            )


def convert_items(
    items: Iterable[SourceItem],
    *,
    source: str,
    root: Path,
    out: Path,
    skip_bad: bool = False,
    shard_size: int = 1000,
    resume: bool = False,
    progress: bool = True,
) -> ConversionReport:
    """Check all images, then write shards; nothing is written if images are missing and not skipped."""
    items = list(items)
    report = ConversionReport()
    good: list[tuple[SourceItem, bytes, str]] = []
    for item in tqdm(items, desc=f"checking {source} images", disable=not progress, unit="img"):
        if not item.image.is_file():
            report.missing.append(f"{item.where}: {item.image}")
            continue
        try:
            data, ext = image_bytes(item.image)
        except Exception as exc:  # PIL raises many types for corrupt files
            report.unreadable.append(f"{item.where}: {item.image} ({exc})")
            continue
        good.append((item, data, ext))
    if report.bad and not skip_bad:
        return report
    mapping = _remap([it for it, _, _ in good])
    records = [_record(item, source, root, mapping) for item, _, _ in good]  # every record checked before writing
    _refuse_key_clashes(records, [item for item, _, _ in good])
    with DatasetWriter(out, max_samples=shard_size, resume=resume) as writer:
        rows = zip(records, good, strict=True)
        for record, (_, data, ext) in tqdm(rows, total=len(records), desc=f"writing {source} shards",
                                           disable=not progress, unit="img"):  # fmt: skip
            writer.write(record, data, ext)
        report.counts = writer.close()
    for split in report.counts:
        report.ids[split] = sum(1 for s, _ in mapping if s == split)
    atomic_write_json(out / "conversion.json", {"source": source, "root": str(root), **report.to_dict()})
    return report

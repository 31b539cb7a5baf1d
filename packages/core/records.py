"""One validated record schema for every data source (synthetic, CUHK-PEDES, Market-1501, ...).

Every loader, converter and trainer speaks `Record`; validation happens once, at the boundary
(`Record.from_dict`), and errors name the file/record and the field so bad input is easy to fix.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

SPLITS = ("train", "val", "test")
ROLES = ("query", "gallery")
QA_TYPES = ("descriptive", "yes_no", "multiple_choice")
MODALITIES = ("rgb", "infrared")
MAX_TEXT_CHARS = 8192
KEY_RE = re.compile(r"^[A-Za-z0-9_\-/]+$")


class RecordError(ValueError):
    """A record that does not fit the schema; the message names where and which field."""


def make_key(*parts: str) -> str:
    """Build a WebDataset-safe sample key (no dots: WebDataset splits key and extension at the first dot)."""
    key = "/".join(p.strip("/") for p in parts if p)
    key = re.sub(r"[^A-Za-z0-9_\-/]", "_", key)
    if not key:
        raise RecordError("empty sample key")
    return key


def _text(value: Any, name: str, where: str, *, allow_empty: bool = False) -> str:
    if not isinstance(value, str):
        raise RecordError(f"{where}: field '{name}': expected a string, got {type(value).__name__}")
    value = value.strip()
    if not value and not allow_empty:
        raise RecordError(f"{where}: field '{name}': empty text")
    if len(value) > MAX_TEXT_CHARS:
        raise RecordError(f"{where}: field '{name}': text of {len(value)} characters exceeds {MAX_TEXT_CHARS}")
    return value


def _texts(value: Any, name: str, where: str) -> list[str]:
    if not isinstance(value, list | tuple):
        raise RecordError(f"{where}: field '{name}': expected a list of strings, got {type(value).__name__}")
    return [_text(v, f"{name}[{i}]", where) for i, v in enumerate(value)]


def _int(value: Any, name: str, where: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise RecordError(f"{where}: field '{name}': expected an integer, got {value!r}")
    return value


@dataclass(frozen=True)
class QA:
    """One annotated question-answer pair of a dialogue bank."""

    question: str
    answer: str
    qtype: str
    options: tuple[str, ...] = ()
    attribute: str | None = None  # which attribute the pair is about, when the source knows it

    @classmethod
    def from_dict(cls, d: Any, where: str) -> QA:
        if not isinstance(d, dict):
            raise RecordError(f"{where}: expected an object, got {type(d).__name__}")
        qtype = d.get("qtype", "descriptive")
        if qtype not in QA_TYPES:
            raise RecordError(f"{where}: field 'qtype': {qtype!r} is not one of {QA_TYPES}")
        options = tuple(_texts(d.get("options", []), "options", where))
        if qtype == "multiple_choice" and len(options) < 2:
            raise RecordError(f"{where}: field 'options': a multiple-choice question needs at least 2 options")
        attribute = d.get("attribute")
        if attribute is not None:
            attribute = _text(attribute, "attribute", where)
        return cls(
            question=_text(d.get("question"), "question", where),
            answer=_text(d.get("answer"), "answer", where),
            qtype=qtype,
            options=options,
            attribute=attribute,
        )

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"question": self.question, "answer": self.answer, "qtype": self.qtype}
        if self.options:
            d["options"] = list(self.options)
        if self.attribute is not None:
            d["attribute"] = self.attribute
        return d


@dataclass
class Record:
    """One image with everything known about it.

    `pid` is contiguous from 0 within a split (what losses and metrics use); `orig_pid` keeps the
    source's own id. `role` separates query and gallery images where a source defines them (Market-1501).
    `attributes` holds the attribute values this image shows. `clothes_id` tells a person's outfits apart
    (cloth-changing Re-ID: same `pid`, other `clothes_id`); `modality` is the camera's ("rgb" or "infrared").
    """

    key: str
    pid: int
    split: str
    source: str
    camid: int = 0
    orig_pid: str | None = None
    role: str | None = None
    captions: list[str] = field(default_factory=list)
    initial_description: str = ""
    fine_description: str = ""
    sub_captions: list[str] = field(default_factory=list)
    qas: list[QA] = field(default_factory=list)
    rda_groups: list[list[str]] = field(default_factory=list)
    attributes: dict[str, str] = field(default_factory=dict)
    image_path: str | None = None
    clothes_id: int = 0
    modality: str = "rgb"

    def __post_init__(self) -> None:
        self.validate()

    def validate(self, where: str | None = None) -> None:
        where = where or f"record {self.key!r}"
        if not isinstance(self.key, str) or not KEY_RE.match(self.key):
            raise RecordError(f"{where}: field 'key': {self.key!r} must match {KEY_RE.pattern}")
        _int(self.pid, "pid", where)
        _int(self.camid, "camid", where)
        if _int(self.clothes_id, "clothes_id", where) < 0:
            raise RecordError(f"{where}: field 'clothes_id': {self.clothes_id} is negative")
        if self.modality not in MODALITIES:
            raise RecordError(f"{where}: field 'modality': {self.modality!r} is not one of {MODALITIES}")
        if self.split not in SPLITS:
            raise RecordError(f"{where}: field 'split': {self.split!r} is not one of {SPLITS}")
        if self.role is not None and self.role not in ROLES:
            raise RecordError(f"{where}: field 'role': {self.role!r} is not one of {ROLES}")
        _text(self.source, "source", where)
        for name in ("initial_description", "fine_description"):
            _text(getattr(self, name), name, where, allow_empty=True)
        # every text the loader checks, checked before writing too: a record the loader would refuse is never written
        _texts(self.captions, "captions", where)
        _texts(self.sub_captions, "sub_captions", where)
        for index, qa in enumerate(self.qas):
            _text(qa.question, f"qas[{index}].question", where)
            _text(qa.answer, f"qas[{index}].answer", where)
        for group_index, group in enumerate(self.rda_groups):
            if not group:
                raise RecordError(f"{where}: field 'rda_groups[{group_index}]': empty group")
            _texts(group, f"rda_groups[{group_index}]", where)

    @property
    def texts(self) -> list[str]:
        """The texts a text-to-image retriever trains on: captions, else the fine description."""
        if self.captions:
            return self.captions
        return [self.fine_description] if self.fine_description else []

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["qas"] = [qa.to_dict() for qa in self.qas]
        return {
            k: v
            for k, v in d.items()
            if v not in (None, [], {}, "") and not (k in _OMITTED_DEFAULTS and v == _OMITTED_DEFAULTS[k])
        }

    @classmethod
    def from_dict(cls, d: Any, where: str = "record") -> Record:
        """Parse and validate; every error names `where` and the offending field."""
        if not isinstance(d, dict):
            raise RecordError(f"{where}: expected an object, got {type(d).__name__}")
        for required in ("key", "pid", "split", "source"):
            if required not in d:
                raise RecordError(f"{where}: missing field '{required}'")
        known = set(cls.__dataclass_fields__)
        unknown = set(d) - known
        if unknown:
            raise RecordError(f"{where}: unknown field(s) {sorted(unknown)}")
        qas = d.get("qas", [])
        if not isinstance(qas, list):
            raise RecordError(f"{where}: field 'qas': expected a list")
        groups = d.get("rda_groups", [])
        if not isinstance(groups, list):
            raise RecordError(f"{where}: field 'rda_groups': expected a list of lists")
        attributes = d.get("attributes", {})
        if not isinstance(attributes, dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in attributes.items()
        ):
            raise RecordError(f"{where}: field 'attributes': expected an object of strings")
        orig_pid = d.get("orig_pid")
        record = cls.__new__(cls)
        record.key = d["key"]
        record.pid = _int(d["pid"], "pid", where)
        record.split = d["split"]
        record.source = d["source"]
        record.camid = _int(d.get("camid", 0), "camid", where)
        record.orig_pid = None if orig_pid is None else str(orig_pid)
        record.role = d.get("role")
        record.captions = _texts(d.get("captions", []), "captions", where)
        record.initial_description = d.get("initial_description", "")
        record.fine_description = d.get("fine_description", "")
        record.sub_captions = _texts(d.get("sub_captions", []), "sub_captions", where)
        record.qas = [QA.from_dict(q, f"{where}: qas[{i}]") for i, q in enumerate(qas)]
        record.rda_groups = [_texts(g, f"rda_groups[{i}]", where) for i, g in enumerate(groups)]
        record.attributes = dict(attributes)
        record.image_path = d.get("image_path")
        record.clothes_id = d.get("clothes_id", 0)
        record.modality = d.get("modality", "rgb")
        record.validate(where)
        return record


def evenly_spaced(records: list[Record], count: int | None) -> list[Record]:
    """`count` records spread evenly over the split (all when None), so a subset still covers every part of it."""
    if count is None or count >= len(records):
        return records
    if count < 1:
        raise ValueError(f"count must be at least 1, got {count}")
    return [records[i * len(records) // count] for i in range(count)]


# Fields written only when they differ from their default, so records without them keep their bytes.
_OMITTED_DEFAULTS: dict[str, Any] = {"clothes_id": 0, "modality": "rgb"}


def attribute_values(annotations: Iterable[Mapping[str, str]]) -> dict[str, list[str]]:
    """Every attribute name the annotations use, sorted, with its values sorted: the vocabulary an attribute
    classifier is built over ({} when nothing is annotated)."""
    values: dict[str, set[str]] = {}
    for annotated in annotations:
        for name, value in annotated.items():
            values.setdefault(name, set()).add(value)
    return {name: sorted(values[name]) for name in sorted(values)}

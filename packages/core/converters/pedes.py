"""Text-to-image person Re-ID annotation files: CUHK-PEDES, ICFG-PEDES, RSTPReid, Interactive-PEDES, UFine6926.

All five are a JSON list of per-image records with `split`, an image path and a person `id`; they
differ in file name, the image-path field, the image folder and the text fields. UFine6926 (UFineBench,
CVPR 2024) has CUHK-PEDES's record (`file_path` such as `images/1.jpg`, relative to the data set folder, and two
ultra-fine `captions`), as its authors' README documents; it is released on request, so the annotation file name
`UFine6926.json` is assumed.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ireid.core.converters.common import ConversionError, SourceItem, field_of, leaves_root, load_json_list
from ireid.core.records import MAX_TEXT_CHARS, QA

SPLIT_NAMES = {"train": "train", "val": "val", "test": "test", "other": "val"}
_OPTION_RE = re.compile(r"(?:^|\s)([A-D])\)\s*(.+?)(?=\s+[A-D]\)|$)", re.S)


@dataclass(frozen=True)
class PedesFormat:
    name: str
    annotation_file: str
    path_field: str
    interactive: bool = False
    images_folder: str = "imgs"  # under the data set folder; image paths are relative to it


FORMATS = {
    "cuhk-pedes": PedesFormat("cuhk-pedes", "reid_raw.json", "file_path"),
    "icfg-pedes": PedesFormat("icfg-pedes", "ICFG-PEDES.json", "file_path"),
    "rstpreid": PedesFormat("rstpreid", "data_captions.json", "img_path"),
    "interactive-pedes": PedesFormat(
        "interactive-pedes", "Interactive-PEDES_interactive_annos.json", "file_path", interactive=True
    ),
    "ufine6926": PedesFormat("ufine6926", "UFine6926.json", "file_path", images_folder="."),
}


def _split(item: dict[str, Any], where: str) -> str:
    raw = field_of(item, "split", where, str)
    if raw not in SPLIT_NAMES:
        raise ConversionError(f"{where}: field 'split': unknown value {raw!r} (expected one of {sorted(SPLIT_NAMES)})")
    return SPLIT_NAMES[raw]


def _strings(item: dict[str, Any], name: str, where: str) -> list[str]:
    values = field_of(item, name, where, list)
    for i, v in enumerate(values):
        if not isinstance(v, str) or not v.strip():
            raise ConversionError(f"{where}: field '{name}[{i}]': expected non-empty text, got {v!r}")
        if len(v) > MAX_TEXT_CHARS:
            raise ConversionError(f"{where}: field '{name}[{i}]': {len(v)} characters, more than {MAX_TEXT_CHARS}")
    return [v.strip() for v in values]


def parse_qa(question: str, answer: str, where: str) -> QA:
    """Infer the question type from its form: options A)-D) → multiple choice; Yes/No answer → yes/no."""
    options = [m.group(2).strip() for m in _OPTION_RE.finditer(question)]
    if len(options) >= 2:
        stem = question[: question.find(" A)") if " A)" in question else question.find("A)")].strip()
        return QA.from_dict(
            {"question": stem or question, "answer": answer, "qtype": "multiple_choice", "options": options}, where
        )
    qtype = "yes_no" if re.match(r"^(yes|no)\b", answer.strip(), re.I) else "descriptive"
    return QA.from_dict({"question": question, "answer": answer, "qtype": qtype}, where)


def _interactive_fields(item: dict[str, Any], where: str) -> dict[str, Any]:
    questions = _strings(item, "questions", where)
    answers = _strings(item, "answers", where)
    if len(questions) != len(answers):
        raise ConversionError(
            f"{where}: fields 'questions'/'answers': {len(questions)} questions, {len(answers)} answers"
        )
    return {
        "initial_description": field_of(item, "initial_description", where, str).strip(),
        "fine_description": field_of(item, "fine-grained_description", where, str).strip(),
        "qas": [parse_qa(q, a, f"{where}: qa {i}") for i, (q, a) in enumerate(zip(questions, answers, strict=True))],
        "captions": _strings(item, "captions", where) if "captions" in item else [],
    }


def _caption_fields(item: dict[str, Any], where: str) -> dict[str, Any]:
    """A T-ReID record's captions; the first is also its initial description, as LLaVA-ReID's T-ReID protocol
    (§5.3, Table 2) starts each dialogue from the data set's annotation."""
    captions = _strings(item, "captions", where)
    return {"captions": captions, "initial_description": captions[0] if captions else ""}


def read_pedes(fmt: PedesFormat, root: Path, images_dir: Path | None = None) -> list[SourceItem]:
    """Parse `root/<annotation file>`; images are looked up under `images_dir` (default: the format's folder,
    `root/imgs` for most)."""
    path = root / fmt.annotation_file
    images_dir = images_dir or root / fmt.images_folder
    items = []
    for i, item in enumerate(load_json_list(path)):
        where = f"{path}: record {i}"
        rel = field_of(item, fmt.path_field, where, str)
        if leaves_root(rel):
            raise ConversionError(f"{where}: field '{fmt.path_field}': {rel!r} leaves the image folder")
        pid = field_of(item, "id", where, (int, str))
        image = images_dir / rel
        if fmt.interactive and not image.exists() and isinstance(item.get("image_path"), str):
            alt = item["image_path"]
            if not leaves_root(alt):
                image = root / alt
        texts = _interactive_fields(item, where) if fmt.interactive else _caption_fields(item, where)
        items.append(SourceItem(image=image, orig_pid=str(pid), split=_split(item, where), where=where, **texts))
    return items

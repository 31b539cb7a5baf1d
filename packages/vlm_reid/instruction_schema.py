"""The instruction sample format the data engine writes and the model reads: task names, validation, reading.

Shards `stage{N}-NNNNNN.tar` (with `stage{N}.manifest.json`) hold one `json` member per sample, keyed
`{task}-{index:07d}`:

    {"stage": 1 | 2 | 3, "task": str, "images": [record keys of the image data set, in order of appearance],
     "messages": [{"role": "user" | "assistant",
                   "content": [{"type": "image", "index": int into "images"} | {"type": "text", "text": str}]}],
     "answer_positions": [1-based positions of the matching options, ascending; [] for tasks without options]}

The options of a task are its gallery images, `images[QUERY_IMAGES[task]:]`, except for `t2i_many_to_one`,
whose options are the captions listed in its prompt.
"""

from __future__ import annotations

import json
import re
import tarfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from ireid.core.records import KEY_RE
from ireid.core.shards import read_manifest

TASKS_BY_STAGE: dict[int, tuple[str, ...]] = {
    1: ("caption",),
    2: (
        "i2i_one_to_one",
        "i2i_many_to_many",
        "t2i_one_to_one",
        "t2i_many_to_one",
        "t2i_one_to_many",
        "attribute_comparison",
        "attribute_annotation",
    ),
    3: (
        "reid_standard",
        "reid_clothes_changing",
        "reid_visible_infrared",
        "reid_text_to_image",
        "reid_attribute",
        "reid_multimodal",
    ),
}
# Images before the gallery; None: the task has no gallery images.
QUERY_IMAGES: dict[str, int | None] = {
    "caption": None,
    "i2i_one_to_one": None,
    "i2i_many_to_many": 1,
    "t2i_one_to_one": None,
    "t2i_many_to_one": None,
    "t2i_one_to_many": 0,
    "attribute_comparison": None,
    "attribute_annotation": None,
    "reid_standard": 1,
    "reid_clothes_changing": 1,
    "reid_visible_infrared": 1,
    "reid_text_to_image": 0,
    "reid_attribute": 0,
    "reid_multimodal": 1,
}
OPTION_TASKS = frozenset({"t2i_many_to_one"})  # answer positions count captions, not gallery images
FIELDS = ("stage", "task", "images", "messages", "answer_positions")
ROLES = ("user", "assistant")
SAMPLE_KEY_RE = re.compile(r"^(?P<task>[a-z0-9_]+)-(?P<index>\d{7})$")


class InstructionError(ValueError):
    """An instruction sample that does not fit the format; the message names where and which field."""


def stage_prefix(stage: int) -> str:
    return f"stage{stage}"


def _fail(where: str, field: str, problem: str) -> InstructionError:
    return InstructionError(f"{where}: field '{field}': {problem}")


def _check_content(content: Any, field: str, where: str, n_images: int, seen: list[int]) -> None:
    if not isinstance(content, list) or not content:
        raise _fail(where, field, "expected a non-empty list of content parts")
    for i, part in enumerate(content):
        name = f"{field}[{i}]"
        if not isinstance(part, dict):
            raise _fail(where, name, f"expected an object, got {type(part).__name__}")
        kind = part.get("type")
        if kind == "image":
            if set(part) != {"type", "index"}:
                raise _fail(where, name, f"an image part has exactly 'type' and 'index', got {sorted(part)}")
            index = part["index"]
            if isinstance(index, bool) or not isinstance(index, int) or not 0 <= index < n_images:
                raise _fail(where, f"{name}.index", f"{index!r} is not an index into {n_images} images")
            seen.append(index)
        elif kind == "text":
            if set(part) != {"type", "text"}:
                raise _fail(where, name, f"a text part has exactly 'type' and 'text', got {sorted(part)}")
            if not isinstance(part["text"], str) or not part["text"]:
                raise _fail(where, f"{name}.text", "expected a non-empty string")
        else:
            raise _fail(where, f"{name}.type", f"{kind!r} is not 'image' or 'text'")


def check_instruction(d: Any, where: str) -> dict[str, Any]:
    """Validate one sample (returned unchanged); every error names `where` and the offending field.

    Besides the types: the task belongs to the stage, images appear in the messages in the order listed (each
    once), turns alternate from "user" and end with "assistant", and answer positions are ascending, 1-based and
    within the task's gallery (or 0 < p for caption options).
    """
    if not isinstance(d, dict):
        raise InstructionError(f"{where}: expected an object, got {type(d).__name__}")
    missing = [name for name in FIELDS if name not in d]
    if missing:
        raise InstructionError(f"{where}: missing field(s) {missing}")
    unknown = sorted(set(d) - set(FIELDS))
    if unknown:
        raise InstructionError(f"{where}: unknown field(s) {unknown}")
    stage, task = d["stage"], d["task"]
    if isinstance(stage, bool) or not isinstance(stage, int) or stage not in TASKS_BY_STAGE:
        raise _fail(where, "stage", f"{stage!r} is not one of {sorted(TASKS_BY_STAGE)}")
    if not isinstance(task, str) or task not in TASKS_BY_STAGE[stage]:
        raise _fail(where, "task", f"{task!r} is not a stage-{stage} task {TASKS_BY_STAGE[stage]}")
    images = d["images"]
    if not isinstance(images, list) or not images:
        raise _fail(where, "images", "expected a non-empty list of record keys")
    for i, key in enumerate(images):
        if not isinstance(key, str) or not KEY_RE.match(key):
            raise _fail(where, f"images[{i}]", f"{key!r} is not a record key")
    messages = d["messages"]
    if not isinstance(messages, list) or len(messages) < 2:
        raise _fail(where, "messages", "expected a list of at least a user and an assistant turn")
    seen: list[int] = []
    for t, message in enumerate(messages):
        name = f"messages[{t}]"
        if not isinstance(message, dict) or set(message) != {"role", "content"}:
            raise _fail(where, name, "expected an object with exactly 'role' and 'content'")
        if message["role"] != ROLES[t % 2]:
            raise _fail(where, f"{name}.role", f"{message['role']!r}; turns alternate, user first")
        _check_content(message["content"], f"{name}.content", where, len(images), seen)
    if messages[-1]["role"] != "assistant":
        raise _fail(where, f"messages[{len(messages) - 1}].role", "the last turn must be the assistant's answer")
    if seen != list(range(len(images))):
        raise _fail(
            where, "messages", f"image parts use indices {seen}; expected each of 0..{len(images) - 1} in order"
        )
    positions = d["answer_positions"]
    if not isinstance(positions, list) or any(isinstance(p, bool) or not isinstance(p, int) for p in positions):
        raise _fail(where, "answer_positions", "expected a list of integers")
    if positions != sorted(set(positions)):
        raise _fail(where, "answer_positions", f"{positions} is not strictly ascending")
    query = QUERY_IMAGES[task]
    if task in OPTION_TASKS:
        limit = None
    elif query is None:
        limit = 0
    else:
        limit = len(images) - query
    if (task in OPTION_TASKS or query is not None) and not positions:
        raise _fail(where, "answer_positions", f"task {task!r} has options, so at least one must match")
    if positions and (positions[0] < 1 or (limit is not None and positions[-1] > limit)):
        raise _fail(where, "answer_positions", f"{positions} outside 1..{limit} for task {task!r}")
    return d


def read_instructions(out_dir: Path | str, stage: int) -> Iterator[dict[str, Any]]:
    """Every sample of a finished stage folder, validated, in written order."""
    prefix = stage_prefix(stage)
    manifest = read_manifest(out_dir, prefix)
    for shard in manifest["shards"]:
        path = Path(out_dir) / shard["name"]
        with tarfile.open(path) as tar:
            for member in tar:
                key, _, extension = member.name.partition(".")
                where = f"{path}: sample {key!r}"
                if extension != "json":
                    raise InstructionError(f"{where}: unexpected member {member.name!r} (only .json)")
                match = SAMPLE_KEY_RE.match(key)
                handle = tar.extractfile(member)
                if handle is None:
                    raise InstructionError(f"{where}: member {member.name!r} is not a file")
                try:
                    sample = json.loads(handle.read())
                except json.JSONDecodeError as exc:
                    raise InstructionError(f"{where}: malformed JSON ({exc})") from exc
                check_instruction(sample, where)
                if match is None or match["task"] != sample["task"]:
                    raise _fail(where, "task", f"{sample['task']!r} does not match the key (expected '<task>-NNNNNNN')")
                yield sample

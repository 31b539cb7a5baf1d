"""Instruction conversations: the shard format the data engine writes and the model trains on, validated once.

A folder holds `stage{N}-NNNNNN.tar` shards with a `stage{N}.manifest.json` (written by
`ireid.core.shards.ShardWriter(out, f"stage{N}")`). Each sample is one `json` member keyed `{task}-{index:07d}`:

    {"stage": 1 | 2 | 3, "task": str, "images": [record keys of the image data set, in order of appearance],
     "messages": [{"role": "user" | "assistant",
                   "content": [{"type": "image", "index": int into "images"} | {"type": "text", "text": str}]}],
     "answer_positions": [1-based positions of the matching options, ascending; [] for tasks without options]}

The options of a task are its gallery images, `images[QUERY_IMAGES[task]:]`, except for `t2i_many_to_one`,
whose options are the captions listed in its prompt. Images are not in these shards: they are read by key from
the image data set folder.
Task names are the engine's (`TASKS_BY_STAGE`) or those of ICL's SFT data (`EXTERNAL_TASKS`), which stage 3 trains
on; any other is an error.
"""

from __future__ import annotations

import json
import logging
import re
import tarfile
import zlib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ireid.core.loader import ShardDataset
from ireid.core.records import KEY_RE
from ireid.core.shards import shard_paths

log = logging.getLogger(__name__)

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
        "i2i_one_to_one",  # stage 2's questions replayed; weight 0 unless asked (a departure: `instructions.MIXES`)
        "t2i_one_to_one",
    ),
}
# Tasks other engines write for stage-3 training: ICL's SFT (`ireid.icl.sft`: Yes/No anchor localisation, VQA) and
# the visual witness's (`ireid.answerer.visual_sft`: the data set's questions about the person's image).
EXTERNAL_TASKS: dict[int, tuple[str, ...]] = {3: ("icl_anchor", "icl_vqa", "visual_witness")}
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
    "icl_anchor": None,
    "icl_vqa": None,
    "visual_witness": None,
}
OPTION_TASKS = frozenset({"t2i_many_to_one"})  # answer positions count captions, not gallery images
FIELDS = ("stage", "task", "images", "messages", "answer_positions")
ROLES = ("user", "assistant")
SAMPLE_KEY_RE = re.compile(r"^(?P<task>[a-z0-9_]+)-(?P<index>\d{7})$")


class ConversationError(ValueError):
    """A conversation sample that does not fit the format; the message names the sample and the field."""


def stage_prefix(stage: int) -> str:
    return f"stage{stage}"


def _fail(where: str, field: str, problem: str) -> ConversationError:
    return ConversationError(f"{where}: field '{field}': {problem}")


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


def check_conversation(d: Any, key: str, where: str) -> dict[str, Any]:
    """Validate one sample (returned unchanged); every error names `where` and the offending field.

    Besides the types: the key is `{task}-NNNNNNN`, the task belongs to the stage, images appear in the messages in
    the order listed (each once, so the processor meets them in `images` order), turns alternate from "user" and
    end with "assistant", and answer positions are ascending, 1-based and within the task's gallery (or 0 < p for
    caption options).
    """
    if not isinstance(d, dict):
        raise ConversationError(f"{where}: expected an object, got {type(d).__name__}")
    missing = [name for name in FIELDS if name not in d]
    if missing:
        raise ConversationError(f"{where}: missing field(s) {missing}")
    unknown = sorted(set(d) - set(FIELDS))
    if unknown:
        raise ConversationError(f"{where}: unknown field(s) {unknown}")
    stage, task = d["stage"], d["task"]
    if isinstance(stage, bool) or not isinstance(stage, int) or stage not in TASKS_BY_STAGE:
        raise _fail(where, "stage", f"{stage!r} is not one of {sorted(TASKS_BY_STAGE)}")
    known = TASKS_BY_STAGE[stage] + EXTERNAL_TASKS.get(stage, ())
    if not isinstance(task, str) or task not in known:
        raise _fail(where, "task", f"{task!r} is not a stage-{stage} task {known}")
    match = SAMPLE_KEY_RE.match(key)
    if match is None or match["task"] != task:
        raise _fail(where, "task", f"{task!r} does not match the key {key!r} (expected '{task}-NNNNNNN')")
    images = d["images"]
    if not isinstance(images, list) or not images:
        raise _fail(where, "images", "expected a non-empty list of record keys")
    for i, image in enumerate(images):
        if not isinstance(image, str) or not KEY_RE.match(image):
            raise _fail(where, f"images[{i}]", f"{image!r} is not a record key")
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


def _member_json(data: bytes, where: str) -> Any:
    try:
        return json.loads(data)
    except ValueError as exc:  # malformed JSON or undecodable bytes
        raise ConversationError(f"{where}: malformed JSON ({exc})") from exc


@dataclass(frozen=True)
class Conversation:
    """One validated sample; `images` is also the order in which the messages show them."""

    key: str
    stage: int
    task: str
    images: tuple[str, ...]
    messages: tuple[dict[str, Any], ...]
    answer_positions: tuple[int, ...]

    @classmethod
    def from_dict(cls, d: Any, key: str, where: str) -> Conversation:
        check_conversation(d, key, where)
        return cls(key, d["stage"], d["task"], tuple(d["images"]), tuple(d["messages"]), tuple(d["answer_positions"]))


def conversation_shards(folder: Path | str, stage: int) -> list[Path]:
    """The finished `stage{N}` shards of a folder; clear errors for a missing or unfinished manifest."""
    return shard_paths(folder, stage_prefix(stage))


def read_conversations(folder: Path | str, stage: int) -> Iterator[dict[str, Any]]:
    """Every sample of a finished stage folder, validated, in written order; the first bad one is an error."""
    for path in conversation_shards(folder, stage):
        with tarfile.open(path) as tar:
            for member in tar:
                key, _, extension = member.name.partition(".")
                where = f"{path}: sample {key!r}"
                handle = tar.extractfile(member)
                if extension != "json" or handle is None:
                    raise ConversationError(f"{where}: unexpected member {member.name!r} (only .json files)")
                yield check_conversation(_member_json(handle.read(), where), key, where)


def in_holdout(key: str, fraction: float) -> bool:
    """A stable pseudo-random share `fraction` of sample keys, held out for validation."""
    return zlib.crc32(key.encode()) % 10_000 < round(fraction * 10_000)


@dataclass(frozen=True)
class HoldoutFilter:
    """Keeps the held-out keys (`held_out=True`, validation) or the others (training); picklable for workers."""

    fraction: float
    held_out: bool

    def __call__(self, key: str) -> bool:
        return in_holdout(key, self.fraction) == self.held_out


class ConversationDataset(ShardDataset):
    """The core shard loader (process/worker splitting, seeded shuffling, skip counting) over conversation samples.

    It replaces only the per-sample decoding (`_samples`): these samples are a JSON conversation, not a record
    with an image. `keep_key` selects samples by key (train versus held-out validation). `encode` maps each
    conversation to what the DataModule batches; a conversation it refuses (too long for the context, an image
    key the data set lacks, an undecodable image) is skipped, warned about and counted, never silently.
    """

    def __init__(
        self,
        urls: Sequence[str | Path],
        *,
        keep_key: Callable[[str], bool] | None = None,
        encode: Callable[[Conversation], Any] | None = None,
        **kwargs: Any,
    ):
        super().__init__(urls, **kwargs)
        self.keep_key = keep_key
        self.encode = encode

    def _samples(self, shards: list[str], keep: Callable[[int], bool]) -> Iterator[Conversation]:  # type: ignore[override]
        for raw in self._raw_samples(shards, keep):
            key = raw.get("__key__", "?")
            if self.keep_key is not None and not self.keep_key(key):
                continue
            where = f"{raw.get('__url__', '?')}: sample {key!r}"
            try:
                if "json" not in raw:
                    raise ConversationError(f"{where}: no .json member")
                yield Conversation.from_dict(_member_json(raw["json"], where), key, where)
            except ConversationError as exc:
                self.skips.add(str(exc))
                log.warning("skipping sample: %s", exc)

    def __iter__(self) -> Iterator[Any]:
        for conversation in super().__iter__():
            if self.encode is None:
                yield conversation
                continue
            try:
                yield self.encode(conversation)
            except (ValueError, KeyError) as exc:
                self.skips.add(f"sample {conversation.key!r}: {exc}")
                log.warning("skipping sample %r: %s", conversation.key, exc)

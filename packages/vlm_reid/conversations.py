"""Instruction conversations: the shard format the instruction data engine writes, read and validated.

A folder holds `stage{N}-NNNNNN.tar` shards with a `stage{N}.manifest.json` (written by
`ireid.core.shards.ShardWriter(out, f"stage{N}")`). Each sample has one `json` member:

    {"stage": int, "task": str, "images": [record keys of the image data set],
     "messages": [{"role": "user" | "assistant",
                   "content": [{"type": "image", "index": int into "images"} | {"type": "text", "text": str}]}],
     "answer_positions": [1-based matching gallery positions, or []]}

Images are not in these shards: they are read by key from the image data set folder.
"""

from __future__ import annotations

import json
import logging
import zlib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import webdataset as wds

from ireid.core.loader import ShardDataset
from ireid.core.shards import shard_paths

log = logging.getLogger(__name__)

ROLES = ("user", "assistant")


class ConversationError(ValueError):
    """A conversation sample that does not fit the format; the message names the sample and the field."""


def _list(value: Any, name: str, where: str) -> list[Any]:
    if not isinstance(value, list):
        raise ConversationError(f"{where}: field '{name}': expected a list, got {type(value).__name__}")
    return value


def _int(value: Any, name: str, where: str, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ConversationError(f"{where}: field '{name}': expected an integer >= {minimum}, got {value!r}")
    return value


def _content_item(item: Any, name: str, where: str, num_images: int) -> dict[str, Any]:
    if not isinstance(item, dict):
        raise ConversationError(f"{where}: field '{name}': expected an object, got {type(item).__name__}")
    kind = item.get("type")
    if kind == "image":
        index = _int(item.get("index"), f"{name}.index", where, 0)
        if index >= num_images:
            raise ConversationError(f"{where}: field '{name}.index': {index} but the sample has {num_images} images")
        return {"type": "image", "index": index}
    if kind == "text":
        text = item.get("text")
        if not isinstance(text, str):
            raise ConversationError(f"{where}: field '{name}.text': expected a string, got {type(text).__name__}")
        return {"type": "text", "text": text}
    raise ConversationError(f"{where}: field '{name}.type': {kind!r} is not 'image' or 'text'")


@dataclass(frozen=True)
class Conversation:
    """One validated instruction sample; `messages` content items are normalised to the two documented forms."""

    key: str
    stage: int
    task: str
    images: tuple[str, ...]
    messages: tuple[dict[str, Any], ...]
    answer_positions: tuple[int, ...] = ()

    @classmethod
    def from_dict(cls, d: Any, key: str, where: str) -> Conversation:
        if not isinstance(d, dict):
            raise ConversationError(f"{where}: expected a JSON object, got {type(d).__name__}")
        for required in ("stage", "task", "images", "messages"):
            if required not in d:
                raise ConversationError(f"{where}: missing field '{required}'")
        stage = _int(d["stage"], "stage", where, 1)
        if not isinstance(d["task"], str) or not d["task"]:
            raise ConversationError(f"{where}: field 'task': expected a non-empty string, got {d['task']!r}")
        images = _list(d["images"], "images", where)
        for i, image in enumerate(images):
            if not isinstance(image, str) or not image:
                raise ConversationError(f"{where}: field 'images[{i}]': expected a record key, got {image!r}")
        messages = []
        for m, message in enumerate(_list(d["messages"], "messages", where)):
            name = f"messages[{m}]"
            if not isinstance(message, dict) or message.get("role") not in ROLES:
                role = message.get("role") if isinstance(message, dict) else message
                raise ConversationError(f"{where}: field '{name}.role': {role!r} is not one of {ROLES}")
            content = [
                _content_item(item, f"{name}.content[{c}]", where, len(images))
                for c, item in enumerate(_list(message.get("content"), f"{name}.content", where))
            ]
            messages.append({"role": message["role"], "content": content})
        if not messages or messages[0]["role"] != "user":
            raise ConversationError(f"{where}: field 'messages': must start with a user message")
        if not any(m["role"] == "assistant" for m in messages):
            raise ConversationError(f"{where}: field 'messages': no assistant message to learn from")
        positions = [
            _int(p, f"answer_positions[{i}]", where, 1)
            for i, p in enumerate(_list(d.get("answer_positions", []), "answer_positions", where))
        ]
        return cls(key, stage, d["task"], tuple(images), tuple(messages), tuple(positions))

    def image_order(self) -> list[str]:
        """Image keys in the order their image items appear in the messages (what the processor consumes)."""
        return [self.images[item["index"]] for m in self.messages for item in m["content"] if item["type"] == "image"]


def conversation_shards(folder: Path | str, stage: int) -> list[Path]:
    """The finished `stage{N}` shards of a folder; clear errors for a missing or unfinished manifest."""
    return shard_paths(folder, f"stage{stage}")


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
        def on_tar_error(exc: Exception) -> bool:
            self.skips.add(f"unreadable shard data: {exc}")
            log.warning("skipping unreadable shard data: %s", exc)
            return True

        index = -1
        for raw in wds.tarfile_samples([{"url": u} for u in shards], handler=on_tar_error):
            index += 1
            key = raw.get("__key__", "?")
            if not keep(index) or (self.keep_key is not None and not self.keep_key(key)):
                continue
            where = f"{raw.get('__url__', '?')}: sample {key!r}"
            try:
                if "json" not in raw:
                    raise ConversationError(f"{where}: no .json member")
                yield Conversation.from_dict(json.loads(raw["json"]), key, where)
            except (ConversationError, json.JSONDecodeError, UnicodeDecodeError) as exc:
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

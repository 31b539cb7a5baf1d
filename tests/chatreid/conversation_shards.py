"""Small instruction-conversation shards in the engine's format (checked as it checks them), without the engine."""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

from ireid.chatreid.conversations import check_conversation
from ireid.core.loader import load_records
from ireid.core.records import Record
from ireid.core.shards import ShardWriter


def image(index: int) -> dict[str, Any]:
    return {"type": "image", "index": index}


def text(value: str) -> dict[str, Any]:
    return {"type": "text", "text": value}


def conversation(stage: int, task: str, images: list[str], *turns: list[dict[str, Any]], positions=()) -> dict:
    """Alternating user / assistant turns, each a content list."""
    messages = [{"role": ("user", "assistant")[i % 2], "content": c} for i, c in enumerate(turns)]
    return {"stage": stage, "task": task, "images": images, "messages": messages, "answer_positions": list(positions)}


def stage_conversations(records: list[Record], stage: int, count: int, seed: int = 0) -> list[dict]:
    """Stage 1: describe one image; stage 2: same person or not (one to one); stage 3: pick the match among 3."""
    rng = random.Random(seed)
    by_pid: dict[int, list[Record]] = {}
    for record in records:
        by_pid.setdefault(record.pid, []).append(record)
    out = []
    for _ in range(count):
        first = rng.choice(records)
        if stage == 1:
            out.append(conversation(1, "caption", [first.key], [image(0), text("Describe the pedestrian.")],
                                    [text(first.fine_description)]))  # fmt: skip
            continue
        same = rng.choice([r for r in by_pid[first.pid] if r.key != first.key])
        others = [r for r in records if r.pid != first.pid]
        if stage == 2:
            other = same if rng.random() < 0.5 else rng.choice(others)
            answer = "Yes" if other.pid == first.pid else "No"
            out.append(conversation(2, "i2i_one_to_one", [first.key, other.key],
                                    [text("Do these two images "), image(0), image(1),
                                     text(" contain the same pedestrian identity?")], [text(answer)]))  # fmt: skip
            continue
        gallery = [same, *rng.sample(others, 2)]
        rng.shuffle(gallery)
        position = gallery.index(same) + 1
        keys = [first.key] + [g.key for g in gallery]
        out.append(conversation(3, "reid_standard", keys,
                                [text("Given the "), image(0), text(" provided, which of "), image(1), image(2),
                                 image(3), text(" show the same pedestrian?")],
                                [text(f"Image {position}.")], positions=[position]))  # fmt: skip
    return out


def write_conversations(out: Path, stage: int, conversations: list[dict], max_samples: int = 1000) -> Path:
    with ShardWriter(out, f"stage{stage}", max_samples=max_samples) as writer:
        for i, sample in enumerate(conversations):
            key = f"{sample['task']}-{i:07d}"
            writer.write_sample(key, {"json": json.dumps(check_conversation(sample, key, str(out))).encode()})
    return out


def write_stages(world: Path, out: Path, count: int = 24) -> Path:
    """Conversation shards of all three stages over a world's train split."""
    records = load_records(world, "train")
    for stage in (1, 2, 3):
        write_conversations(out, stage, stage_conversations(records, stage, count, seed=stage))
    return out

"""ChatReID's instruction data engine: one stage's conversations from a Re-ID data set's records.

The tasks of each stage are in `tasks_stage1/2/3.py`; the sample format, validation and reading in
`conversations.py`. A stage's samples are split among its tasks by a mix (exact counts by largest
remainder), put in an order shuffled by the seed, and each sample `i` is drawn from its own random stream
(seed, stage, i). So a run is byte-identical for a seed, and an interrupted run resumed with `resume=True`
skips the finished keys and writes the same bytes as an uninterrupted one.
"""

from __future__ import annotations

import json
import math
import time
from collections import Counter
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from tqdm import tqdm

from ireid.chatreid import tasks_stage1, tasks_stage2, tasks_stage3
from ireid.chatreid.conversations import TASKS_BY_STAGE, check_conversation, stage_prefix
from ireid.chatreid.instruction_pool import Built, Pool, Task
from ireid.chatreid.look_alikes import load_look_alikes
from ireid.core.loader import load_records
from ireid.core.seeding import derive_rng
from ireid.core.shards import ShardWriter, atomic_write_json

# Stage 3 may replay stage 2's one-to-one questions (image-image, text-image): the §4.1 evaluation reads their Yes/No
# answer, which stage 3's gallery answers otherwise train a small decoder out of (a departure, weight 0 unless
# `--mix` asks for it).
STAGE_TASKS: dict[int, tuple[Task, ...]] = {
    1: tasks_stage1.TASKS,
    2: tasks_stage2.TASKS,
    3: (*tasks_stage3.TASKS, tasks_stage2.I2I_ONE_TO_ONE, tasks_stage2.T2I_ONE_TO_ONE),
}
# Share of each task in a stage. Stage 2 follows §3.2: the two image-to-image tasks about 25 % each (the
# range the paper gives), the five others about 10 % each, which sums to 100 %. Stage 3: equal shares of the
# paper's six tasks.
MIXES: dict[int, dict[str, float]] = {
    1: {"caption": 1.0},
    2: {
        "i2i_one_to_one": 0.25,
        "i2i_many_to_many": 0.25,
        "t2i_one_to_one": 0.10,
        "t2i_many_to_one": 0.10,
        "t2i_one_to_many": 0.10,
        "attribute_comparison": 0.10,
        "attribute_annotation": 0.10,
    },
    3: {**{task.name: 1 / 6 for task in tasks_stage3.TASKS}, "i2i_one_to_one": 0.0, "t2i_one_to_one": 0.0},
}
SAMPLES_PER_RECORD = {1: 1, 2: 2, 3: 1}  # default sample count per record (stage 1: per image it captions)
DEFAULT_GALLERY = (4, 8)  # gallery size N ~ Uniform(a, b), both inclusive
DRAWS_PER_SAMPLE = 50  # a draw may fail (no fitting text for that image); give up on a task after this many
SHARD_SIZE = 1000

for _stage, _tasks in STAGE_TASKS.items():
    if tuple(t.name for t in _tasks) != TASKS_BY_STAGE[_stage] or set(MIXES[_stage]) != set(TASKS_BY_STAGE[_stage]):
        raise RuntimeError(f"stage {_stage}: task builders, names and mix disagree")


def allocate(total: int, mix: Mapping[str, float]) -> dict[str, int]:
    """Exact counts summing to `total`, proportional to `mix` (largest remainder; ties go to the earlier task)."""
    weight = sum(mix.values())
    if weight <= 0 or any(w < 0 for w in mix.values()):
        raise ValueError(f"mix weights must be >= 0 with a positive sum, got {dict(mix)}")
    quotas = {task: total * w / weight for task, w in mix.items()}
    counts = {task: math.floor(q) for task, q in quotas.items()}
    order = sorted(mix, key=lambda task: (-(quotas[task] - counts[task]), list(mix).index(task)))
    for task in order[: total - sum(counts.values())]:
        counts[task] += 1
    return counts


def parse_mix(text: str, stage: int) -> dict[str, float]:
    """ "task=weight,task=weight": the stage's mix with those weights replaced (others keep theirs)."""
    mix = dict(MIXES[stage])
    for item in filter(None, (part.strip() for part in text.split(","))):
        task, sep, value = item.partition("=")
        if not sep or task.strip() not in mix:
            raise ValueError(f"--mix item {item!r}: expected task=weight with a task of {TASKS_BY_STAGE[stage]}")
        try:
            mix[task.strip()] = float(value)
        except ValueError:
            raise ValueError(f"--mix item {item!r}: weight {value!r} is not a number") from None
    return mix


def _draw(task: Task, pool: Pool, seed: int, stage: int, index: int, slot: int, gallery: tuple[int, int]) -> Built:
    rng = derive_rng(seed, "instruction", stage, index)
    for _ in range(DRAWS_PER_SAMPLE):
        built = task.build(pool, rng, slot, gallery)
        if built is not None:
            return built
    raise ValueError(f"task {task.name}: no sample after {DRAWS_PER_SAMPLE} draws (sample {index})")


def _check_config(path: Path, config: dict[str, Any], resume: bool) -> None:
    """Refuse to resume a run that was started with other settings (its samples would not fit together)."""
    if resume and path.exists():
        before = json.loads(path.read_text())
        if before != config:
            changed = sorted(k for k in set(before) | set(config) if before.get(k) != config.get(k))
            raise ValueError(f"{path}: the run was started with other settings ({', '.join(changed)}); use a new --out")
    atomic_write_json(path, config)


def build_instructions(
    data: Path | str,
    out: Path | str,
    stage: int,
    *,
    split: str = "train",
    seed: int = 0,
    samples: int | None = None,
    gallery: tuple[int, int] = DEFAULT_GALLERY,
    mix: Mapping[str, float] | None = None,
    shard_size: int = SHARD_SIZE,
    image_match: str = "person",
    look_alikes: Path | str | None = None,
    look_alike_share: float = 0.5,
    resume: bool = False,
    progress: bool = True,
) -> dict[str, Any]:
    """Write `{out}/stage{N}-*.tar` and `{out}/stage{N}.counts.json` from the records of `data`'s `split`.

    Tasks the data cannot pose (no infrared images, one outfit per person, no attributes) are skipped and their
    share goes to the others; the summary (also the counts file) says which and why. `image_match`,
    `look_alikes` (a file of `look_alikes.py`) and `look_alike_share` set stage 2's image-to-image pairs and the
    wrong texts of its one-to-one text-image pairs (`instruction_pool.py`); the paper's pairs are the defaults.
    """
    if stage not in TASKS_BY_STAGE:
        raise ValueError(f"stage must be one of {sorted(TASKS_BY_STAGE)}, got {stage}")
    low, high = gallery
    if not 2 <= low <= high:
        raise ValueError(f"gallery sizes need 2 <= min <= max, got min {low}, max {high}")
    out = Path(out)
    records = load_records(data, split)
    alikes = load_look_alikes(look_alikes, {r.key for r in records}) if look_alikes is not None else {}
    pool = Pool(records, seed, image_match, alikes, look_alike_share if alikes else 0.0)
    mix = dict(MIXES[stage] if mix is None else mix)
    skipped = {t.name: reason for t in STAGE_TASKS[stage] if (reason := t.unavailable(pool)) is not None}
    available = {task: w for task, w in mix.items() if task not in skipped and w > 0}
    if not available:
        raise ValueError(f"{data} ({split}): no stage-{stage} task can be built: {skipped}")
    total = samples
    if total is None:  # stage 1 captions each usable image once; the other stages count every record
        per_record = SAMPLES_PER_RECORD[stage]
        total = len(tasks_stage1.captioned(pool)) if stage == 1 else len(pool.records) * per_record
    if total < 1:
        raise ValueError(f"samples must be at least 1, got {total}")
    counts = allocate(total, available)
    order = [task for task in available for _ in range(counts[task])]
    derive_rng(seed, "instruction-order", stage).shuffle(order)
    config = {
        "stage": stage,
        "data": str(data),
        "split": split,
        "seed": seed,
        "samples": total,
        "gallery": [low, high],
        "mix": {task: mix[task] for task in TASKS_BY_STAGE[stage]},
        "shard_size": shard_size,
    }
    if image_match != "person" or look_alikes is not None:  # a departure is recorded; the paper's config is unchanged
        config |= {"image_match": image_match, "look_alikes": None if look_alikes is None else str(look_alikes)}
        config |= {"look_alike_share": pool.look_alike_share}
    prefix = stage_prefix(stage)
    tasks = {t.name: t for t in STAGE_TASKS[stage]}
    slots: Counter[str] = Counter()
    start = time.perf_counter()
    with (
        ShardWriter(out, prefix, max_samples=shard_size, resume=resume) as writer,
        tqdm(total=total, desc=f"stage {stage} instructions", unit="sample", disable=not progress) as bar,
    ):
        _check_config(out / f"{prefix}.config.json", config, resume)  # after the writer refused a used folder
        for index, name in enumerate(order):
            slot = slots[name]
            slots[name] += 1
            key = f"{name}-{index:07d}"
            if key not in writer.written_keys:
                built = _draw(tasks[name], pool, seed, stage, index, slot, gallery)
                sample = {
                    "stage": stage,
                    "task": name,
                    "images": built.images,
                    "messages": built.messages,
                    "answer_positions": built.answer_positions,
                }
                check_conversation(sample, key, f"{out}: sample {key!r}")
                writer.write_sample(key, {"json": json.dumps(sample, sort_keys=True).encode()})
            bar.update()
    summary = config | {
        "records": len(pool.records),
        "counts": {task: counts.get(task, 0) for task in TASKS_BY_STAGE[stage]},
        "skipped": skipped,
    }
    atomic_write_json(out / f"{prefix}.counts.json", summary)
    return summary | {"seconds": time.perf_counter() - start}


def format_counts(summary: Mapping[str, Any], tasks: Sequence[str] | None = None) -> str:
    """One line per task: count and share, or why it was skipped."""
    counts = summary["counts"]
    total = sum(counts.values())
    lines = []
    for task in tasks or list(counts):
        if task in summary["skipped"]:
            lines.append(f"  {task:<24} skipped: {summary['skipped'][task]}")
        else:
            lines.append(f"  {task:<24} {counts[task]:>8}  {100 * counts[task] / total:5.1f}%")
    return "\n".join(lines)

"""`python -m ireid.questioner.evaluate`: what a trained questioner asks on held-out look-forward dialogues.

Every (record, round) of a look-forward split is shown to the questioner as the interactive loop would: the
round's top-c candidates, or for a joint checkpoint the c its selector picks from the round's top-k_t. The greedy
questions are read back with the vocabulary's parser (`ireid.core.vocabulary.parse`):

- `parsed_share`: questions that ask about an identifiable attribute;
- `repeat_share`: questions about an attribute the dialogue already asked about;
- `stated_share`: questions about an attribute the initial description already states;
- `target_attribute_share` / `exact_share`: the look-forward target's attribute / the target question itself;
- `image_reliance`: questions whose attribute changes when each example is shown the next example's candidates
  instead of its own (its dialogue unchanged): 0 means the questioner does not read its images at all.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from ireid.core.images import ImageStore
from ireid.core.pixels import decode_image
from ireid.core.shards import atomic_write_json
from ireid.core.vocabulary.parse import mentioned_attributes, parse_question
from ireid.questioner.data import QuestionerDataset, collate, read_rounds
from ireid.questioner.inference import LlavaReidQuestioner, load_selector


def attribute(question: str) -> str | None:
    parsed = parse_question(question)
    return parsed.attribute if parsed else None


def question_scores(dialogues: Sequence[Any], generated: Sequence[str], targets: Sequence[str]) -> dict[str, float]:
    """The shares above over aligned lists (dialogues are `ireid.core.protocols.Dialogue`)."""
    n = len(generated)
    if n == 0:
        raise ValueError("no questions to score")
    asked = [{attribute(t.question) for t in d.turns} - {None} for d in dialogues]
    got = [attribute(q) for q in generated]
    return {
        "parsed_share": sum(a is not None for a in got) / n,
        "repeat_share": sum(a is not None and a in seen for a, seen in zip(got, asked, strict=True)) / n,
        "stated_share": sum(
            a is not None and a in mentioned_attributes(d.initial) for a, d in zip(got, dialogues, strict=True)
        )
        / n,
        "target_attribute_share": sum(a is not None and a == attribute(t) for a, t in zip(got, targets, strict=True))
        / n,
        "exact_share": sum(q.strip() == t.strip() for q, t in zip(generated, targets, strict=True)) / n,
        "distinct_questions": len(set(generated)),
    }


def evaluate(
    checkpoint: Path,
    lookforward: Path,
    data: Path,
    split: str = "val",
    max_records: int | None = None,
    batch_size: int = 32,
    samples: int = 20,
) -> dict[str, Any]:
    started = time.perf_counter()
    questioner = LlavaReidQuestioner.from_checkpoint(checkpoint, batch_size=batch_size)
    selector = load_selector(checkpoint)
    c = questioner.num_images
    examples = read_rounds(lookforward, split, max_records)
    dataset = QuestionerDataset(
        examples, ImageStore.from_shards(data, split), "joint" if selector else "warmup", questioner.num_images
    )
    dialogues, generated, targets, swapped = [], [], [], []
    loaded = time.perf_counter()
    for start in range(0, len(dataset), batch_size):
        batch = collate([dataset[i] for i in range(start, min(start + batch_size, len(dataset)))])
        if selector is not None:
            with torch.no_grad():
                picks = selector.select(batch["dialogue"], batch["candidates"], batch["mask"], c).sort(dim=1).values
            images = [[row[i] for i in p.tolist()] for row, p in zip(batch["images"], picks, strict=True)]
        else:
            images = batch["images"]
        pil = [[decode_image(im) for im in row] for row in images]
        generated += questioner.ask(batch["dialogues"], pil)
        swapped += questioner.ask(batch["dialogues"], pil[1:] + pil[:1]) if len(pil) > 1 else generated[-1:]
        dialogues += batch["dialogues"]
        targets += batch["questions"]
    seconds = time.perf_counter() - loaded
    return {
        "checkpoint": str(checkpoint),
        "split": split,
        "examples": len(generated),
        "selector": selector is not None,
        **question_scores(dialogues, generated, targets),
        "image_reliance": sum(attribute(a) != attribute(b) for a, b in zip(generated, swapped, strict=True))
        / len(generated),
        "load_seconds": loaded - started,
        "generate_seconds": seconds,
        "samples": [
            {
                "dialogue": [d.initial] + [f"{t.question} / {t.answer}" for t in d.turns],
                "target": t,
                "generated": q,
            }
            for d, t, q in list(zip(dialogues, targets, generated, strict=True))[:samples]
        ],
    }


def main(args: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m ireid.questioner.evaluate", description=__doc__.split("\n")[0])
    parser.add_argument("--ckpt", type=Path, required=True, help="questioner checkpoint (warm-up or joint)")
    parser.add_argument("--lookforward", type=Path, required=True, help="ireid lookforward output folder")
    parser.add_argument("--data", type=Path, required=True, help="the data set folder it was built on")
    parser.add_argument("--split", default="val")
    parser.add_argument("--max-records", type=int, help="records to use, spread over the split (default: all)")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--out", type=Path, help="write the scores and sample questions here (JSON)")
    parsed = parser.parse_args(args)
    result = evaluate(parsed.ckpt, parsed.lookforward, parsed.data, parsed.split, parsed.max_records, parsed.batch_size)
    names = ("examples", "parsed_share", "repeat_share", "stated_share", "target_attribute_share", "exact_share")
    for name in (*names, "image_reliance"):
        print(f"{name:>24}: {result[name]:.3f}" if isinstance(result[name], float) else f"{name:>24}: {result[name]}")
    print(f"{'generate_seconds':>24}: {result['generate_seconds']:.1f}")
    if parsed.out:
        atomic_write_json(parsed.out, result)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

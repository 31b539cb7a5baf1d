"""The trained questioner's beam search, with and without the prompt cache, in one run.

`generate` repeats a batch once per beam before it reads the prompts, so an 8-beam search runs each prompt (about
250 positions with four candidate images) through the language model 8 times. `QuestionerModel.prompt_cache`
reads each prompt once and repeats its keys and values per beam. Both variants ask the same questions (checked
here) of the same dialogues: the test split's initial descriptions with their first 0-4 annotated answers, each
shown the images of four test persons, asked as the interactive evaluation asks (8 beams, batches of 16).

    python bench/bench_questioner_generate.py --demo runs/demo [--dialogues 160]   # results/questioner_generate.json
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

JOINT = Path("llava-reid/joint/synthetic/joint/checkpoints/last.ckpt")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--demo", type=Path, required=True, help="a finished `ireid demo` output folder")
    parser.add_argument("--data", type=Path, help="its data set folder (default: DEMO/data)")
    parser.add_argument("--dialogues", type=int, default=160, help="dialogues asked (the demo asks 1,000)")
    parser.add_argument("--beams", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=3, help="timed runs per variant; the fastest counts")
    parser.add_argument("--out", type=Path, help="result file (default: results/questioner_generate.json)")
    args = parser.parse_args()
    data, ckpt = args.data or args.demo / "data", args.demo / JOINT
    for needed in (ckpt, data):
        if not needed.exists():
            raise SystemExit(f"error: {needed} not found (is --demo a finished demo folder?)")

    from benchlib import best_time, write_result

    from ireid.core.images import ImageStore
    from ireid.core.loader import load_records
    from ireid.core.protocols import Dialogue
    from ireid.questioner.inference import LlavaReidQuestioner
    from ireid.questioner.model import QuestionerModel

    records = load_records(data, "test")
    store = ImageStore.from_shards(data, "test")
    dialogues, shown = [], []
    for i in range(args.dialogues):
        record = records[i % len(records)]
        dialogue = Dialogue(record.initial_description)
        for qa in record.qas[: i % 5]:
            dialogue.ask(qa.question, qa.answer)
        dialogues.append(dialogue)
        shown.append(store.load([records[(i + j) % len(records)].key for j in range(4)]))
    questioner = LlavaReidQuestioner.from_checkpoint(ckpt, device="cpu", candidates=args.beams)

    def timed() -> tuple[float, list[str]]:
        """The fastest of `repeats` runs over every dialogue, after a warm-up batch, and the questions asked."""
        questioner.ask(dialogues[:16], shown[:16])  # warm-up: first-call allocations, the tower cache filled
        runs: list[list[str]] = []
        seconds = best_time(lambda: runs.append(questioner.ask(dialogues, shown)), args.repeats)
        return seconds, runs[-1]

    cached, with_cache = timed()
    prompt_cache = QuestionerModel.prompt_cache
    QuestionerModel.prompt_cache = lambda self, embeds, mask, beams: None  # type: ignore[method-assign]
    try:
        plain, without_cache = timed()
    finally:
        QuestionerModel.prompt_cache = prompt_cache  # type: ignore[method-assign]
    if with_cache != without_cache:
        differ = sum(a != b for a, b in zip(with_cache, without_cache, strict=True))
        raise SystemExit(f"error: the prompt cache changed {differ} of {len(dialogues)} questions")
    result = {
        "demo": str(args.demo),
        "dialogues": args.dialogues,
        "beams": args.beams,
        "repeats": args.repeats,
        "seconds_without_cache": plain,
        "seconds_with_cache": cached,
        "speedup": plain / cached,
        "same_questions": True,
        "note": "LlavaReidQuestioner.ask over the dialogues (batches of 16), fastest of the repeats, tower cache warm",
    }
    write_result("questioner_generate", result, args.out)
    print(f"{args.dialogues} dialogues, {args.beams} beams: {plain:.1f} s without the prompt cache, {cached:.1f} s "
          f"with it ({plain / cached:.2f}x), the same questions")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())

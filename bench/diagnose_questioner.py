"""Does the learned questioner read its candidates? Two measurements per `ireid demo` folder.

1. **Image use.** The trained questioner asks the first question of 100 test dialogues twice: shown the
   retriever's top candidates, and shown as many random gallery people. If the asked attribute hardly changes,
   the questioner decides from the dialogue text alone.
2. **How much of the teacher is an order.** On the training targets (`llava-reid/targets`), the share of rounds
   whose target attribute is the counting twin's choice (`target-frequency`: the open attribute most often the
   target at that round). The rest is what only the candidates can tell.

Writes `bench/results/diagnose_questioner.json` and prints a Markdown table.

    python bench/diagnose_questioner.py runs/demo runs/demo-s1
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from benchlib import demo_checkpoint, diagnose_demos

from ireid.core.gallery import encode_split
from ireid.core.images import ImageStore
from ireid.core.loader import load_records
from ireid.core.protocols import Dialogue
from ireid.core.records import evenly_spaced
from ireid.core.vocabulary.parse import parse_question
from ireid.interactive.strategies.target_frequency import TargetFrequency
from ireid.questioner.inference import LlavaReidQuestioner
from ireid.questioner.lookforward import iter_targets, target_attribute_counts
from ireid.retriever.inference import ModuleRetriever

DIALOGUES = 100
BEAMS = 8  # the interactive config's question_beams


def _attribute(question: str) -> str | None:
    parsed = parse_question(question)
    return parsed.attribute if parsed is not None else None


@torch.no_grad()
def image_use(demo: Path) -> dict[str, float]:
    """Round 0 with the top candidates against random people: the share of the same attribute and question."""
    retriever = ModuleRetriever.from_checkpoint(demo_checkpoint(demo, "retriever"))
    gallery = encode_split(retriever, demo / "data", "test")
    store = ImageStore.from_shards(demo / "data", "test")
    questioner = LlavaReidQuestioner.from_checkpoint(demo_checkpoint(demo, "llava-reid/joint"), candidates=BEAMS)
    records = evenly_spaced(load_records(demo / "data", "test"), DIALOGUES)
    dialogues = [Dialogue(r.initial_description) for r in records]
    shown = questioner.num_images
    scores = gallery.scores(retriever.encode_text([d.initial for d in dialogues]))
    top = torch.topk(scores, shown, dim=1).indices.tolist()
    rng = random.Random(0)
    others = [rng.sample(range(len(gallery)), shown) for _ in records]

    def ask(rows: list[list[int]]) -> list[str]:
        return questioner.ask(dialogues, [store.load([gallery.keys[j] for j in row]) for row in rows])

    with_top, with_random = ask(top), ask(others)
    pairs = list(zip(with_top, with_random, strict=True))
    return {
        "same attribute %": 100 * sum(_attribute(a) == _attribute(b) for a, b in pairs) / len(pairs),
        "same question %": 100 * sum(a == b for a, b in pairs) / len(pairs),
    }


def teacher_order(targets: Path) -> dict[str, float]:
    """Per round (and over all), the share of training targets about the counting twin's attribute."""
    twin = TargetFrequency(target_attribute_counts(targets, "train"))
    agree: Counter[int] = Counter()
    total: Counter[int] = Counter()
    for meta, _ in iter_targets(targets, "train", arrays=False):
        for r in meta["rounds"]:
            dialogue = Dialogue(meta["initial"])
            for turn in r["dialogue"]:
                dialogue.ask(turn["question"], turn["answer"])
            choice = twin.choose(r["round"], dialogue)
            total[r["round"]] += 1
            agree[r["round"]] += choice is not None and choice == _attribute(r["question"])
    shares = {f"round {t} %": 100 * agree[t] / total[t] for t in sorted(total)}
    return {**shares, "all %": 100 * sum(agree.values()) / sum(total.values())}


def diagnose(demo: Path) -> dict[str, Any]:
    return {"demo": str(demo), **image_use(demo), **teacher_order(demo / "llava-reid" / "targets")}


def markdown(rows: Sequence[dict[str, Any]]) -> str:
    columns = [k for k in rows[0] if k != "demo"]
    lines = ["| demo | " + " | ".join(columns) + " |", "|---|" + "---:|" * len(columns)]
    lines += ["| " + row["demo"] + " | " + " | ".join(f"{row[c]:.1f}" for c in columns) + " |" for row in rows]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    out = Path("bench/results/diagnose_questioner.json")
    return diagnose_demos(argv, __doc__.split("\n")[0], out, diagnose, markdown)


if __name__ == "__main__":
    raise SystemExit(main())

"""What an attribute net's eyes could give ChatReID's re-ranking: §4.1 with the net's own agreement as the confidence.

ChatReID ranks the retriever's top candidates by its P(Yes). This script ranks the same candidates, through the same
`evaluate_task`, by a score read straight from an attribute net (`ireid attribute-net fit`) and no language model:

- an image query: the log-probability that the two images show the same value of every attribute,
  sum over attributes of log sum_v p_query(v) p_candidate(v);
- a text query: the log-probability the net gives each value the text states (`parse_description`).

The net reads images only, never the gallery's annotations. If this score cannot beat the retriever, a ChatReID
model reading the same net cannot be expected to; if it can, the net is eyes worth giving the model
(`chatreid.attribute_net` in `ireid eval learning`).

Each argument is a ChatReID folder of `ireid eval learning` (`<out>/seed-N/chatreid`: `data/`, `retriever/done.json`,
`attribute-net.pt`). Writes `bench/results/diagnose_chatreid_eyes.json` and prints mean ± sd over the folders.

    python bench/diagnose_chatreid_eyes.py runs/learning-chatreid/seed-{1,2,3}/chatreid
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from benchlib import RESULTS, write_result
from PIL import Image
from torch import Tensor

from ireid.app.chatreid_cli import evaluate_scorer
from ireid.chatreid.eval_tasks import TaskDataError
from ireid.core.attribute_net import AttributeNet
from ireid.core.vocabulary.parse import parse_description

TASKS = ("standard", "text-to-image")
FLOOR = 1e-3  # a probability below it counts as it: one misread attribute must not sink a match


class NetAgreement:
    """The `MatchScorer` of the module docstring."""

    def __init__(self, net: AttributeNet):
        self.net = net

    def match_confidence(self, task: str, query: Image.Image | str, candidates: Sequence[Image.Image]) -> Tensor:
        read = self.net.probabilities(list(candidates))
        score = torch.zeros(len(candidates))
        if isinstance(query, str):
            for attribute, value in parse_description(query).items():
                values = self.net.vocabulary.get(attribute, [])
                if value in values:
                    score += read[attribute][:, values.index(value)].clamp_min(FLOOR).log()
            return score
        asked = self.net.probabilities([query])
        for attribute in self.net.vocabulary:
            score += (read[attribute] * asked[attribute]).sum(1).clamp_min(FLOOR).log()
        return score


def diagnose(folder: Path, tasks: Sequence[str], max_queries: int, max_candidates: int) -> dict[str, Any]:
    """§4.1 on one world's test split: the net's agreement beside the retriever alone, per task."""
    retriever_ckpt = Path(json.loads((folder / "retriever" / "done.json").read_text())["ckpt"])
    net = AttributeNet.load(folder / "attribute-net.pt")
    results = evaluate_scorer(
        lambda: NetAgreement(net), retriever_ckpt, folder / "data", tasks, max_queries=max_queries,
        max_candidates=max_candidates,
    )  # fmt: skip
    return {task: result.to_dict() for task, result in results.items()}


def markdown(per_world: dict[str, dict[str, Any]], tasks: Sequence[str]) -> str:
    def cell(task: str, side: str, key: str) -> str:
        values = [world[task][side][key] for world in per_world.values()]
        sd = statistics.stdev(values) if len(values) > 1 else 0.0
        return f"{statistics.fmean(values):.1f} ± {sd:.1f}"

    lines = ["| task | ranker | mAP | Rank-1 |", "|---|---|---:|---:|"]
    for task in tasks:
        for side, name in (("baseline", "retriever alone"), ("model", "attribute net's agreement")):
            lines.append(f"| {task} | {name} | {cell(task, side, 'mAP')} | {cell(task, side, 'R1')} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folders", nargs="+", type=Path, help="ChatReID folders of `ireid eval learning`")
    parser.add_argument("--tasks", nargs="+", default=list(TASKS))
    parser.add_argument("--max-queries", type=int, default=100)
    parser.add_argument("--max-candidates", type=int, default=20)
    parser.add_argument("--out", type=Path, default=RESULTS / "diagnose_chatreid_eyes.json")
    args = parser.parse_args(argv)
    try:
        per_world = {str(f): diagnose(f, args.tasks, args.max_queries, args.max_candidates) for f in args.folders}
    except (OSError, KeyError, ValueError, TaskDataError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    table = markdown(per_world, args.tasks)
    write_result("diagnose_chatreid_eyes", {"worlds": per_world, "markdown": table}, args.out)
    print(table)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

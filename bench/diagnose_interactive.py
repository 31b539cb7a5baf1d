"""Where the interactive R@1 is lost: the diagnosis table of one or more `ireid demo` folders.

For each demo folder (one world seed each), with its trained retriever and its interactive results:
1. The retriever's ceiling on the test queries: R@1 with the initial description, with the dialogue text holding
   every annotated answer (what a perfect questioner's witness would have said), and with the fine description.
2. R@1 after each round for the oracle, the learned questioner and the non-learned strategies, and R@1/5/10,
   mAP after the last round and BRI (from the demo's `eval/results.json`).
3. How much attribute information the images carry: a linear probe per attribute, trained on the training split
   and scored on the test split, on (a) the 32×32 pixels the tiny questioner's vision tower sees and (b) the
   retriever's image embedding, against the majority class.
Writes `bench/results/diagnose_interactive.json` and prints Markdown tables with mean ± sd over the folders.

    python bench/diagnose_interactive.py runs/demo runs/demo-s1 runs/demo-s2
"""

from __future__ import annotations

import json
import statistics
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from benchlib import demo_checkpoint, diagnose_demos
from torch import Tensor

from ireid.core.gallery import encode_split
from ireid.core.loader import iter_samples, load_records
from ireid.core.records import evenly_spaced
from ireid.core.rounds import retrieval_text_reader
from ireid.core.vocabulary.attributes import ATTRIBUTE_NAMES
from ireid.interactive.reference import retriever_reference
from ireid.retriever.inference import ModuleRetriever

QUERIES = 200  # the demo's evaluation: 200 test queries spread over the split
PROBE_TRAIN = 3000
STRATEGY_ROWS = ("oracle-lookforward", "llava-reid", "expected-gain", "plugir", "random", "simirv")


def ceiling(retriever: ModuleRetriever, data: Path) -> dict[str, float]:
    gallery = encode_split(retriever, data, "test")
    queries = evenly_spaced(load_records(data, "test"), QUERIES)
    return retriever_reference(retriever, gallery, queries, retrieval_text_reader())


def probe_accuracy(train_x: Tensor, train_y: Tensor, test_x: Tensor, test_y: Tensor, classes: int) -> float:
    """Multinomial logistic regression (full-batch Adam) on standardised features; test accuracy in %."""
    mean, std = train_x.mean(0), train_x.std(0) + 1e-6
    train_x, test_x = (train_x - mean) / std, (test_x - mean) / std
    torch.manual_seed(0)
    layer = torch.nn.Linear(train_x.shape[1], classes)
    optimiser = torch.optim.Adam(layer.parameters(), lr=1e-2, weight_decay=1e-4)
    for _ in range(300):
        optimiser.zero_grad()
        torch.nn.functional.cross_entropy(layer(train_x), train_y).backward()
        optimiser.step()
    with torch.no_grad():
        return 100.0 * float((layer(test_x).argmax(1) == test_y).float().mean())


def features(retriever: ModuleRetriever, data: Path, split: str, limit: int) -> tuple[Tensor, Tensor, list[dict]]:
    pixels, embedded, attributes = [], [], []
    batch = []
    for sample in iter_samples(data, split):
        if len(attributes) + len(batch) >= limit:
            break
        batch.append(sample)
        if len(batch) == 128:
            images = [s.image.convert("RGB") for s in batch]
            pixels += [torch.from_numpy(np.asarray(i.resize((32, 32)), dtype=np.float32)).flatten() for i in images]
            embedded.append(retriever.encode_images(images))
            attributes += [s.record.attributes for s in batch]
            batch = []
    return torch.stack(pixels), torch.cat(embedded), attributes


def image_information(retriever: ModuleRetriever, data: Path) -> dict[str, float]:
    train_pixels, train_emb, train_attrs = features(retriever, data, "train", PROBE_TRAIN)
    test_pixels, test_emb, test_attrs = features(retriever, data, "test", 10**9)
    rows: dict[str, list[float]] = {"majority": [], "32px pixels": [], "retriever embedding": []}
    for name in ATTRIBUTE_NAMES:
        values = sorted({a.get(name) for a in train_attrs + test_attrs if a.get(name) is not None})
        index = {v: i for i, v in enumerate(values)}
        train_keep = [i for i, a in enumerate(train_attrs) if name in a]
        test_keep = [i for i, a in enumerate(test_attrs) if name in a]
        if len(values) < 2 or not train_keep or not test_keep:
            continue
        ytr = torch.tensor([index[train_attrs[i][name]] for i in train_keep])
        yte = torch.tensor([index[test_attrs[i][name]] for i in test_keep])
        majority = int(torch.bincount(ytr, minlength=len(values)).argmax())
        rows["majority"].append(100.0 * float((yte == majority).float().mean()))
        rows["32px pixels"].append(
            probe_accuracy(train_pixels[train_keep], ytr, test_pixels[test_keep], yte, len(values))
        )
        rows["retriever embedding"].append(
            probe_accuracy(train_emb[train_keep], ytr, test_emb[test_keep], yte, len(values))
        )
    return {k: statistics.mean(v) for k, v in rows.items()}


FINAL_METRICS = ("R1", "R5", "R10", "mAP", "bri")


def per_round(results: Path) -> dict[str, list[float]]:
    strategies = json.loads(results.read_text())["strategies"]
    return {s["name"]: [r["R1"] for r in s["rounds"]] for s in strategies if s["name"] in STRATEGY_ROWS}


def final_round(results: Path) -> dict[str, dict[str, float]]:
    """R@1, R@5, R@10 and mAP after the last round, and BRI, per strategy."""
    strategies = json.loads(results.read_text())["strategies"]
    return {
        s["name"]: {**{k: s["rounds"][-1][k] for k in FINAL_METRICS if k != "bri"}, "bri": s["bri"]}
        for s in strategies
        if s["name"] in STRATEGY_ROWS
    }


def diagnose(demo: Path) -> dict[str, Any]:
    retriever = ModuleRetriever.from_checkpoint(demo_checkpoint(demo, "retriever"))
    data = Path(json.loads((demo / "eval" / "config.json").read_text())["data_dir"])  # `--data` or the demo's world
    return {
        "demo": str(demo),
        "ceiling": ceiling(retriever, data),
        "rounds": per_round(demo / "eval" / "results.json"),
        "final": final_round(demo / "eval" / "results.json"),
        "image_information": image_information(retriever, data),
    }


def mean_sd(values: Sequence[float], digits: int = 1) -> str:
    sd = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{statistics.mean(values):.{digits}f} ± {sd:.{digits}f}"


def markdown(rows: list[dict[str, Any]]) -> str:
    lines = [f"{len(rows)} world seed(s): " + ", ".join(r["demo"] for r in rows), ""]
    lines += ["| retriever on the 200 test queries | R@1 |", "|---|---:|"]
    lines += [f"| {k} | {mean_sd([r['ceiling'][k] for r in rows])} |" for k in rows[0]["ceiling"]]
    rounds = len(next(iter(rows[0]["rounds"].values())))
    lines += ["", "| R@1 after round | " + " | ".join(str(t) for t in range(rounds)) + " |"]
    lines += ["|---|" + "---:|" * rounds]
    for name in STRATEGY_ROWS:
        if all(name in r["rounds"] for r in rows):
            cells = [mean_sd([r["rounds"][name][t] for r in rows]) for t in range(rounds)]
            lines.append(f"| {name} | " + " | ".join(cells) + " |")
    lines += ["", "| after the last round | " + " | ".join(FINAL_METRICS) + " |"]
    lines += ["|---|" + "---:|" * len(FINAL_METRICS)]
    for name in STRATEGY_ROWS:
        if all(name in r["final"] for r in rows):
            cells = [mean_sd([r["final"][name][k] for r in rows], 2 if k == "bri" else 1) for k in FINAL_METRICS]
            lines.append(f"| {name} | " + " | ".join(cells) + " |")
    lines += ["", "| attribute probe (mean over attributes, test accuracy %) | |", "|---|---:|"]
    lines += [f"| {k} | {mean_sd([r['image_information'][k] for r in rows])} |" for k in rows[0]["image_information"]]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    out = Path("bench/results/diagnose_interactive.json")
    return diagnose_demos(argv, __doc__.split("\n")[0], out, diagnose, markdown)


if __name__ == "__main__":
    raise SystemExit(main())

"""THI as a re-ranker of a plain text-to-image evaluation (ICL Tables 1, 2 and 5), with its ξ and λ sweeps (Fig. 5).

Each record of the split is a text query (its caption, or its initial description for a vaguer query) against
every image of the split; the images of the query's person count as matches. The report sets the retriever alone
beside the retriever with THI, on the same queries, and says how many queries interacted and how many model calls
each cost.
"""

from __future__ import annotations

import dataclasses
import io
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from ireid.core.gallery import Gallery
from ireid.core.metrics import per_query_stats
from ireid.core.records import Record
from ireid.core.shards import atomic_write_bytes
from ireid.icl.perception import Perception
from ireid.icl.thi import THI

QUERY_TEXTS = ("caption", "initial")
METRICS = ("R1", "R5", "R10", "mAP", "mINP")


def query_texts(records: Sequence[Record], query: str) -> list[str]:
    """Each record's query text: its first caption (else its fine description), or its initial description."""
    if query not in QUERY_TEXTS:
        raise ValueError(f"query text {query!r} is not one of {QUERY_TEXTS}")
    texts = []
    for record in records:
        text = (
            (record.captions[0] if record.captions else record.fine_description)
            if query == "caption"
            else (record.initial_description)
        )
        if not text.strip():
            field = "captions" if query == "caption" else "initial_description"
            raise ValueError(f"record {record.key!r}: field '{field}' is empty, so it cannot be a text query")
        texts.append(text)
    return texts


def calls_per_query(counts: dict[str, int], questions_per_image: int) -> float:
    """Model calls per query: Yes/No judgements, VQA questions on each anchor and merges."""
    calls = counts["locate_calls"] + counts["described_images"] * questions_per_image + counts["aggregation_calls"]
    return calls / max(counts["queries"], 1)


def anchor_accuracy(
    perception: Perception, texts: Sequence[str], base: torch.Tensor, pids: torch.Tensor, gallery: Gallery, count: int
) -> dict[str, Any]:
    """Eq. 2 on `count` queries (evenly spaced), each asked about an image of its own person (not its top-1 where
    the person has another, so the judge must do more than agree with the retriever) and about the image of
    another person its text ranks highest: the hard negative the SFT data uses. Balanced, so always answering Yes
    (or No) scores 50 %."""
    rows = torch.linspace(0, len(texts) - 1, min(count, len(texts))).round().long().unique().tolist()
    positives, negatives = [], []
    for i in rows:
        same = (gallery.pids == pids[i]).nonzero().flatten().tolist()
        if not same:
            raise ValueError(f"query {i}: no gallery image of its person to ask about")
        others = [j for j in same if gallery.keys[j] != gallery.keys[int(base[i].argmax())]] or same
        positives.append(gallery.keys[others[0]])
        masked = base[i].masked_fill(gallery.pids == pids[i], float("-inf"))
        negatives.append(gallery.keys[int(masked.argmax())])
    asked = [texts[i] for i in rows]
    answers = perception.locate(asked + asked, positives + negatives)
    yes = [a is True for a in answers[: len(rows)]]
    no = [a is False for a in answers[len(rows) :]]
    return {
        "pairs": 2 * len(rows),
        "accuracy": round(100.0 * (sum(yes) + sum(no)) / (2 * len(rows)), 2),
        "yes_on_match": round(100.0 * sum(yes) / len(rows), 2),
        "no_on_other_person": round(100.0 * sum(no) / len(rows), 2),
        "unreadable": sum(a is None for a in answers),
    }


def evaluate_thi(
    thi: THI,
    texts: Sequence[str],
    pids: torch.Tensor,
    gallery: Gallery,
    xis: Sequence[float] = (),
    lams: Sequence[float] = (),
    anchor_pairs: int = 0,
) -> dict[str, Any]:
    """The retriever alone and with THI on the same queries, plus a ξ × λ sweep (each ξ reruns the anchor search,
    so give THI a `CachedPerception` to ask each pair once) and, with `anchor_pairs`, the model's anchor accuracy."""
    base = gallery.scores(thi.encode_text(list(texts)))
    result = thi.rerank(texts, base, gallery.keys, gallery.embeddings)

    def metrics(scores: torch.Tensor) -> dict[str, float]:
        return per_query_stats(scores, pids, gallery.pids).summarise()

    sweep = []
    for xi in xis:
        swept = THI(thi.perception, thi.encode_text, dataclasses.replace(thi.settings, xi=xi), thi.aggregator)
        run = swept.rerank(texts, base, gallery.keys, gallery.embeddings)
        for lam in lams:
            row = {"xi": xi, "xi_value": run.xi, "lam": lam, "interacted": run.counts["interacted"]}
            sweep.append(row | metrics(run.with_lambda(base, lam)))
    top1 = base.max(dim=1).values
    return {
        "retriever": metrics(base),
        "thi": metrics(result.scores),
        "xi_value": result.xi,
        "counts": result.counts,
        "top1_similarity": {q: round(float(top1.quantile(q)), 4) for q in (0.1, 0.25, 0.5, 0.75, 0.9)},
        "anchor_is_match": _anchor_precision(result.anchors, pids, gallery.pids),
        "sweep": sweep,
        "anchor_accuracy": anchor_accuracy(thi.perception, texts, base, pids, gallery, anchor_pairs)
        if anchor_pairs > 0
        else None,
    }


def _anchor_precision(anchors: torch.Tensor, pids: torch.Tensor, gallery_pids: torch.Tensor) -> float | None:
    """The share of interacting queries whose anchor shows their person (needs the pids, so an evaluation figure)."""
    rows = (anchors >= 0).nonzero().flatten()
    if not len(rows):
        return None
    return round(100.0 * (gallery_pids[anchors[rows]] == pids[rows]).double().mean().item(), 2)


def markdown_table(report: dict[str, Any], name: str) -> str:
    """ICL Table 1's shape: the retriever alone, then with THI (★)."""
    header = "| Method | " + " | ".join(m.replace("R", "R@") if m.startswith("R") else m for m in METRICS) + " |"
    lines = [header, "|---" + "|---:" * len(METRICS) + "|"]
    for label, key in (("retriever", "retriever"), (f"retriever + THI★ ({name})", "thi")):
        lines.append(f"| {label} | " + " | ".join(f"{report[key][m]:.2f}" for m in METRICS) + " |")
    return "\n".join(lines) + "\n"


def plot_sweep(report: dict[str, Any], xi: float, lam: float, path: Path) -> None:
    """Fig. 5's two panels: R@1 and mAP against ξ (at the chosen λ) and against λ (at the chosen ξ)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = report["sweep"]
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.6), dpi=120)
    for ax, (vary, fixed, value) in zip(axes, (("xi", "lam", lam), ("lam", "xi", xi)), strict=True):
        chosen = sorted((r for r in rows if abs(r[fixed] - value) < 1e-9), key=lambda r: r[vary])
        x = [r[vary] for r in chosen]
        for metric, colour in (("R1", "C0"), ("mAP", "C1")):
            ax.plot(x, [r[metric] for r in chosen], marker="o", color=colour, label=f"THI {metric}")
            ax.axhline(report["retriever"][metric], color=colour, linestyle=":", label=f"retriever {metric}")
        ax.set_xlabel("ξ (similarity threshold)" if vary == "xi" else "λ (weight of the raw query)")
        ax.set_title(f"{'λ' if fixed == 'lam' else 'ξ'} = {value}")
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("%")
    axes[1].legend(fontsize=7)
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    plt.close(fig)
    atomic_write_bytes(path, buffer.getvalue())

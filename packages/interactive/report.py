"""The evaluation report: JSON, a Markdown table shaped like LLaVA-ReID Table 1, and an R@k-per-round plot."""

from __future__ import annotations

import io
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ireid.core.shards import atomic_write_bytes, atomic_write_json
from ireid.interactive.harness import StrategyResult

TABLE_METRICS = ("R1", "R5", "R10", "mAP")
_HEADERS = {"R1": "R@1", "R5": "R@5", "R10": "R@10", "mAP": "mAP"}


def table_rounds(num_rounds: int) -> list[int]:
    """The rounds Table 1 reports: 3 and the last (5 by default), fewer when the dialogue is shorter."""
    return sorted({min(3, num_rounds), num_rounds})


def _label(result: StrategyResult) -> str:
    return f"{result.name} (uses ground truth)" if result.uses_ground_truth else result.name


def _rows(results: Sequence[StrategyResult], reranked: bool) -> list[str]:
    rows = []
    for result in results:
        rounds = result.reranked_rounds if reranked else result.rounds
        bri = result.reranked_bri if reranked else result.bri
        if rounds is None or bri is None:
            continue
        cells = [f"{rounds[r][m]:.2f}" for r in table_rounds(len(rounds) - 1) for m in TABLE_METRICS]
        rows.append("| " + " | ".join([_label(result), *cells, f"{bri:.3f}"]) + " |")
    return rows


def _table(results: Sequence[StrategyResult], reranked: bool = False) -> list[str]:
    num_rounds = len(results[0].rounds) - 1
    shown = table_rounds(num_rounds)
    header = ["Method", *(f"R{r} {_HEADERS[m]}" for r in shown for m in TABLE_METRICS), "BRI ↓"]
    return [
        "| " + " | ".join(header) + " |",
        "|" + "|".join(["---"] + ["---:"] * (len(header) - 1)) + "|",
        *_rows(results, reranked),
    ]


def _per_round_table(results: Sequence[StrategyResult], reranked: bool = False) -> list[str]:
    num_rounds = len(results[0].rounds) - 1
    header = ["Method", *(f"round {r}" for r in range(num_rounds + 1))]
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(["---"] + ["---:"] * (num_rounds + 1)) + "|"]
    for result in results:
        rounds = result.reranked_rounds if reranked else result.rounds
        if rounds is not None:
            lines.append("| " + " | ".join([result.name, *(f"{m['R1']:.2f}" for m in rounds)]) + " |")
    return lines


def markdown_report(results: Sequence[StrategyResult], context: dict[str, Any]) -> str:
    """Table 1-style summary (R@k and mAP in %, BRI lower is better), R@1 per round, and the re-ranked table (T-ReID
    averaging or ICL's THI, as `context["re-ranking"]` says)."""
    if not results:
        raise ValueError("no strategy results to report")
    lines = ["# Interactive evaluation", ""]
    lines += [f"- {key}: {value}" for key, value in context.items()]
    lines += ["", "## Retrieval after rounds 3 and 5 (LLaVA-ReID Table 1 layout)", "", *_table(results)]
    if any(r.uses_ground_truth for r in results):
        lines += [
            "",
            "Rows marked *uses ground truth* read annotations a deployed system does not have: the target's answers "
            "(`oracle-lookforward`, an upper bound), the gallery's descriptions in place of a captioner (`plugir`) or "
            "the candidates' annotated attributes in place of guesses from their images (`expected-gain:annotated`).",
        ]
    lines += ["", "## R@1 after each round (round 0 = initial description)", "", *_per_round_table(results)]
    if any(r.reranked_rounds is not None for r in results):
        lines += [
            "",
            f"## With re-ranking: {context.get('re-ranking', 'T-ReID')}",
            "",
            *_table(results, reranked=True),
            "",
            "R@1 after each round, re-ranked:",
            "",
            *_per_round_table(results, reranked=True),
        ]
    return "\n".join(lines) + "\n"


def plot_rounds(results: Sequence[StrategyResult], path: Path) -> None:
    """R@1 (solid) and R@5 (dashed) against the number of questions asked, one colour per strategy (cf. Figure 4)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5), dpi=120)
    for i, result in enumerate(results):
        colour = f"C{i % 10}"
        x = list(range(len(result.rounds)))
        ax.plot(x, [m["R1"] for m in result.rounds], color=colour, marker="o", label=f"{result.name} R@1")
        ax.plot(
            x, [m["R5"] for m in result.rounds], color=colour, linestyle="--", marker=".", label=f"{result.name} R@5"
        )
    ax.set_xlabel("questions asked (round)")
    ax.set_ylabel("recall (%)")
    ax.set_title("Interactive retrieval: R@1 (solid) and R@5 (dashed)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, ncol=2, loc="best")
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    plt.close(fig)
    atomic_write_bytes(path, buffer.getvalue())


def write_report(results: Sequence[StrategyResult], out_dir: Path, context: dict[str, Any]) -> dict[str, Path]:
    """results.json, report.md and rounds.png under `out_dir`; returns their paths."""
    paths = {"json": out_dir / "results.json", "markdown": out_dir / "report.md", "plot": out_dir / "rounds.png"}
    atomic_write_json(paths["json"], {"context": context, "strategies": [r.to_dict() for r in results]})
    atomic_write_bytes(paths["markdown"], markdown_report(results, context).encode())
    plot_rounds(results, paths["plot"])
    return paths


# LLaVA-ReID Table 3: which setting each row varies, in the paper's order (the selector row uses look-forward targets).
SELECTION_ROWS: tuple[tuple[str, str, str], ...] = (
    ("Candidate", "k-means", "llava-reid:k-means"),
    ("Candidate", "uniform", "llava-reid:uniform"),
    ("Candidate", "top-k", "llava-reid:top-k"),
    ("Candidate", "selector", "llava-reid"),
    ("Question", "random", "llava-reid:random-targets"),
    ("Question", "look-forward", "llava-reid"),
)


def selection_table(results: Sequence[StrategyResult]) -> str:
    """Image and question selection compared as LLaVA-ReID Table 3: R@1/5/10 after the last round, and BRI."""
    by_name = {r.name: r for r in results}
    lines = ["| Settings | | R@1 | R@5 | R@10 | BRI ↓ |", "|---|---|---:|---:|---:|---:|"]
    for group, setting, name in SELECTION_ROWS:
        if name not in by_name:
            continue
        result = by_name[name]
        last = result.rounds[-1]
        cells = [f"{last[m]:.2f}" for m in ("R1", "R5", "R10")]
        lines.append("| " + " | ".join([group, setting, *cells, f"{result.bri:.3f}"]) + " |")
    return "\n".join(lines) + "\n"

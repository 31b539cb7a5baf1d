"""ICL's THI over the retrievers of several `ireid demo` folders: the retriever alone against THI, and the ξ and λ
sweeps (Fig. 5) as mean ± sd over the worlds, in one JSON and one plot.

Each demo's test captions (or initial descriptions) are the queries against its test images, with the settings of
`configs/icl/synthetic.yaml`; `--mllm` names the MLLM as `ireid icl rerank` does (`annotated` reads the images'
annotations: perfect eyes, which uses ground truth), with `{demo}` standing for each demo's folder, so that each world
is read with its own attribute net (`attribute-net:{demo}/attribute-net.pt`).

    python bench/diagnose_icl_thi.py runs/demo-s2 runs/demo-s3 runs/demo-s4 [--mllm annotated] [--query caption]
"""

from __future__ import annotations

import argparse
import dataclasses
import io
import statistics
import sys
from pathlib import Path
from typing import Any

from benchlib import RESULTS, demo_checkpoint, write_result

from ireid.app.thi_pipeline import ANNOTATED, thi_report
from ireid.core.shards import atomic_write_bytes
from ireid.icl.config import load_config

CONFIG = Path(__file__).resolve().parents[1] / "configs" / "icl" / "synthetic.yaml"


def diagnose(demo: Path, mllm: str, query: str) -> dict[str, Any]:
    config = dataclasses.replace(
        load_config(CONFIG), data_dir=str(demo / "data"), retriever_ckpt=str(demo_checkpoint(demo, "retriever")),
        mllm=mllm.replace("{demo}", str(demo)), query=query, max_queries=None, anchor_pairs=200,
    )  # fmt: skip
    return {"demo": str(demo), **thi_report(config), "settings": dataclasses.asdict(config.thi)}


def _mean_sd(values: list[float]) -> tuple[float, float]:
    return statistics.mean(values), statistics.stdev(values) if len(values) > 1 else 0.0


def summarise(rows: list[dict[str, Any]]) -> dict[str, Any]:
    gains = {m: [r["thi"][m] - r["retriever"][m] for r in rows] for m in ("R1", "mAP")}
    return {
        "retriever_R1": _mean_sd([r["retriever"]["R1"] for r in rows]),
        "thi_R1": _mean_sd([r["thi"]["R1"] for r in rows]),
        "gain_R1": _mean_sd(gains["R1"]),
        "gain_mAP": _mean_sd(gains["mAP"]),
        "interacted": [r["counts"]["interacted"] for r in rows],
        "anchor_accuracy": [r["anchor_accuracy"]["accuracy"] for r in rows],
    }


def plot(rows: list[dict[str, Any]], path: Path, title: str) -> None:
    """R@1 gain over the retriever against ξ (at λ 0.8) and against λ (at the config's ξ), mean ± sd over worlds."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    settings = rows[0]["settings"]
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.6), dpi=120)
    for ax, (vary, fixed, value) in zip(
        axes, (("xi", "lam", settings["lam"]), ("lam", "xi", settings["xi"])), strict=True
    ):
        grid = sorted({s[vary] for s in rows[0]["sweep"]})
        for metric, colour in (("R1", "C0"), ("mAP", "C1")):
            gains = [[next(s[metric] for s in r["sweep"] if s[vary] == x and abs(s[fixed] - value) < 1e-9)
                      - r["retriever"][metric] for r in rows] for x in grid]  # fmt: skip
            mean = [statistics.mean(g) for g in gains]
            sd = [statistics.stdev(g) if len(g) > 1 else 0.0 for g in gains]
            ax.errorbar(grid, mean, yerr=sd, marker="o", color=colour, capsize=3, label=f"{metric} gain")
        ax.axhline(0.0, color="grey", linewidth=0.8)
        scale = "quantile of the top-1 similarities" if settings["xi_from"] == "quantile" else "cosine"
        ax.set_xlabel(f"ξ ({scale})" if vary == "xi" else "λ (weight of the raw query)")
        ax.set_title(f"{'λ' if fixed == 'lam' else 'ξ'} = {value}")
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("THI − retriever (points)")
    axes[1].legend(fontsize=7)
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    plt.close(fig)
    atomic_write_bytes(path, buffer.getvalue())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("demos", nargs="+", type=Path, help="`ireid demo --out` folders, one per world seed")
    parser.add_argument(
        "--mllm", default=ANNOTATED, help="annotated | attribute-net:<file> | chatreid:<ckpt> | openai:<url>#<model>"
    )
    parser.add_argument("--query", default="caption", choices=("caption", "initial"))
    parser.add_argument("--out", type=Path, default=RESULTS / "icl_thi.json")
    args = parser.parse_args(argv)
    try:
        rows = [diagnose(demo, args.mllm, args.query) for demo in args.demos]
    except (OSError, KeyError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    summary = summarise(rows)
    write_result("icl_thi", {"mllm": args.mllm, "query": args.query, "summary": summary, "demos": rows}, args.out)
    plot(
        rows, args.out.with_suffix(".png"), f"THI ({args.mllm}) over {len(rows)} demo retrievers, {args.query} queries"
    )
    print({k: v for k, v in summary.items()})
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""ICL Table 6's THI and RDA rows over `ireid demo` folders: RDA off and on, THI off and on, on each world's test
captions, as mean ± sd over the worlds.

RDA off is each demo's own retriever. RDA on is its twin, trained with the very config the demo's run saved (its
seed, settings and time budget) and `data.rda true`, once, under `DEMO/retriever-rda` (a rerun reuses it, a cut run
resumes). THI asks `--mllm` as `ireid icl rerank` does, `{demo}` standing for each folder, with the settings of
`configs/icl/synthetic.yaml` (`ireid.app.thi_pipeline.thi_rows`: no sweep, `join`).

    python bench/diagnose_icl_table6.py runs/demo-s2 runs/demo-s3 runs/demo-s4 \
        --mllm 'attribute-net:{demo}/attribute-net.pt'     # bench/results/icl_table6.json
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path
from typing import Any

from benchlib import RESULTS, demo_checkpoint, write_result

from ireid.app.stages import REPO_CONFIGS, fit_step
from ireid.app.thi_pipeline import RETRIEVER_ALONE, thi_rows
from ireid.retriever.cli import RetrieverCLI
from ireid.retriever.data import RetrievalDataModule
from ireid.retriever.module import RetrieverModule

THI_CONFIG = REPO_CONFIGS / "icl" / "synthetic.yaml"
ROWS = ("retriever", "+ RDA", "+ THI", "+ RDA + THI")


def saved_config(demo: Path) -> Path:
    """The composed LightningCLI config the demo's retriever run saved (its seed, settings and budget)."""
    configs = sorted((demo / "retriever").glob("**/config.yaml"))
    if not configs:
        raise FileNotFoundError(f"{demo / 'retriever'}: no saved config.yaml of the demo's retriever run")
    return configs[0]


def rda_twin(demo: Path) -> Path:
    """The demo's retriever trained again with RDA on, everything else as the demo ran it."""
    overrides = ["--data.data_dir", str(demo / "data"), "--data.rda", "true"]
    return fit_step("retriever with RDA", demo / "retriever-rda", RetrieverCLI, RetrieverModule, RetrievalDataModule,
                    saved_config(demo), overrides)  # fmt: skip


def caption_scores(demo: Path, retriever: Path, mllm: str) -> tuple[dict[str, float], dict[str, float]]:
    """R@1 and mAP on the test captions: the retriever alone, and with THI (with its anchor accuracy and how many
    queries interacted)."""
    rows = thi_rows(THI_CONFIG, demo / "data", retriever, [("thi", mllm)])
    alone, thi = ({"R1": rows[n]["caption R@1"], "mAP": rows[n]["caption mAP"]} for n in (RETRIEVER_ALONE, "thi"))
    thi.update({"anchor accuracy": rows["thi"]["anchor accuracy"], "interacted": rows["thi"]["interacted"]})
    return alone, thi


def diagnose(demo: Path, mllm: str) -> dict[str, Any]:
    mllm = mllm.replace("{demo}", str(demo))
    plain, thi = caption_scores(demo, demo_checkpoint(demo, "retriever"), mllm)
    rda, rda_thi = caption_scores(demo, rda_twin(demo), mllm)
    return {"demo": str(demo), "mllm": mllm, "rows": dict(zip(ROWS, (plain, rda, thi, rda_thi), strict=True))}


def markdown(rows: list[dict[str, Any]]) -> str:
    def cell(row: str, metric: str) -> str:
        values = [r["rows"][row][metric] for r in rows]
        sd = statistics.stdev(values) if len(values) > 1 else 0.0
        return f"{statistics.mean(values):.1f} ± {sd:.1f}"

    lines = ["| | caption R@1 | caption mAP |", "|---|---:|---:|"]
    lines += [f"| {row} | {cell(row, 'R1')} | {cell(row, 'mAP')} |" for row in ROWS]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("demos", nargs="+", type=Path, help="`ireid demo --out` folders, one per world seed")
    parser.add_argument("--mllm", default="annotated", help="annotated | attribute-net:<file> | chatreid:<ckpt> | ...")
    parser.add_argument("--out", type=Path, default=RESULTS / "icl_table6.json")
    args = parser.parse_args(argv)
    try:
        rows = [diagnose(demo, args.mllm) for demo in args.demos]
    except (OSError, KeyError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    table = markdown(rows)
    write_result("icl_table6", {"mllm": args.mllm, "demos": rows, "markdown": table}, args.out)
    print(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())

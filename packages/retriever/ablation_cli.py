"""`python -m ireid.retriever.ablation_cli`: the loss, RDA and partial-text ablation on one config, as a Markdown table.

Each variant trains with the same config and step budget, then is tested from its best checkpoint (by
validation fine R@1). Results are written per variant as they finish, so an interrupted ablation resumes
where it stopped.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from ireid.core.shards import atomic_write_bytes, atomic_write_json
from ireid.retriever.cli import RetrieverCLI
from ireid.retriever.data import RetrievalDataModule
from ireid.retriever.module import RetrieverModule

FINE = ["--data.partial_text_prob", "0"]  # every variant names its text mix, whatever the config's default
PARTIAL = ["--data.partial_text_prob", "0.5"]
VARIANTS: dict[str, list[str]] = {
    "config": [],  # the config as it is, with the command line's overrides (one row of a hyperparameter search)
    "sdm": ["--model.losses", "sdm", *FINE],
    "sdm+id": ["--model.losses", "sdm+id", *FINE],
    "sdm+id+mlm": ["--model.losses", "sdm+id+mlm", *FINE],
    "sdm+id, RDA": ["--model.losses", "sdm+id", "--data.rda", "true", *FINE],
    "sdm, partial": ["--model.losses", "sdm", *PARTIAL],
    "sdm+attr": ["--model.losses", "sdm+attr", *FINE],
    "sdm+attr, partial": ["--model.losses", "sdm+attr", *PARTIAL],
}
COLUMNS = ("fine/R1", "fine/R5", "fine/R10", "fine/mAP", "initial/R1", "initial/R5", "partial/R1", "partial/R5")


def run_variant(config: Path, overrides: list[str], out: Path) -> dict[str, float]:
    cli = RetrieverCLI(
        RetrieverModule,
        RetrievalDataModule,
        args=["--config", str(config), "--trainer.logger.init_args.save_dir", str(out), *overrides],
        run=False,
    )
    start = time.perf_counter()
    cli.trainer.fit(cli.model, cli.datamodule)
    train_s = time.perf_counter() - start
    (result,) = cli.trainer.test(cli.model, cli.datamodule, ckpt_path="best")
    metrics = {k.removeprefix("test/"): float(v) for k, v in result.items()}
    return {**metrics, "train_seconds": train_s, "steps": cli.trainer.global_step}


def variant_result(config: Path, name: str, overrides: list[str], out: Path) -> dict[str, float]:
    """A variant's test numbers: read back from `out/<slug>.json` when it finished before, else trained (under
    `out/<slug>`) and written there."""
    slug = name.replace("+", "_").replace(", ", "-").replace(" ", "")
    done = out / f"{slug}.json"
    if done.exists():
        return json.loads(done.read_text())
    result = run_variant(config, [*VARIANTS[name], *overrides], out / slug)
    atomic_write_json(done, result)
    return result


def table(results: dict[str, dict[str, float]]) -> str:
    lines = [
        "| variant | " + " | ".join(COLUMNS) + " | steps | train min |",
        "|---" * (len(COLUMNS) + 3) + "|",
    ]
    for name, r in results.items():
        cells = " | ".join(f"{r[c]:.1f}" if c in r else "–" for c in COLUMNS)  # older results lack some views
        lines.append(f"| {name} | {cells} | {r['steps']} | {r['train_seconds'] / 60:.1f} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m ireid.retriever.ablation_cli", description=__doc__)
    parser.add_argument("--config", type=Path, default=Path("configs/retriever/synthetic.yaml"))
    parser.add_argument("--out", type=Path, default=Path("runs/retriever-ablation"))
    parser.add_argument("--variants", nargs="+", default=[v for v in VARIANTS if v != "config"], choices=list(VARIANTS))
    parser.add_argument("overrides", nargs="*", help="extra LightningCLI arguments for every variant")
    args = parser.parse_args(argv)
    results = {name: variant_result(args.config, name, args.overrides, args.out) for name in args.variants}
    markdown = table(results)
    atomic_write_bytes(args.out / "ablation.md", markdown.encode())
    print(markdown)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

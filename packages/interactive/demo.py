"""`ireid demo`: the main job end to end on the embedded defaults, resumable step by step.

1. build the default synthetic world (skipped when complete);
2. train the tiny retriever from scratch with `configs/retriever/synthetic.yaml` under a time budget
   (skipped when a finished run is recorded; an interrupted run resumes from its last checkpoint);
3. run the interactive evaluation (`configs/interactive/synthetic.yaml`) with the rule-based witness and
   every question strategy but the LLM one (finished batches are kept), print the table and write the report.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import time
from pathlib import Path

from ireid.core.shards import atomic_write_json
from ireid.core.synthetic import cli as synth_cli
from ireid.interactive.config import load_config
from ireid.interactive.eval_cli import evaluate
from ireid.interactive.report import markdown_report

REPO_CONFIGS = Path(__file__).resolve().parents[2] / "configs"
# chatir runs an LLM for every question; on a 2-core CPU that alone exceeds the demo's time budget.
DEMO_STRATEGIES = ("initial", "random", "oracle-lookforward", "simirv", "plugir")


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", type=Path, default=Path("runs/demo"), help="output folder")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--retriever-config", type=Path, default=REPO_CONFIGS / "retriever" / "synthetic.yaml", help="LightningCLI YAML"
    )
    parser.add_argument(
        "--eval-config", type=Path, default=REPO_CONFIGS / "interactive" / "synthetic.yaml", help="evaluation YAML"
    )
    parser.add_argument("--data", type=Path, help="use this shard folder instead of building the default world")
    parser.add_argument("--train-minutes", type=float, default=7.0, help="retriever training budget")
    parser.add_argument("--train-steps", type=int, help="retriever step budget (default: the config's)")
    parser.add_argument("--max-queries", type=int, default=200, help="queries evaluated (spread over the test split)")
    parser.add_argument(
        "--strategies",
        type=lambda s: [x.strip() for x in s.split(",") if x.strip()],
        default=list(DEMO_STRATEGIES),
        help="comma-separated; adding chatir runs SmolLM2 as questioner (about 13 min more on 2 CPU cores)",
    )


def build_world(args: argparse.Namespace, data_dir: Path) -> int:
    synth_parser = argparse.ArgumentParser()
    synth_cli.configure(synth_parser)
    sheet = args.out / "contact_sheet.png"
    synth_args = synth_parser.parse_args(
        ["--out", str(data_dir), "--seed", str(args.seed), "--contact-sheet", str(sheet), "--resume"]
    )
    return synth_cli.run(synth_args)


def _hms(minutes: float) -> str:
    seconds = round(minutes * 60)
    return f"00:{seconds // 3600:02d}:{seconds % 3600 // 60:02d}:{seconds % 60:02d}"


def train_retriever(args: argparse.Namespace, data_dir: Path) -> Path:
    """Train (or resume, or reuse) the demo's retriever; returns its best checkpoint by validation fine R@1."""
    from ireid.retriever.cli import RetrieverCLI
    from ireid.retriever.data import RetrievalDataModule
    from ireid.retriever.module import RetrieverModule

    out = args.out / "retriever"
    record = out / "done.json"
    if record.is_file():
        ckpt = Path(json.loads(record.read_text())["ckpt"])
        if ckpt.is_file():
            print(f"retriever: reusing {ckpt}")
            return ckpt
    if not args.retriever_config.is_file():
        raise FileNotFoundError(f"{args.retriever_config}: retriever config not found (run from the repository root)")
    resume = sorted(out.glob("**/checkpoints/last.ckpt"), key=lambda p: p.stat().st_mtime)
    cli = RetrieverCLI(
        RetrieverModule,
        RetrievalDataModule,
        parser_kwargs={"parser_mode": "omegaconf"},
        save_config_kwargs={"overwrite": True},
        args=[
            "--config", str(args.retriever_config),
            "--data.data_dir", str(data_dir),
            "--seed_everything", str(args.seed),
            "--trainer.logger.init_args.save_dir", str(out),
            "--trainer.max_time", _hms(args.train_minutes),
            *(["--trainer.max_steps", str(args.train_steps)] if args.train_steps else []),
        ],
        run=False,
    )  # fmt: skip
    start = time.perf_counter()
    cli.trainer.fit(cli.model, cli.datamodule, ckpt_path=str(resume[-1]) if resume else None)
    callback = cli.trainer.checkpoint_callback
    ckpt = Path(callback.best_model_path or callback.last_model_path)  # type: ignore[union-attr]
    atomic_write_json(
        record, {"ckpt": str(ckpt), "steps": cli.trainer.global_step, "train_seconds": time.perf_counter() - start}
    )
    return ckpt


def run(args: argparse.Namespace) -> int:
    data_dir = args.data or args.out / "data"
    if args.data is None:
        code = build_world(args, data_dir)
        if code != 0:
            return code
    ckpt = train_retriever(args, data_dir)
    config = dataclasses.replace(
        load_config(args.eval_config),
        data_dir=str(data_dir),
        retriever_ckpt=str(ckpt),
        out=str(args.out / "eval"),
        max_queries=args.max_queries,
        seed=args.seed,
        strategies=args.strategies,
    )
    outcome = evaluate(config)
    print("\n" + markdown_report(outcome.results, outcome.context))
    print(f"demo output: {args.out.resolve()}")
    print(f"report: {outcome.paths['markdown'].resolve()} (plot: {outcome.paths['plot'].name})")
    return 0

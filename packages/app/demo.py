"""`ireid demo`: the main job end to end on the embedded defaults, resumable step by step.

1. build the default synthetic world (skipped when complete);
2. train the tiny retriever from scratch with `configs/retriever/demo.yaml` under its time budget
   (skipped when a finished run is recorded; an interrupted run resumes from its last checkpoint);
3. train LLaVA-ReID on it (look-forward targets for a share of the training records, selector warm-up,
   questioner warm-up, joint training: `llava_reid_pipeline.py`), when `llava-reid` is among the strategies;
4. run the interactive evaluation (`configs/interactive/synthetic.yaml`) with the rule-based witness and
   every question strategy but the LLM one (finished batches are kept; `target-frequency` counts step 3's
   look-forward targets), print the table and write the report.

The wall time of each step of this run goes to `<out>/timings.json` and is printed at the end (a reused step
counts only the time to find it).
"""

from __future__ import annotations

import argparse
import dataclasses
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

from ireid.app.eval_cli import evaluate
from ireid.app.llava_reid_pipeline import LlavaReIDBudget, build_targets_once, targets_dir, train_llava_reid
from ireid.app.stages import REPO_CONFIGS, fit_step
from ireid.core.shards import atomic_write_json
from ireid.core.synthetic import cli as synth_cli
from ireid.interactive.config import load_config
from ireid.interactive.report import markdown_report
from ireid.questioner.lookforward import TARGETS
from ireid.retriever.cli import RetrieverCLI
from ireid.retriever.data import RetrievalDataModule
from ireid.retriever.module import RetrieverModule

# chatir runs an LLM for every question; on a 2-core CPU that alone exceeds the demo's time budget.
DEMO_STRATEGIES = (
    "initial", "random", "oracle-lookforward", "simirv", "plugir", "expected-gain", "target-frequency", "llava-reid"
)  # fmt: skip


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", type=Path, default=Path("runs/demo"), help="output folder")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--retriever-config",
        type=Path,
        default=REPO_CONFIGS / "retriever" / "demo.yaml",
        help="LightningCLI YAML (its step and time budget)",
    )
    parser.add_argument(
        "--eval-config", type=Path, default=REPO_CONFIGS / "interactive" / "synthetic.yaml", help="evaluation YAML"
    )
    parser.add_argument("--data", type=Path, help="use this shard folder instead of building the default world")
    parser.add_argument("--train-minutes", type=float, help="retriever time budget (default: the config's)")
    parser.add_argument("--train-steps", type=int, help="retriever step budget (default: the config's)")
    defaults = LlavaReIDBudget()
    parser.add_argument(
        "--llava-reid-records",
        type=int,
        default=defaults.train_records,
        help="training records given look-forward targets",
    )
    parser.add_argument(
        "--targets",
        choices=TARGETS,
        default=defaults.targets,
        help="the questioner's training targets: the oracle's best pair (lookforward), the expected-gain teacher "
        "(expected), one drawn ∝ 1/rank (soft) or a random one",
    )
    parser.add_argument(
        "--gallery-ids",
        type=int,
        default=defaults.gallery_ids,
        help="look forward against training galleries of this many identities (default: the budget's)",
    )
    parser.add_argument(
        "--explore",
        type=float,
        default=defaults.explore,
        help="share of look-forward rounds continued with a random pair instead of the target",
    )
    parser.add_argument(
        "--on-policy-records",
        type=int,
        default=defaults.on_policy_records,
        help="then rebuild targets along the trained questioner's own dialogues on this many records, and train on",
    )
    parser.add_argument("--selector-steps", type=int, default=defaults.selector_steps, help="selector warm-up steps")
    parser.add_argument("--questioner-steps", type=int, default=defaults.warmup_steps, help="questioner warm-up steps")
    parser.add_argument("--joint-steps", type=int, default=defaults.joint_steps, help="joint training steps")
    parser.add_argument(
        "--on-policy-steps", type=int, default=defaults.on_policy_steps, help="joint steps on the on-policy targets"
    )
    parser.add_argument(
        "--retry-beams",
        type=int,
        help="llava-reid: beams of a wider second search where none of the first is new (slower; default: none)",
    )
    parser.add_argument("--max-queries", type=int, default=200, help="queries evaluated (spread over the test split)")
    parser.add_argument(
        "--strategies",
        type=lambda s: [x.strip() for x in s.split(",") if x.strip()],
        default=list(DEMO_STRATEGIES),
        help="comma-separated; adding chatir runs SmolLM2 as questioner (about 13 min more on 2 CPU cores)",
    )


def build_world(data_dir: Path, seed: int, contact_sheet: Path, options: Sequence[str] = ()) -> int:
    """The synthetic world of `seed` (resumed or skipped when complete), with its contact sheet; `options` are
    `ireid data synth` flags (default: the default world)."""
    synth_parser = argparse.ArgumentParser()
    synth_cli.configure(synth_parser)
    synth_args = synth_parser.parse_args(
        ["--out", str(data_dir), "--seed", str(seed), "--contact-sheet", str(contact_sheet), "--resume", *options]
    )
    return synth_cli.run(synth_args)


def train_retriever(
    out: Path, data_dir: Path, seed: int, config: Path, steps: int | None = None, minutes: float | None = None
) -> Path:
    """Train (or resume, or reuse) the demo's retriever; returns its best checkpoint by validation fine R@1."""
    overrides = ["--data.data_dir", str(data_dir), "--seed_everything", str(seed)]
    if steps:
        overrides += ["--trainer.max_steps", str(steps)]
    return fit_step(
        "retriever", out, RetrieverCLI, RetrieverModule, RetrievalDataModule, config, overrides, minutes=minutes
    )


class StageClock:
    """Wall seconds per step of a run, in the order the steps ran."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}

    @contextmanager
    def stage(self, name: str) -> Iterator[None]:
        start = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[name] = self.seconds.get(name, 0.0) + time.perf_counter() - start

    def summary(self) -> str:
        steps = ", ".join(f"{name} {seconds:.0f} s" for name, seconds in self.seconds.items())
        return f"{steps}; total {sum(self.seconds.values()):.0f} s"


def run(args: argparse.Namespace) -> int:
    clock = StageClock()
    data_dir = args.data or args.out / "data"
    if args.data is None:
        with clock.stage("world"):
            code = build_world(data_dir, args.seed, args.out / "contact_sheet.png")
        if code != 0:
            return code
    with clock.stage("retriever"):
        ckpt = train_retriever(
            args.out / "retriever", data_dir, args.seed, args.retriever_config, args.train_steps, args.train_minutes
        )
    config = load_config(args.eval_config)
    budget = LlavaReIDBudget(
        train_records=args.llava_reid_records,
        targets=args.targets,
        gallery_ids=args.gallery_ids,
        explore=args.explore,
        on_policy_records=args.on_policy_records,
        selector_steps=args.selector_steps,
        warmup_steps=args.questioner_steps,
        joint_steps=args.joint_steps,
        on_policy_steps=args.on_policy_steps,
    )
    if "llava-reid" in args.strategies:
        with clock.stage("llava-reid"):
            joint = train_llava_reid(args.out / "llava-reid", data_dir, ckpt, budget, seed=args.seed)
        config.llava_reid = dataclasses.replace(config.llava_reid, questioner_ckpt=str(joint))
        if args.retry_beams is not None:
            config.llava_reid = dataclasses.replace(config.llava_reid, retry_beams=args.retry_beams)
    if "target-frequency" in args.strategies:  # counts LLaVA-ReID's training targets (built alone if need be)
        with clock.stage("targets"):
            targets = build_targets_once(ckpt, data_dir, targets_dir(args.out / "llava-reid"), budget)
        config.target_frequency = dataclasses.replace(config.target_frequency, targets=str(targets))
    config = dataclasses.replace(
        config,
        data_dir=str(data_dir),
        retriever_ckpt=str(ckpt),
        out=str(args.out / "eval"),
        max_queries=args.max_queries,
        seed=args.seed,
        strategies=args.strategies,
    )
    with clock.stage("evaluation"):
        outcome = evaluate(config)
    stages = [{"stage": name, "seconds": seconds} for name, seconds in clock.seconds.items()]  # in running order
    atomic_write_json(args.out / "timings.json", {"stages": stages, "total": sum(clock.seconds.values())})
    print("\n" + markdown_report(outcome.results, outcome.context))
    print(f"demo output: {args.out.resolve()}")
    print(f"report: {outcome.paths['markdown'].resolve()} (plot: {outcome.paths['plot'].name})")
    print(f"wall time: {clock.summary()}")
    return 0

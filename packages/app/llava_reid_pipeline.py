"""LLaVA-ReID's training pipeline on a data set with a trained retriever (Appendix C.2), each step resumable.

1. look-forward targets for a share of the training records (and the validation split), with the selector's
   warm-up files;
2. the selector's BCE warm-up towards the retriever's top-c;
3. the questioner's warm-up on the top-4 candidates of each round, seen through the retriever's image encoder (a
   frozen vision tower, as LLaVA reuses CLIP's);
4. joint training: the selector's straight-through choice weights the questioner's image tokens;
5. optionally (`on_policy_records`), targets rebuilt along the dialogues the joint questioner itself leads
   (`build_targets(policy=...)`), and more joint training on them (DAgger's on-policy states; not in the paper).
Returns the last checkpoint, which carries the selector, for the `llava-reid` strategy.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

from ireid.app.stages import REPO_CONFIGS, fit_step
from ireid.app.strategies import build_strategy
from ireid.core.gallery import encode_split
from ireid.core.loader import load_records
from ireid.core.processes import available_cores
from ireid.core.records import evenly_spaced
from ireid.core.shards import atomic_write_json
from ireid.interactive.config import EvalConfig
from ireid.questioner.cli import QuestionerCLI
from ireid.questioner.data import QuestionerData
from ireid.questioner.lookforward import build_targets, selector_tensors
from ireid.questioner.module import QuestionerModule
from ireid.retriever.inference import ModuleRetriever, ensure_vision_tower
from ireid.selector.cli import SelectorCLI
from ireid.selector.data import SelectorData, save_selector_tensors
from ireid.selector.module import SelectorWarmup

CONFIGS = REPO_CONFIGS


@dataclass
class LlavaReIDBudget:
    """How much of each step the pipeline runs (the demo's defaults fit a 2-core CPU in a few minutes)."""

    train_records: int | None = 1200  # training records given look-forward targets (None: all)
    val_records: int = 100
    max_rounds: int = 5
    selector_steps: int = 100
    warmup_steps: int = 400
    joint_steps: int = 100
    targets: str = "expected"  # the expected-gain teacher; "lookforward": the oracle (LLaVA-ReID); "random": Table 3
    gallery_ids: int | None = 200  # targets against galleries of this many identities, the test split's (None: whole)
    explore: float = 0.0  # share of look-forward rounds continued with a random pair (states off the oracle's path)
    on_policy_records: int = 0  # > 0: targets rebuilt along the joint questioner's own dialogues, then trained on
    on_policy_steps: int = 100
    warmup_minutes: float | None = None
    joint_minutes: float | None = None
    processes: int | None = None  # forked processes that build the targets (None: one per available core)


def build_targets_once(retriever_ckpt: Path, data_dir: Path, out: Path, budget: LlavaReIDBudget) -> Path:
    """Look-forward targets and selector files for the train and val splits (skipped once both files exist)."""
    files = {split: out / f"selector-{split}.pt" for split in ("train", "val")}
    if all(path.is_file() for path in files.values()):
        print(f"look-forward targets: reusing {out}")
        return out
    retriever = ModuleRetriever.from_checkpoint(retriever_ckpt)
    for split, count in (("train", budget.train_records), ("val", budget.val_records)):
        gallery = encode_split(retriever, data_dir, split)
        records = evenly_spaced(load_records(data_dir, split), count)
        summary = build_targets(
            retriever,
            gallery,
            records,
            out,
            split,
            max_rounds=budget.max_rounds,
            targets=budget.targets,
            explore=budget.explore,
            gallery_ids=budget.gallery_ids,
            processes=budget.processes or available_cores(),
        )
        last = summary["rounds"][str(max(int(t) for t in summary["rounds"]))]
        rank = last["mean_rank_after"]
        print(f"look-forward {split}: {len(records)} records, mean target rank after the last round {rank:.1f}")
        save_selector_tensors(files[split], selector_tensors(out, split))
    return out


def targets_dir(out: Path) -> Path:
    """Where `train_llava_reid(out, ...)` keeps its look-forward targets (what `target-frequency` counts)."""
    return out / "targets"


def train_llava_reid(out: Path, data_dir: Path, retriever_ckpt: Path, budget: LlavaReIDBudget, seed: int = 0) -> Path:
    """Run (or resume) every step under `out`; returns the joint questioner checkpoint."""
    targets = build_targets_once(retriever_ckpt, data_dir, targets_dir(out), budget)
    seed_args = ["--seed_everything", str(seed)]
    selector = fit_step(
        "selector warm-up",
        out / "selector",
        SelectorCLI,
        SelectorWarmup,
        SelectorData,
        CONFIGS / "selector" / "lookforward-synthetic.yaml",
        [
            *seed_args,
            "--data.init_args.train_file", str(targets / "selector-train.pt"),
            "--data.init_args.val_file", str(targets / "selector-val.pt"),
            "--trainer.max_steps", str(budget.selector_steps),
        ],
        subclass_mode_data=True,
    )  # fmt: skip
    tower = ensure_vision_tower(retriever_ckpt, out / "vision-tower.pt")
    data_args = [
        *seed_args,
        "--data.lookforward", str(targets),
        "--data.data", str(data_dir),
        "--model.tokenizer", str(data_dir),
        "--model.vision_checkpoint", str(tower),
    ]  # fmt: skip
    warmup = fit_step(
        "questioner warm-up",
        out / "warmup",
        QuestionerCLI,
        QuestionerModule,
        QuestionerData,
        CONFIGS / "questioner" / "warmup-synthetic.yaml",
        [*data_args, "--trainer.max_steps", str(budget.warmup_steps)],
        minutes=budget.warmup_minutes,
    )
    joint = _joint_step("joint training", out / "joint", data_args, warmup, selector, budget.joint_steps, budget)
    if not budget.on_policy_records:
        return joint
    on_policy = build_on_policy_targets(joint, retriever_ckpt, data_dir, out / "targets-on-policy", budget)
    data_args[data_args.index("--data.lookforward") + 1] = str(on_policy)
    return _joint_step(
        "on-policy training", out / "on-policy", data_args, joint, selector, budget.on_policy_steps, budget
    )


def _joint_step(
    name: str, out: Path, data_args: list[str], start: Path, selector: Path, steps: int, budget: LlavaReIDBudget
) -> Path:
    """Joint questioner + selector training from the questioner checkpoint `start` (a warm-up or a joint one)."""
    return fit_step(
        name,
        out,
        QuestionerCLI,
        QuestionerModule,
        QuestionerData,
        CONFIGS / "questioner" / "joint-synthetic.yaml",
        [
            *data_args,
            "--model.init_checkpoint", str(start),
            "--model.selector_checkpoint", str(selector),
            "--trainer.max_steps", str(steps),
        ],
        minutes=budget.joint_minutes,
    )  # fmt: skip


def build_on_policy_targets(
    questioner_ckpt: Path, retriever_ckpt: Path, data_dir: Path, out: Path, budget: LlavaReIDBudget
) -> Path:
    """Look-forward targets along the dialogues `questioner_ckpt` leads as the `llava-reid` strategy (its selector,
    beams and new-question rule), on `on_policy_records` training records and the validation records."""
    done = out / "done.json"
    if done.is_file():
        print(f"on-policy targets: reusing {out}")
        return out
    retriever = ModuleRetriever.from_checkpoint(retriever_ckpt)
    for split, count in (("train", budget.on_policy_records), ("val", budget.val_records)):
        config = EvalConfig(data_dir=str(data_dir), split=split)
        config.llava_reid = dataclasses.replace(config.llava_reid, questioner_ckpt=str(questioner_ckpt))
        policy = build_strategy("llava-reid", config)
        gallery = encode_split(retriever, data_dir, split)
        records = evenly_spaced(load_records(data_dir, split), count)
        build_targets(retriever, gallery, records, out, split, max_rounds=budget.max_rounds, policy=policy)
    atomic_write_json(done, {"questioner": str(questioner_ckpt)})
    return out

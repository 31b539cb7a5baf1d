"""ChatReID on a synthetic world, each step resumable: the instruction data of the three stages, the stages trained
in sequence (and the shorter chains of the paper's Table 4), then §4.1's re-ranking beside the retriever alone.

Every chain trains its own stages under `<out>/<chain>/stage<N>` (the stage configs fix a checkpoint folder, which
`fit_step` redirects there), each later stage starting from the previous stage's best checkpoint; the first stage
of a shorter chain starts from the source model, as the paper's "Stage 2 + Stage 3" and "Stage 3" rows do.
Finished evaluations are kept in `<out>/<chain>/eval.json` and read back.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from ireid.app import chatreid_cli
from ireid.app.attribute_net_pipeline import ensure_attribute_net
from ireid.app.stages import REPO_CONFIGS, finished_metrics, fit_step, kept_result, restart_runs
from ireid.chatreid import instructions_cli
from ireid.chatreid.conversations import TASKS_BY_STAGE
from ireid.chatreid.data import ConversationData
from ireid.chatreid.instruction_pool import IMAGE_MATCH_RULES
from ireid.chatreid.module import ChatReIDModule
from ireid.chatreid.train_cli import ChatReIDCLI
from ireid.core.attribute_net import PIXELS as NET_PIXELS
from ireid.core.callbacks import CHANCE_YES_NO, YES_NO_ACCURACY
from ireid.core.person_vision import VisionTowerFile
from ireid.retriever.inference import ensure_vision_tower

CONFIGS = REPO_CONFIGS / "chatreid"
CHAINS = {"1+2+3": (1, 2, 3), "2+3": (2, 3), "3": (3,)}
METRICS = (("mAP", "mAP"), ("R@1", "R1"))  # row metric name, key in a task's summary
# ChatReID's world: second outfits (cloth-changing) and infrared cameras beside the default generator.
WORLD = [
    "--ids-train",
    "300",
    "--ids-val",
    "20",
    "--ids-test",
    "50",
    "--outfits-per-id",
    "2",
    "--infrared-cameras",
    "2",
]


def one_to_one_mix(*tasks: str) -> str:
    """An engine `--mix` giving stage 2's `tasks` equal shares and every other task none."""
    return ",".join(f"{task}={int(task in tasks)}" for task in TASKS_BY_STAGE[2])


# The sets that may open stage 2, in order (`ChatReIDBudget.pair_steps`): their tasks, and whether their distractors
# are the retriever's look-alikes instead of random people.
PAIR_SETS: dict[str, tuple[str, bool]] = {
    "pairs-random": (one_to_one_mix("i2i_one_to_one"), False),
    "pairs-look-alikes": (one_to_one_mix("i2i_one_to_one"), True),
    "pairs-mixed": (one_to_one_mix("i2i_one_to_one", "t2i_one_to_one"), True),
}


def pair_run(pair_set: str) -> str:
    """The folder name of the run that trains on a pair set (`PAIR_SETS`)."""
    return f"stage2-{pair_set}"


# Stage 2's one-to-one questions, which §4.1 reads back and stage 3 may replay (`ChatReIDBudget.stage3_pair_tasks`).
REPLAYED = ("i2i_one_to_one", "t2i_one_to_one")

# A chain's runs, each in the folder of its name: the stages, and the pair sets opening stage 2.
RUNS = ("stage1", *map(pair_run, PAIR_SETS), "stage2", "stage3")


@dataclass
class ChatReIDBudget:
    """What `ireid eval learning` runs of ChatReID (the defaults are the synthetic configs' own)."""

    world: list[str] = field(default_factory=lambda: list(WORLD))  # `ireid data synth` flags
    chains: list[str] = field(default_factory=lambda: list(CHAINS))  # "1+2+3" and Table 4's "2+3", "3"
    steps: list[int] = field(default_factory=lambda: [1000, 2000, 1500])  # stage 1, 2, 3
    overrides: list[str] = field(default_factory=list)  # LightningCLI arguments for every stage
    # and for one run of a chain, after those, by its folder's name (`RUNS`): e.g. a lower learning rate where
    # stage 2 goes on from the pair sets
    run_overrides: dict[str, list[str]] = field(default_factory=dict)
    tasks: list[str] = field(default_factory=lambda: ["standard", "text-to-image"])
    max_queries: int | None = None
    tau: float = 0.0
    max_candidates: int = 20
    # the retriever's image encoder as every chain's frozen vision encoder (`ireid.chatreid.person_tower`)
    person_tower: bool = False
    # or an attribute net trained on the world's training split (`ireid attribute-net fit`, once per seed): eyes that
    # name what a text states, frozen, one image token per attribute (`ireid.chatreid.net_tower`)
    attribute_net: bool = False
    # A departure for small models: stage 2 first trains on one-to-one pairs, image pairs matched by appearance, for
    # pair_steps[0] steps image pairs against random people, then pair_steps[1] steps against the retriever's
    # look-alikes, then pair_steps[2] steps image and text-image pairs mixed, both against the look-alikes, and goes
    # on with the paper's stage-2 data (`ireid.chatreid.instruction_pool`). [0, 0, 0]: the paper's stage 2.
    pair_steps: list[int] = field(default_factory=lambda: [0, 0, 0])
    pair_samples: int = 9000  # conversations of each pair set
    # whether a pair run leaves the Yes/No prior depends on its training seed: one that ends at chance begins again
    # with another seed (from the same model), up to this many times
    pair_restarts: int = 0
    image_match: str = "person"  # stage 2's own image pairs: the paper's rule, or "appearance" (a departure)
    stage3_pairs: float = 0.0  # share of stage 3 replaying stage 2's one-to-one questions (a departure)
    stage3_pair_tasks: list[str] = field(default_factory=lambda: list(REPLAYED[:1]))  # which of REPLAYED, evenly

    def __post_init__(self) -> None:
        if self.person_tower and self.attribute_net:
            raise ValueError("config fields 'chatreid.person_tower', 'chatreid.attribute_net': choose one set of eyes")
        unknown = sorted(set(self.chains) - set(CHAINS))
        if unknown:
            raise ValueError(f"config field 'chatreid.chains': unknown {unknown}; known: {list(CHAINS)}")
        if len(self.steps) != 3:
            raise ValueError(f"config field 'chatreid.steps': one step count per stage (3), got {self.steps}")
        if self.image_match not in IMAGE_MATCH_RULES:
            raise ValueError(
                f"config field 'chatreid.image_match': one of {IMAGE_MATCH_RULES}, got {self.image_match!r}"
            )
        if not 0.0 <= self.stage3_pairs < 1.0:
            raise ValueError(f"config field 'chatreid.stage3_pairs': a share in [0, 1), got {self.stage3_pairs}")
        if not self.stage3_pair_tasks or not set(self.stage3_pair_tasks) <= set(REPLAYED):
            raise ValueError(
                f"config field 'chatreid.stage3_pair_tasks': one or more of {list(REPLAYED)}, "
                f"got {self.stage3_pair_tasks}"
            )
        if not isinstance(self.run_overrides, dict) or not all(
            isinstance(args, list) and all(isinstance(a, str) for a in args) for args in self.run_overrides.values()
        ):
            raise ValueError("config field 'chatreid.run_overrides': a mapping of run names to argument lists")
        unknown = sorted(set(self.run_overrides) - set(RUNS))
        if unknown:
            raise ValueError(f"config field 'chatreid.run_overrides': unknown runs {unknown}; known: {list(RUNS)}")
        if self.pair_restarts < 0:
            raise ValueError(f"config field 'chatreid.pair_restarts': a count >= 0, got {self.pair_restarts}")
        if len(self.pair_steps) != len(PAIR_SETS) or min(self.pair_steps) < 0:
            raise ValueError(
                f"config field 'chatreid.pair_steps': {len(PAIR_SETS)} step counts >= 0 ({', '.join(PAIR_SETS)}), "
                f"got {self.pair_steps}"
            )


def build_instructions_once(data_dir: Path, out: Path, seed: int, budget: ChatReIDBudget) -> Path:
    """The three stages' conversations (`ireid chatreid build-instructions`) with the budget's departures, in a
    folder of `out` named after them, resumed; a stage whose counts file exists is finished."""
    folder = out / "instructions"
    if budget.image_match != "person":
        folder = folder.with_name(f"{folder.name}-{budget.image_match}")
    replayed = sorted(set(budget.stage3_pair_tasks), key=REPLAYED.index)
    if budget.stage3_pairs > 0:
        folder = folder.with_name(f"{folder.name}-stage3-pairs-{budget.stage3_pairs:g}")
        if replayed != list(REPLAYED[:1]):
            folder = folder.with_name(f"{folder.name}-{'+'.join(task.split('_')[0] for task in replayed)}")
    for stage in (1, 2, 3):
        args = ["--data", str(data_dir), "--seed", str(seed), "--image-match", budget.image_match]
        if stage == 3 and budget.stage3_pairs > 0:  # the paper's six tasks weigh 1 together
            weight = budget.stage3_pairs / (1 - budget.stage3_pairs) / len(replayed)
            args += ["--mix", ",".join(f"{task}={weight:.6g}" for task in replayed)]
        engine_once(folder, stage, args)
    return folder


def engine_once(out: Path, stage: int, args: Sequence[str]) -> None:
    """`ireid chatreid build-instructions` of one stage into `out`, resumed; finished when its counts file exists."""
    if (out / f"stage{stage}.counts.json").is_file():
        return
    parser = argparse.ArgumentParser()
    instructions_cli.configure(parser)
    argv = ["--stage", str(stage), "--out", str(out), *args, "--resume", "--quiet"]
    if instructions_cli.run(parser.parse_args(argv)) != 0:
        raise RuntimeError(f"{out}: building the stage-{stage} instructions failed")


LOOK_ALIKES = 20  # per image: the size of the evaluation's filter (`max_candidates`)


def build_pair_instructions(
    data_dir: Path, out: Path, retriever_ckpt: Path, budget: ChatReIDBudget, seed: int
) -> list[tuple[Path, int]]:
    """The pair sets that open stage 2 (`budget.pair_steps`, `PAIR_SETS`), each built once, image pairs matched by
    appearance; look-alikes are mined once, by the retriever on the train split."""
    sets = []
    for (name, (mix, hard)), steps in zip(PAIR_SETS.items(), budget.pair_steps, strict=True):
        if steps == 0:
            continue
        folder = out / name
        args = ["--data", str(data_dir), "--seed", str(seed), "--samples", str(budget.pair_samples)]
        args += ["--mix", mix, "--image-match", "appearance"]
        if hard:
            alikes = out / "look-alikes.json"
            if not alikes.is_file():
                chatreid_cli.mine_look_alikes(retriever_ckpt, data_dir, "train", LOOK_ALIKES, alikes)
            args += ["--look-alikes", str(alikes), "--look-alike-share", "1"]
        engine_once(folder, 2, args)
        sets.append((folder, steps))
    return sets


def tower_overrides(out: Path, retriever_ckpt: Path) -> list[str]:
    """Every stage's arguments for seeing through the retriever's eyes: its image encoder as a vision tower file
    (written once, atomically) and images kept at the tower's crop size, which stage 2 would otherwise shrink."""
    tower = ensure_vision_tower(retriever_ckpt, out / "person-tower.pt")
    size = list(VisionTowerFile.load(tower).image_hw)
    return ["--model.vision_checkpoint", str(tower), "--data.max_image_size", json.dumps(size)]


def net_overrides(out: Path, data_dir: Path, seed: int) -> list[str]:
    """Every stage's arguments for seeing through an attribute net trained on the world's training split (once,
    resumably), with images kept at the crop size the net reads."""
    net = ensure_attribute_net(data_dir, out / "attribute-net.pt", seed)
    return ["--model.vision_checkpoint", str(net), "--data.max_image_size", json.dumps(list(NET_PIXELS.size_hw))]


def eyes_overrides(out: Path, data_dir: Path, retriever_ckpt: Path, budget: ChatReIDBudget, seed: int) -> list[str]:
    """The budget's frozen eyes for every stage: the retriever's tower, an attribute net, or the model's own."""
    if budget.person_tower:
        return tower_overrides(out, retriever_ckpt)
    if budget.attribute_net:
        return net_overrides(out, data_dir, seed)
    return []


def train_chain(
    chain: str,
    out: Path,
    data_dir: Path,
    instructions: Path,
    budget: ChatReIDBudget,
    seed: int,
    extra: Sequence[str] = (),
    pairs: Sequence[tuple[Path, int]] = (),
) -> Path:
    """The chain's stages in order under `out` (`extra`: arguments for every stage; `pairs`: conversation sets
    and steps that stage 2 trains on first, in order; a pair run that ends at chance begins again with another
    training seed, `budget.pair_restarts` times at most); returns the last stage's best checkpoint."""
    runs = [(f"stage{stage}", stage, instructions, budget.steps[stage - 1], 0) for stage in CHAINS[chain]]
    if 2 in CHAINS[chain]:
        at = CHAINS[chain].index(2)
        runs[at:at] = [(pair_run(f.name), 2, f, steps, budget.pair_restarts) for f, steps in pairs]
    previous: Path | None = None
    for name, stage, conversations, steps, restarts in runs:
        for restart, (folder, run_seed) in enumerate(restart_runs(out / name, seed, restarts)):
            overrides = [
                "--data.conversations_dir", str(conversations),
                "--data.data_dir", str(data_dir),
                "--seed_everything", str(run_seed),
                "--trainer.max_steps", str(steps),
                "--model.init_from", str(previous) if previous is not None else "null",
                *extra,
                *budget.overrides,
                *budget.run_overrides.get(name, []),
            ]  # fmt: skip
            ckpt = fit_step(
                f"chatreid {chain} {folder.name}",
                folder,
                ChatReIDCLI,
                ChatReIDModule,
                ConversationData,
                CONFIGS / f"stage{stage}-synthetic.yaml",
                overrides,
                checkpoints=folder / "checkpoints",
            )
            accuracy = finished_metrics(folder).get(YES_NO_ACCURACY)
            if restart == restarts or accuracy is None or accuracy > CHANCE_YES_NO:
                break
            print(f"chatreid {chain} {folder.name}: Yes/No accuracy {accuracy:.3f} with training seed {run_seed}, "
                  "still at chance: it begins again with another seed")  # fmt: skip
        previous = ckpt
    assert previous is not None
    return previous


def evaluate_chain(
    model_ckpt: Path, retriever_ckpt: Path, data_dir: Path, out: Path, budget: ChatReIDBudget
) -> dict[str, Any]:
    """§4.1 of `model_ckpt` on the test split (read back from `out` when it was done with the same settings)."""
    settings = {
        "model_ckpt": str(model_ckpt),
        "retriever_ckpt": str(retriever_ckpt),
        "data": str(data_dir),
        **{k: v for k, v in asdict(budget).items() if k in ("tasks", "max_queries", "tau", "max_candidates")},
    }

    def evaluate() -> dict[str, Any]:
        results = chatreid_cli.evaluate_checkpoint(
            model_ckpt,
            retriever_ckpt,
            data_dir,
            budget.tasks,
            max_queries=budget.max_queries,
            tau=budget.tau,
            max_candidates=budget.max_candidates,
        )
        return {task: result.to_dict() for task, result in results.items()}

    return kept_result(out, settings, "tasks", evaluate)


def chatreid_rows(
    out: Path, data_dir: Path, retriever_ckpt: Path, budget: ChatReIDBudget, seed: int
) -> dict[str, dict[str, float]]:
    """Per chain `chatreid:<chain>` and the retriever alone: mAP and Rank-1 of each task (percent)."""
    instructions = build_instructions_once(data_dir, out, seed, budget)
    extra = eyes_overrides(out, data_dir, retriever_ckpt, budget, seed)
    pairs = build_pair_instructions(data_dir, out, retriever_ckpt, budget, seed)
    rows: dict[str, dict[str, float]] = {}
    for chain in budget.chains:
        ckpt = train_chain(chain, out / chain, data_dir, instructions, budget, seed, extra, pairs)
        tasks = evaluate_chain(ckpt, retriever_ckpt, data_dir, out / chain / "eval.json", budget)
        rows[f"chatreid:{chain}"] = {f"{t} {m}": r["model"][k] for t, r in tasks.items() for m, k in METRICS}
        rows["retriever alone"] = {f"{t} {m}": r["baseline"][k] for t, r in tasks.items() for m, k in METRICS}
    return rows

"""Does learning show? Each learned part against its non-learned twin, trained and tested on several world seeds.

For every seed a fresh synthetic world is built, and each part named in `parts` is trained on it and compared
with its twins on that world's unseen test identities:

| part | learned | twins | metric |
|---|---|---|---|
| `retriever` | IRRA's sdm+id+mlm; sdm+id with RDA | sdm alone; sdm+id without RDA | test fine R@1, mAP |
| `questioner` | llava-reid | expected-gain, target-frequency, plugir (ground truth), random | R@1 (last round), BRI |
| `selection` (Table 3) | the selector; look-forward targets | top-k, k-means, uniform; random targets | same |
| `eyes` | expected-gain reading candidates with an attribute net | expected-gain, the retriever's eyes | same |
| `chatreid` (Table 4) | stages 1+2+3 (2+3, 3 alone shown) | the retriever alone | standard, text-to-image mAP, R@1 |
| `icl` (Table 6) | THI with a tiny MLLM tuned on Eq. 3's data (perfect eyes shown) | the retriever | caption R@1, mAP |

ChatReID has its own world (second outfits, infrared cameras) and retriever under `chatreid/` of the seed's folder.
Every step resumes: a seed's folder follows the demo's layout (`data/`, `retriever/`, `llava-reid/`, `eval/`),
finished training steps are reused and finished strategies are read back. The result is one JSON with every
number per seed and a Markdown table of mean ± sd over the seeds, with each learned part's margin over its best
twin (its mean ± sd over the seeds, the per-seed difference).
"""

from __future__ import annotations

import dataclasses
import json
import statistics
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ireid.app import demo
from ireid.app.attribute_net_pipeline import ensure_attribute_net
from ireid.app.chatreid_pipeline import ChatReIDBudget, chatreid_rows
from ireid.app.eval_cli import evaluate
from ireid.app.llava_reid_pipeline import LlavaReIDBudget, targets_dir, train_llava_reid
from ireid.app.stages import REPO_CONFIGS, kept_result
from ireid.app.thi_pipeline import RETRIEVER_ALONE, THI_ANNOTATED, THI_LEARNED, THI_NET, ICLBudget, icl_rows, thi_rows
from ireid.app.vision_models import ANNOTATED, ATTRIBUTE_NET_PREFIX
from ireid.core.attribute_net import AttributeNet, accuracy, accuracy_summary, annotated_images
from ireid.core.shards import atomic_write_bytes, atomic_write_json
from ireid.interactive.config import load_config
from ireid.retriever.ablation_cli import variant_result

PARTS = ("retriever", "questioner", "selection", "eyes", "chatreid", "icl")
DEFAULT_PARTS = ("retriever", "questioner", "selection", "eyes")


@dataclass
class RetrieverRows:
    """The retriever's rows: loss and RDA variants, each trained with `config` (+ `overrides`) on every seed."""

    config: str = str(REPO_CONFIGS / "retriever" / "demo.yaml")
    overrides: list[str] = field(default_factory=list)  # LightningCLI arguments for every variant


@dataclass
class EyesBudget:
    """The `eyes` part's attribute net (`ireid.core.attribute_net`): its training batches and time cap."""

    steps: int = 1200  # about 200 s on 2 CPU cores
    minutes: float | None = None


@dataclass
class LearningConfig:
    """`ireid eval learning`'s settings (configs/learning/*.yaml)."""

    seeds: list[int] = field(default_factory=lambda: [1, 2, 3])
    out: str = "runs/learning"
    parts: list[str] = field(default_factory=lambda: list(DEFAULT_PARTS))  # chatreid (about 1 h a seed) opts in
    world: list[str] = field(default_factory=list)  # `ireid data synth` flags (default: the default world)
    retriever_config: str = str(REPO_CONFIGS / "retriever" / "demo.yaml")  # the retriever the dialogue parts use
    retriever_steps: int | None = None  # its step budget (default: the config's)
    retriever_minutes: float | None = None  # its time cap (default: the config's)
    eval_config: str = str(REPO_CONFIGS / "interactive" / "synthetic.yaml")
    max_queries: int = 200  # test queries of the dialogue parts, spread over the split
    retry_beams: int | None = None  # the questioner's wider second search where no beam is new (default: eval config's)
    retriever: RetrieverRows = field(default_factory=RetrieverRows)
    llava_reid: LlavaReIDBudget = field(default_factory=LlavaReIDBudget)
    chatreid: ChatReIDBudget = field(default_factory=ChatReIDBudget)
    icl: ICLBudget = field(default_factory=ICLBudget)
    eyes: EyesBudget = field(default_factory=EyesBudget)

    def __post_init__(self) -> None:
        if not self.seeds:
            raise ValueError("config field 'seeds': name at least one world seed")
        unknown = sorted(set(self.parts) - set(PARTS))
        if unknown:
            raise ValueError(f"config field 'parts': unknown {unknown}; known: {list(PARTS)}")


@dataclass(frozen=True)
class Comparison:
    """One learned part against its twins: where its numbers sit in a seed's results, and which is better."""

    title: str
    learned: str
    twins: tuple[str, ...]
    metrics: tuple[str, ...]  # the first decides the margin
    references: tuple[str, ...] = ()  # shown, not compared (the oracle: it reads the target)
    lower_is_better: tuple[str, ...] = ("BRI",)


RETRIEVER_LOSSES = Comparison("Retriever losses (IRRA)", "sdm+id+mlm", ("sdm",), ("fine R@1", "fine mAP"))
RETRIEVER_RDA = Comparison("RDA (ICL)", "sdm+id, RDA", ("sdm+id",), ("fine R@1", "fine mAP"))
QUESTIONER = Comparison(
    "Questioner (LLaVA-ReID)",
    "llava-reid",
    ("expected-gain", "target-frequency", "plugir", "random"),
    ("R@1", "BRI"),
    references=("oracle-lookforward",),
)
CANDIDATES = Comparison(
    "Candidates (LLaVA-ReID Table 3)",
    "llava-reid",
    ("llava-reid:top-k", "llava-reid:k-means", "llava-reid:uniform"),
    ("R@1", "BRI"),
)
TARGETS = Comparison(
    "Question targets (LLaVA-ReID Table 3)", "llava-reid", ("llava-reid:random-targets",), ("R@1", "BRI")
)
CHATREID = Comparison(
    "ChatReID re-ranking (Table 4)",
    "chatreid:1+2+3",
    ("retriever alone",),
    ("standard mAP", "text-to-image mAP", "standard R@1", "text-to-image R@1"),
    references=("chatreid:2+3", "chatreid:3"),
)
ICL_THI = Comparison(
    "THI re-ranking (ICL Table 6)",
    THI_LEARNED,
    (RETRIEVER_ALONE,),
    ("caption R@1", "caption mAP", "anchor accuracy", "interacted"),
    references=(THI_ANNOTATED,),
)
EYES = Comparison(
    "Eyes that name attributes (expected-gain)",
    "expected-gain:reader",
    ("expected-gain",),
    ("R@1", "BRI", "attribute accuracy"),
    references=("expected-gain:annotated",),
)
EYES_THI = Comparison(
    "Eyes that name attributes (THI, ICL)",
    THI_NET,
    (RETRIEVER_ALONE,),
    ("caption R@1", "caption mAP", "anchor accuracy", "interacted"),
    references=(THI_ANNOTATED,),
)
COMPARISONS = (RETRIEVER_LOSSES, RETRIEVER_RDA, QUESTIONER, CANDIDATES, TARGETS, EYES, EYES_THI, CHATREID, ICL_THI)
# rows that read gallery annotations or the target
GROUND_TRUTH = {"plugir", "oracle-lookforward", "expected-gain:annotated", THI_ANNOTATED}

SeedResults = dict[str, dict[str, float]]  # row name -> metric -> value


def _retriever_rows(config: LearningConfig, seed: int, seed_dir: Path, data_dir: Path) -> SeedResults:
    """The loss and RDA variants, each trained once per seed (a finished variant's numbers are read back)."""
    names = dict.fromkeys(n for c in (RETRIEVER_LOSSES, RETRIEVER_RDA) for n in (c.learned, *c.twins))
    overrides = ["--data.data_dir", str(data_dir), "--seed_everything", str(seed), *config.retriever.overrides]
    rows: SeedResults = {}
    for name in names:
        metrics = variant_result(Path(config.retriever.config), name, overrides, seed_dir / "retriever-rows")
        rows[name] = {"fine R@1": metrics["fine/R1"], "fine mAP": metrics["fine/mAP"]}
    return rows


def _dialogue_rows(config: LearningConfig, seed: int, seed_dir: Path, data_dir: Path, retriever: Path) -> SeedResults:
    """The questioner and Table 3 rows: LLaVA-ReID trained (and, for Table 3, on random targets), then every
    strategy the comparisons name, through the interactive harness."""
    eval_config = load_config(config.eval_config)
    llava_dir = seed_dir / "llava-reid"
    joint = train_llava_reid(llava_dir, data_dir, retriever, config.llava_reid, seed=seed)
    llava = dataclasses.replace(eval_config.llava_reid, questioner_ckpt=str(joint))
    if config.retry_beams is not None:
        llava = dataclasses.replace(llava, retry_beams=config.retry_beams)
    names: list[str] = []
    if "questioner" in config.parts:
        names += [QUESTIONER.learned, *QUESTIONER.twins, *QUESTIONER.references]
    if "selection" in config.parts:
        budget = dataclasses.replace(config.llava_reid, targets="random")
        random_joint = train_llava_reid(seed_dir / "llava-reid-random-targets", data_dir, retriever, budget, seed=seed)
        llava = dataclasses.replace(llava, random_targets_ckpt=str(random_joint))
        names += [CANDIDATES.learned, *CANDIDATES.twins, *TARGETS.twins]
    frequency = dataclasses.replace(eval_config.target_frequency, targets=str(targets_dir(llava_dir)))
    changes = {"llava_reid": llava, "target_frequency": frequency}
    return _dialogue_results(config, seed, seed_dir, data_dir, retriever, "learning", names, changes)


def _dialogue_results(
    config: LearningConfig, seed: int, seed_dir: Path, data_dir: Path, retriever: Path, name: str,
    strategies: Sequence[str], changes: dict[str, Any],
) -> SeedResults:  # fmt: skip
    """R@1 after the last round and BRI of `strategies` on the seed's test queries, through the interactive harness
    (`eval_config` with the seed's data and retriever and `changes`; finished strategies are read back from
    `eval/<name>`)."""
    eval_config = dataclasses.replace(
        load_config(config.eval_config),
        data_dir=str(data_dir),
        retriever_ckpt=str(retriever),
        out=str(seed_dir / "eval"),
        max_queries=config.max_queries,
        seed=seed,
        strategies=list(dict.fromkeys(strategies)),
        **changes,
    )
    outcome = evaluate(eval_config, seed_dir / "eval" / name)
    return {r.name: {"R@1": r.rounds[-1]["R1"], "BRI": r.bri} for r in outcome.results}


def _attribute_net(config: LearningConfig, seed: int, seed_dir: Path, data_dir: Path) -> Path:
    """The seed's attribute net (`ireid.core.attribute_net`), trained on its world's training split once."""
    return ensure_attribute_net(data_dir, seed_dir / "attribute-net.pt", seed, config.eyes.steps, config.eyes.minutes)


def _eyes_rows(config: LearningConfig, seed: int, seed_dir: Path, data_dir: Path, retriever: Path) -> SeedResults:
    """An attribute net trained on the world's training split (once per seed) as the eyes of the expected-gain rule,
    against the same rule with the retriever's eyes and with perfect ones, and as THI's eyes over the test captions
    (`icl.rerank_config`), against the retriever alone and THI with perfect eyes."""
    net_path = _attribute_net(config, seed, seed_dir, data_dir)
    scores = accuracy_summary(accuracy(AttributeNet.load(net_path), *annotated_images(data_dir, "test")))
    expected_gain = dataclasses.replace(load_config(config.eval_config).expected_gain, reader=str(net_path))
    names = [EYES.learned, *EYES.twins, *EYES.references]
    changes = {"expected_gain": expected_gain}
    rows = _dialogue_results(config, seed, seed_dir, data_dir, retriever, "eyes", names, changes)
    rows[EYES.learned]["attribute accuracy"] = 100 * scores["mean_accuracy"]
    perceptions = [(THI_NET, f"{ATTRIBUTE_NET_PREFIX}{net_path}"), (THI_ANNOTATED, ANNOTATED)]
    rows.update(thi_rows(Path(config.icl.rerank_config), data_dir, retriever, perceptions))
    return rows


def run_seed(config: LearningConfig, seed: int) -> SeedResults:
    """Every configured part on the world of `seed` (built, trained and evaluated under `out/seed-<seed>`)."""
    seed_dir = Path(config.out) / f"seed-{seed}"
    data_dir = seed_dir / "data"
    if set(config.parts) - {"chatreid"}:  # ChatReID builds its own world
        code = demo.build_world(data_dir, seed, seed_dir / "contact_sheet.png", config.world)
        if code != 0:
            raise RuntimeError(f"{data_dir}: building the world of seed {seed} failed")
    rows: SeedResults = {}
    if "retriever" in config.parts:
        rows.update(_retriever_rows(config, seed, seed_dir, data_dir))
    if {"questioner", "selection"} & set(config.parts):
        retriever = _retriever(config, seed_dir / "retriever", data_dir, seed)
        rows.update(_dialogue_rows(config, seed, seed_dir, data_dir, retriever))
    if "eyes" in config.parts:
        retriever = _retriever(config, seed_dir / "retriever", data_dir, seed)
        rows.update(_eyes_rows(config, seed, seed_dir, data_dir, retriever))
    if "icl" in config.parts:
        retriever = _retriever(config, seed_dir / "retriever", data_dir, seed)
        net = _attribute_net(config, seed, seed_dir, data_dir) if config.icl.eyes == "attribute-net" else None
        rows.update(icl_rows(seed_dir / "icl", data_dir, retriever, config.icl, seed, net))
    if "chatreid" in config.parts:
        rows.update(_chatreid_rows(config, seed, seed_dir / "chatreid"))
    return rows


def _retriever(config: LearningConfig, out: Path, data_dir: Path, seed: int) -> Path:
    """The retriever the dialogue and ChatReID parts use (`retriever_config` on its budget), trained or reused."""
    return demo.train_retriever(
        out, data_dir, seed, Path(config.retriever_config), config.retriever_steps, config.retriever_minutes
    )


def _chatreid_rows(config: LearningConfig, seed: int, out: Path) -> SeedResults:
    """ChatReID's chains and the retriever alone on ChatReID's world of `seed`, with a retriever trained there."""
    data_dir = out / "data"
    if demo.build_world(data_dir, seed, out / "contact_sheet.png", config.chatreid.world) != 0:
        raise RuntimeError(f"{data_dir}: building ChatReID's world of seed {seed} failed")
    retriever = _retriever(config, out / "retriever", data_dir, seed)
    return chatreid_rows(out, data_dir, retriever, config.chatreid, seed)


def mean_sd(values: Sequence[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (0 for a single value)."""
    return statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else 0.0


def margins(comparison: Comparison, per_seed: dict[int, SeedResults]) -> list[float]:
    """Per seed: the learned row's first metric minus the best twin's (positive: the learned part is better)."""
    metric = comparison.metrics[0]
    sign = -1.0 if metric in comparison.lower_is_better else 1.0
    out = []
    for rows in per_seed.values():
        if comparison.learned not in rows or not any(t in rows for t in comparison.twins):
            continue
        best = max(sign * rows[t][metric] for t in comparison.twins if t in rows)
        out.append(sign * rows[comparison.learned][metric] - best)
    return out


def _label(name: str) -> str:
    return f"{name} (uses ground truth)" if name in GROUND_TRUTH else name


def markdown_table(per_seed: dict[int, SeedResults]) -> str:
    """One table per comparison with rows present in the results: mean ± sd over the seeds, then the margin."""
    seeds = sorted(per_seed)
    lines = [f"Mean ± sd over world seeds {', '.join(map(str, seeds))}.", ""]
    for comparison in COMPARISONS:
        names = [comparison.learned, *comparison.twins, *comparison.references]
        present = [n for n in names if any(n in per_seed[s] for s in seeds)]
        if comparison.learned not in present or not set(comparison.twins) & set(present):
            continue
        metrics = [m for m in comparison.metrics if any(m in per_seed[s].get(n, {}) for s in seeds for n in present)]
        arrows = [f"{m} ↓" if m in comparison.lower_is_better else m for m in metrics]
        header = ["| | " + " | ".join(arrows) + " |", "|---" + "|---:" * len(arrows) + "|"]
        lines += [f"### {comparison.title}", "", *header]
        for name in present:
            cells = []
            for metric in metrics:
                values = [per_seed[s][name][metric] for s in seeds if metric in per_seed[s].get(name, {})]
                if not values:  # a metric only some rows have (anchor accuracy: not the retriever's)
                    cells.append("—")
                    continue
                mean, sd = mean_sd(values)
                digits = 2 if metric in comparison.lower_is_better else 1  # BRI is a rank ratio, the rest percent
                cells.append(f"{mean:.{digits}f} ± {sd:.{digits}f}")
            label = f"**{_label(name)}** (learned)" if name == comparison.learned else _label(name)
            lines.append(f"| {label} | " + " | ".join(cells) + " |")
        diffs = margins(comparison, per_seed)
        if diffs:
            mean, sd = mean_sd(diffs)
            lines.append(f"\nLearned minus best twin, {comparison.metrics[0]}: {mean:+.1f} ± {sd:.1f} (per seed: "
                         + ", ".join(f"{d:+.1f}" for d in diffs) + ")")  # fmt: skip
        lines.append("")
    return "\n".join(lines)


def _settings(config: LearningConfig) -> dict[str, Any]:
    """What decides a seed's rows: every setting but the seed list and the output folder."""
    return {k: v for k, v in json.loads(json.dumps(dataclasses.asdict(config))).items() if k not in ("seeds", "out")}


def seed_results(config: LearningConfig, seed: int) -> SeedResults:
    """A seed's rows, kept in `seed-<seed>/rows.json` as soon as they are known, so that a study cut after some seeds
    keeps them; they are read back while the settings that made them are unchanged (else `run_seed` runs again, whose
    finished steps are reused)."""
    path = Path(config.out) / f"seed-{seed}" / "rows.json"
    return kept_result(path, _settings(config), "rows", lambda: run_seed(config, seed))


def run_learning(config: LearningConfig, progress: Callable[[str], None] = print) -> dict[str, Any]:
    """Every seed in turn (each resumable, its rows kept as it ends), then `learning.json` and `learning.md` under
    `out`."""
    per_seed: dict[int, SeedResults] = {}
    for seed in config.seeds:
        progress(f"world seed {seed}: {', '.join(config.parts)}")
        per_seed[seed] = seed_results(config, seed)
    out = Path(config.out)
    summary = {
        "config": dataclasses.asdict(config),
        "per_seed": {str(s): rows for s, rows in per_seed.items()},
        "margins": {title: diffs for title, diffs in ((c.title, margins(c, per_seed)) for c in COMPARISONS) if diffs},
    }
    atomic_write_json(out / "learning.json", summary)
    table = markdown_table(per_seed)
    atomic_write_bytes(out / "learning.md", ("# Learned parts against their twins\n\n" + table).encode())
    summary["markdown"] = table
    return summary

"""`ireid eval learning`: every learned part and its twins on a tiny world, the table, and resumption."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest
import torch
import yaml

from ireid.app import learning, thi_pipeline
from ireid.app.cli import main
from ireid.app.learning import CANDIDATES, ICL_THI, QUESTIONER, RETRIEVER_LOSSES, margins, markdown_table
from ireid.app.thi_pipeline import RETRIEVER_ALONE, THI_ANNOTATED, THI_LEARNED, THI_NET
from ireid.retriever import ablation_cli

TINY_WORLD = ["--ids-train", "12", "--ids-val", "4", "--ids-test", "6", "--images-per-id", "2", "--quiet"]
FAST_RETRIEVER = [
    *("--data.num_workers", "0", "--data.batch_size", "8", "--trainer.max_steps", "3", "--trainer.max_time", "null"),
    *("--trainer.check_val_every_n_epoch", "1", "--trainer.enable_progress_bar", "false", "--model.text_length", "96"),
]


@pytest.mark.slow
def test_every_part_runs_on_a_seed_writes_the_table_and_resumes(tmp_path: Path, monkeypatch, capsys) -> None:
    config = {
        "seeds": [5],
        "out": str(tmp_path / "learning"),
        "world": TINY_WORLD,
        "max_queries": 4,
        "retry_beams": 4,
        "retriever_minutes": 1,
        "retriever": {"overrides": FAST_RETRIEVER},
        "llava_reid": {"train_records": 8, "val_records": 4, "selector_steps": 2, "warmup_steps": 3, "joint_steps": 2},
        "eyes": {"steps": 3},
    }
    (tmp_path / "learning.yaml").write_text(yaml.safe_dump(config))
    args = ["eval", "learning", "--config", str(tmp_path / "learning.yaml")]
    assert main(args) == 0
    printed = capsys.readouterr().out
    summary = json.loads((tmp_path / "learning" / "learning.json").read_text())
    rows = summary["per_seed"]["5"]
    expected = {"sdm", "sdm+id+mlm", "sdm+id", "sdm+id, RDA", "llava-reid", "expected-gain", "plugir", "random"}
    expected |= {"target-frequency"}
    expected |= {"oracle-lookforward", "llava-reid:top-k", "llava-reid:k-means", "llava-reid:uniform"}
    eyes = {"expected-gain:reader", "expected-gain:annotated", RETRIEVER_ALONE, THI_NET, THI_ANNOTATED}
    assert set(rows) == expected | {"llava-reid:random-targets"} | eyes
    assert 0 <= rows["expected-gain:reader"]["attribute accuracy"] <= 100
    assert rows[THI_ANNOTATED]["anchor accuracy"] == 100.0 and 0 <= rows[THI_NET]["anchor accuracy"] <= 100
    assert all(0 <= rows[name]["fine R@1"] <= 100 for name in ("sdm", "sdm+id, RDA"))
    assert all(rows[name]["BRI"] > 0 for name in expected - {"sdm", "sdm+id+mlm", "sdm+id", "sdm+id, RDA"})
    titles = (
        "Retriever losses (IRRA)",
        "RDA (ICL)",
        "Questioner (LLaVA-ReID)",
        "Question targets",
        "Eyes that name attributes (expected-gain)",
        "Eyes that name attributes (THI, ICL)",
    )
    for title in titles:
        assert title in printed
    assert "| plugir (uses ground truth) |" in printed and "**llava-reid** (learned)" in printed
    assert (tmp_path / "learning" / "learning.md").read_text().startswith("# Learned parts against their twins")
    evaluated = json.loads((tmp_path / "learning" / "seed-5" / "eval" / "learning" / "config.json").read_text())
    assert evaluated["llava_reid"]["retry_beams"] == 4

    # A second run trains nothing and evaluates nothing: every number is read back.
    def never(*_args, **_kwargs):
        raise AssertionError("a finished step ran again")

    monkeypatch.setattr(ablation_cli, "run_variant", never)
    monkeypatch.setattr("ireid.app.stages.IreidCLI.__init__", never)
    (tmp_path / "learning" / "seed-5" / "rows.json").unlink()  # not the kept rows: each step's own results
    assert main(args) == 0
    assert json.loads((tmp_path / "learning" / "learning.json").read_text())["per_seed"] == summary["per_seed"]


def test_the_table_gives_mean_sd_and_the_margin_over_the_best_twin() -> None:
    per_seed = {
        1: {"llava-reid": {"R@1": 30.0, "BRI": 2.0}, "expected-gain": {"R@1": 20.0, "BRI": 2.5},
            "random": {"R@1": 25.0, "BRI": 3.0}, "plugir": {"R@1": 10.0, "BRI": 2.2}},
        2: {"llava-reid": {"R@1": 40.0, "BRI": 1.0}, "expected-gain": {"R@1": 34.0, "BRI": 1.5},
            "random": {"R@1": 10.0, "BRI": 3.0}, "plugir": {"R@1": 12.0, "BRI": 1.2}},
    }  # fmt: skip
    assert margins(QUESTIONER, per_seed) == [5.0, 6.0]  # against random on seed 1, expected-gain on seed 2
    assert margins(CANDIDATES, per_seed) == [] and margins(RETRIEVER_LOSSES, per_seed) == []
    table = markdown_table(per_seed)
    assert "| **llava-reid** (learned) | 35.0 ± 7.1 | 1.50 ± 0.71 |" in table
    assert "| plugir (uses ground truth) | 11.0 ± 1.4 | 1.70 ± 0.71 |" in table
    assert "R@1: +5.5 ± 0.7 (per seed: +5.0, +6.0)" in table
    assert "Candidates" not in table  # no row of it was run


def test_a_metric_only_some_rows_have_is_a_dash_for_the_others() -> None:
    per_seed = {
        seed: {RETRIEVER_ALONE: {"caption R@1": 50.0 + seed, "caption mAP": 40.0},
               THI_LEARNED: {"caption R@1": 50.0 + seed, "caption mAP": 40.0, "anchor accuracy": 50.0,
                             "interacted": 0.0}}
        for seed in (1, 2)
    }  # fmt: skip
    table = markdown_table(per_seed)
    assert f"| {RETRIEVER_ALONE} | 51.5 ± 0.7 | 40.0 ± 0.0 | — | — |" in table
    assert margins(ICL_THI, per_seed) == [0.0, 0.0]


def test_unknown_parts_and_no_seeds_are_clear_errors(tmp_path: Path, capsys) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text("parts: [retriever, chat]\n")
    assert main(["eval", "learning", "--config", str(path)]) == 2
    assert "bad.yaml: config field 'parts': unknown ['chat']" in capsys.readouterr().err
    path.write_text("seeds: []\n")
    assert main(["eval", "learning", "--config", str(path)]) == 2
    assert "config field 'seeds'" in capsys.readouterr().err
    path.write_text("chatreid: {run_overrides: {stage4: ['--model.lr', '1e-4']}}\n")
    assert main(["eval", "learning", "--config", str(path)]) == 2
    assert "config field 'chatreid.run_overrides': unknown runs ['stage4']" in capsys.readouterr().err


@pytest.mark.slow
def test_chatreid_chains_beside_the_retriever_alone_and_resume(tmp_path: Path, monkeypatch, capsys) -> None:
    """Every Table 4 chain trains in its own folders (the stage configs fix one), starts where the chain says (stage 2
    opening with the pair sets when asked), is scored beside the retriever alone, and a rerun reads every number
    back."""
    chatreid_world = ["--ids-train", "8", "--ids-val", "2", "--ids-test", "4", "--outfits-per-id", "2"]
    short = ["--trainer.val_check_interval", "2", "--trainer.limit_val_batches", "1", "--data.val_fraction", "0.25"]
    short += ["--trainer.enable_progress_bar", "false", "--trainer.enable_model_summary", "false"]
    config = {
        "seeds": [3],
        "out": str(tmp_path / "learning"),
        "parts": ["chatreid"],
        "retriever_config": str(Path(__file__).resolve().parents[2] / "configs" / "retriever" / "demo.yaml"),
        "retriever_steps": 3,
        "chatreid": {
            "world": [*chatreid_world, "--infrared-cameras", "1", "--quiet"],
            "steps": [2, 2, 2],
            "overrides": short,
            "max_queries": 3,
            "pair_steps": [2, 2, 2],
            "pair_samples": 24,
            "image_match": "appearance",
            "stage3_pairs": 0.25,
            "run_overrides": {"stage2": ["--model.lr", "0.0003"]},
        },
    }
    (tmp_path / "learning.yaml").write_text(yaml.safe_dump(config))
    args = ["eval", "learning", "--config", str(tmp_path / "learning.yaml")]
    assert main(args) == 0
    printed = capsys.readouterr().out
    rows = json.loads((tmp_path / "learning" / "learning.json").read_text())["per_seed"]["3"]
    assert set(rows) == {"chatreid:1+2+3", "chatreid:2+3", "chatreid:3", "retriever alone"}
    assert all(0 <= rows[r][m] <= 100 for r in rows for m in ("standard mAP", "text-to-image R@1"))
    assert "### ChatReID re-ranking (Table 4)" in printed and "**chatreid:1+2+3** (learned)" in printed
    seed_dir = tmp_path / "learning" / "seed-3" / "chatreid"
    assert not (seed_dir.parent / "data").exists(), "a ChatReID-only study builds ChatReID's world alone"
    for chain, stages in (("1+2+3", (1, 2, 3)), ("2+3", (2, 3)), ("3", (3,))):
        for stage in stages:
            done = json.loads((seed_dir / chain / f"stage{stage}" / "done.json").read_text())
            assert Path(done["ckpt"]).parent == (seed_dir / chain / f"stage{stage}" / "checkpoints").resolve()
            assert 0 < done["metrics"]["val/loss"] < 20, "its last validation is kept"

    def ckpt(chain: str, run: str) -> str:
        return json.loads((seed_dir / chain / run / "done.json").read_text())["ckpt"]

    def started_from(chain: str, run: str) -> str | None:
        return torch.load(ckpt(chain, run), map_location="cpu", weights_only=True)["hyper_parameters"]["init_from"]

    for chain, first in (("1+2+3", ckpt("1+2+3", "stage1")), ("2+3", None)):  # stage 2 opens with the pair sets
        assert started_from(chain, "stage2-pairs-random") == first
        assert started_from(chain, "stage2-pairs-look-alikes") == ckpt(chain, "stage2-pairs-random")
        assert started_from(chain, "stage2-pairs-mixed") == ckpt(chain, "stage2-pairs-look-alikes")
        assert started_from(chain, "stage2") == ckpt(chain, "stage2-pairs-mixed")
        assert started_from(chain, "stage3") == ckpt(chain, "stage2")
        lr = {run: torch.load(ckpt(chain, run), map_location="cpu", weights_only=True)["hyper_parameters"]["lr"]
              for run in ("stage2-pairs-mixed", "stage2")}  # fmt: skip
        assert lr == {"stage2-pairs-mixed": 1e-3, "stage2": 3e-4}, "a run's own arguments reach that run alone"
    alikes = json.loads((seed_dir / "look-alikes.json").read_text())
    assert alikes["top_k"] == 20 and alikes["source"]["split"] == "train"
    instructions = seed_dir / "instructions-appearance-stage3-pairs-0.25"
    assert json.loads((instructions / "stage2.config.json").read_text())["image_match"] == "appearance"
    stage3 = json.loads((instructions / "stage3.counts.json").read_text())["counts"]
    assert stage3["i2i_one_to_one"] == round(sum(stage3.values()) / 4), stage3
    for name, tasks in (("pairs-random", {"i2i_one_to_one"}), ("pairs-look-alikes", {"i2i_one_to_one"}),
                        ("pairs-mixed", {"i2i_one_to_one", "t2i_one_to_one"})):  # fmt: skip
        written = json.loads((seed_dir / name / "stage2.config.json").read_text())
        assert written["image_match"] == "appearance" and written["samples"] == 24
        assert (written["look_alikes"] is not None) == (name != "pairs-random")
        counts = json.loads((seed_dir / name / "stage2.counts.json").read_text())["counts"]
        assert {task for task, count in counts.items() if count} == tasks, (name, counts)

    def never(*_args, **_kwargs):
        raise AssertionError("a finished step ran again")

    monkeypatch.setattr("ireid.app.stages.IreidCLI.__init__", never)
    monkeypatch.setattr("ireid.app.chatreid_cli.evaluate_checkpoint", never)
    (tmp_path / "learning" / "seed-3" / "rows.json").unlink()  # not the kept rows: each step's own results
    assert main(args) == 0
    assert json.loads((tmp_path / "learning" / "learning.json").read_text())["per_seed"]["3"] == rows


def test_the_shipped_learning_configs_load() -> None:
    from ireid.app.learning import LearningConfig
    from ireid.core.settings import load_settings

    configs = sorted((Path(__file__).resolve().parents[2] / "configs" / "learning").glob("*.yaml"))
    assert {p.stem for p in configs} >= {"demo", "full-cpu", "chatreid"}
    for path in configs:
        config = load_settings(LearningConfig, path)
        assert config.seeds and config.parts
    assert load_settings(LearningConfig, configs[0].parent / "chatreid.yaml").chatreid.chains == ["1+2+3", "2+3", "3"]


def test_a_comparison_shows_only_the_metrics_that_were_measured() -> None:
    rows = {"chatreid:1+2+3": {"standard mAP": 20.0}, "retriever alone": {"standard mAP": 30.0}}
    table = markdown_table({1: rows})
    assert "| | standard mAP |" in table and "text-to-image" not in table
    assert "| **chatreid:1+2+3** (learned) | 20.0 ± 0.0 |" in table and "standard mAP: -10.0" in table


def test_a_person_tower_reaches_every_stage_of_every_chain(tower_file: Path, tmp_path: Path, monkeypatch) -> None:
    """`chatreid.person_tower`: the seed's retriever is exported once, and each stage sees through it at its size."""
    from ireid.app import chatreid_pipeline
    from ireid.core.person_vision import VisionTowerFile

    calls: list[tuple[str, list[str]]] = []

    def fit_step(name, folder, *_args, checkpoints=None, **_kwargs):
        calls.append((name, list(_args[-1])))
        return folder / "best.ckpt"

    monkeypatch.setattr(chatreid_pipeline, "fit_step", fit_step)
    monkeypatch.setattr(chatreid_pipeline, "build_instructions_once", lambda data, out, seed, budget: out)
    scores = {"model": {"mAP": 1.0, "R1": 2.0}, "baseline": {"mAP": 3.0, "R1": 4.0}}
    monkeypatch.setattr(chatreid_pipeline, "evaluate_chain", lambda *_a, **_k: {"standard": scores})
    budget = chatreid_pipeline.ChatReIDBudget(person_tower=True)
    retriever = tower_file.parent / "retriever.ckpt"
    rows = chatreid_pipeline.chatreid_rows(tmp_path, tmp_path / "data", retriever, budget, seed=1)
    assert rows["chatreid:1+2+3"] == {"standard mAP": 1.0, "standard R@1": 2.0}
    exported = tmp_path / "person-tower.pt"
    assert len(calls) == 6, "stages 1, 2, 3 + 2, 3 + 3"
    for name, overrides in calls:
        at = overrides.index("--model.vision_checkpoint")
        assert overrides[at + 1] == str(exported), name
        assert overrides[overrides.index("--data.max_image_size") + 1] == "[128, 64]", name
    mine, theirs = VisionTowerFile.load(exported), VisionTowerFile.load(tower_file)
    assert all(torch.equal(mine.state[k], theirs.state[k]) for k in theirs.state)
    written = exported.stat().st_mtime_ns
    chatreid_pipeline.chatreid_rows(tmp_path, tmp_path / "data", retriever, budget, seed=1)
    assert exported.stat().st_mtime_ns == written, "exported once"


def test_an_attribute_net_is_trained_once_and_reaches_every_stage(tmp_path: Path, monkeypatch) -> None:
    """`chatreid.attribute_net`: a net is trained on the world once, and each stage sees through it at its crop."""
    from ireid.app import chatreid_pipeline

    calls: list[tuple[str, list[str]]] = []
    trained: list[tuple[Path, Path, int]] = []

    def fit_step(name, folder, *_args, checkpoints=None, **_kwargs):
        calls.append((name, list(_args[-1])))
        return folder / "best.ckpt"

    def train_attribute_net(data_dir, net_file, seed=0, **_kwargs):
        trained.append((data_dir, net_file, seed))
        net_file.write_bytes(b"net")
        return {}

    monkeypatch.setattr(chatreid_pipeline, "fit_step", fit_step)
    monkeypatch.setattr("ireid.app.attribute_net_pipeline.train_attribute_net", train_attribute_net)
    monkeypatch.setattr(chatreid_pipeline, "build_instructions_once", lambda data, out, seed, budget: out)
    scores = {"model": {"mAP": 1.0, "R1": 2.0}, "baseline": {"mAP": 3.0, "R1": 4.0}}
    monkeypatch.setattr(chatreid_pipeline, "evaluate_chain", lambda *_a, **_k: {"standard": scores})
    budget = chatreid_pipeline.ChatReIDBudget(attribute_net=True, chains=["1+2+3"])
    for _ in range(2):
        chatreid_pipeline.chatreid_rows(tmp_path, tmp_path / "data", tmp_path / "r.ckpt", budget, seed=3)
    assert trained == [(tmp_path / "data", tmp_path / "attribute-net.pt", 3)], "trained once, on the world, seeded"
    assert len(calls) == 6, "stages 1, 2, 3, twice"
    for name, overrides in calls:
        assert overrides[overrides.index("--model.vision_checkpoint") + 1] == str(tmp_path / "attribute-net.pt"), name
        assert overrides[overrides.index("--data.max_image_size") + 1] == "[128, 64]", name
    with pytest.raises(ValueError, match="choose one set of eyes"):
        chatreid_pipeline.ChatReIDBudget(attribute_net=True, person_tower=True)


def test_stage3_replays_the_one_to_one_questions_asked_in_equal_parts(tmp_path: Path, monkeypatch) -> None:
    """`chatreid.stage3_pair_tasks`: the replayed share is split evenly, and each choice has its own folder."""
    from ireid.app import chatreid_pipeline

    built: dict[tuple[str, int], list[str]] = {}
    monkeypatch.setattr(
        chatreid_pipeline, "engine_once", lambda out, stage, args: built.update({(out.name, stage): args})
    )

    def stage3_mix(**fields) -> tuple[str, str]:
        budget = chatreid_pipeline.ChatReIDBudget(stage3_pairs=0.25, **fields)
        folder = chatreid_pipeline.build_instructions_once(tmp_path, tmp_path, 1, budget)
        args = built[(folder.name, 3)]
        return folder.name, args[args.index("--mix") + 1]

    assert stage3_mix() == ("instructions-stage3-pairs-0.25", "i2i_one_to_one=0.333333")
    both = stage3_mix(stage3_pair_tasks=["t2i_one_to_one", "i2i_one_to_one"])
    assert both == ("instructions-stage3-pairs-0.25-i2i+t2i", "i2i_one_to_one=0.166667,t2i_one_to_one=0.166667")
    with pytest.raises(ValueError, match=r"'chatreid\.stage3_pair_tasks': one or more of"):
        chatreid_pipeline.ChatReIDBudget(stage3_pair_tasks=["caption"])


def test_a_pair_run_left_at_chance_begins_again_with_another_seed(tmp_path: Path, monkeypatch) -> None:
    """`chatreid.pair_restarts`: a pair run whose last Yes/No accuracy is at chance trains again from the same model
    with seed + 1000; the chain goes on from the last try, whether or not it left chance."""
    from ireid.app import chatreid_pipeline

    accuracy = {"stage2-pairs-random": 0.52, "stage2-pairs-random-restart-1": 0.81, "stage2-pairs-look-alikes": 0.5,
                "stage2-pairs-look-alikes-restart-1": 0.55, "stage2": 0.5}  # fmt: skip
    calls: list[tuple[str, str, str]] = []

    def fit_step(name, folder, *args, checkpoints=None, **_kwargs):
        overrides = list(args[-1])
        seed, init = (overrides[overrides.index(flag) + 1] for flag in ("--seed_everything", "--model.init_from"))
        calls.append((folder.name, seed, init if init == "null" else Path(init).parent.name))
        folder.mkdir(parents=True)
        metrics = {"val/loss": 0.3, "val/yes_no_accuracy": accuracy[folder.name]} if folder.name in accuracy else {}
        (folder / "done.json").write_text(json.dumps({"ckpt": str(folder / "best.ckpt"), "metrics": metrics}))
        return folder / "best.ckpt"

    monkeypatch.setattr(chatreid_pipeline, "fit_step", fit_step)
    budget = chatreid_pipeline.ChatReIDBudget(chains=["2+3"], pair_steps=[10, 10, 0], pair_restarts=1)
    pairs = [(tmp_path / "pairs-random", 10), (tmp_path / "pairs-look-alikes", 10)]
    last = chatreid_pipeline.train_chain("2+3", tmp_path / "chain", tmp_path, tmp_path, budget, 7, pairs=pairs)
    assert calls == [
        ("stage2-pairs-random", "7", "null"),
        ("stage2-pairs-random-restart-1", "1007", "null"),
        ("stage2-pairs-look-alikes", "7", "stage2-pairs-random-restart-1"),
        ("stage2-pairs-look-alikes-restart-1", "1007", "stage2-pairs-random-restart-1"),
        ("stage2", "7", "stage2-pairs-look-alikes-restart-1"),  # the paper's stages are never begun again
        ("stage3", "7", "stage2"),
    ]
    assert last == tmp_path / "chain" / "stage3" / "best.ckpt"
    with pytest.raises(ValueError, match="pair_restarts"):
        chatreid_pipeline.ChatReIDBudget(pair_restarts=-1)


def test_an_sft_stopped_at_chance_begins_again_with_another_seed(tmp_path: Path, monkeypatch) -> None:
    """The first two runs stop at step 2000 of 4000 (as `StopAtChance` stops them); the third runs to the end."""
    seeds = []

    def fit_step(name, out, *args, **kwargs):
        overrides = args[4]
        seeds.append(int(overrides[overrides.index("--seed_everything") + 1]))
        out.mkdir(parents=True)
        (out / "done.json").write_text(json.dumps({"steps": 2000 if len(seeds) < 3 else 4000}))
        return out / "best.ckpt"

    monkeypatch.setattr(thi_pipeline, "fit_step", fit_step)
    budget = thi_pipeline.ICLBudget(sft_steps=4000, restarts=3)
    model = thi_pipeline._sft(tmp_path, tmp_path / "sft-data", tmp_path / "data", tmp_path / "net.pt", budget, seed=7)
    assert seeds == [7, 1007, 2007] and model == tmp_path / "sft-restart-2" / "best.ckpt"
    seeds.clear()
    last = thi_pipeline._sft(tmp_path / "b", tmp_path, tmp_path, tmp_path, dataclasses.replace(budget, restarts=1), 7)
    assert seeds == [7, 1007] and last == tmp_path / "b" / "sft-restart-1" / "best.ckpt"  # out of restarts: the last
    with pytest.raises(ValueError, match=r"icl\.restarts"):
        thi_pipeline.ICLBudget(restarts=-1)


def test_a_seeds_rows_are_kept_as_it_ends_and_read_back_while_the_settings_hold(tmp_path: Path, monkeypatch) -> None:
    """A study cut after its first seed keeps that seed's rows; a changed setting runs the seed again."""
    ran = []

    def run_seed(config, seed):
        ran.append(seed)
        if seed == 2:
            raise KeyboardInterrupt  # the study is cut during the second seed
        return {"sdm": {"fine R@1": float(seed)}}

    monkeypatch.setattr(learning, "run_seed", run_seed)
    config = learning.LearningConfig(seeds=[1, 2], out=str(tmp_path), parts=["retriever"])
    with pytest.raises(KeyboardInterrupt):
        learning.run_learning(config, progress=lambda _line: None)
    assert json.loads((tmp_path / "seed-1" / "rows.json").read_text())["rows"] == {"sdm": {"fine R@1": 1.0}}
    ran.clear()
    assert learning.seed_results(config, 1) == {"sdm": {"fine R@1": 1.0}} and ran == []
    (tmp_path / "seed-3").mkdir()
    (tmp_path / "seed-3" / "rows.json").write_bytes(b"\xff{")  # damaged: made again
    assert learning.seed_results(config, 3) == {"sdm": {"fine R@1": 3.0}} and ran == [3]
    changed = dataclasses.replace(config, max_queries=50)
    assert learning.seed_results(changed, 1) == {"sdm": {"fine R@1": 1.0}} and ran == [3, 1]

"""`ireid demo` end to end on a tiny world: train a retriever, evaluate strategies, write the report."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ireid.app.cli import main
from ireid.questioner.evaluate import main as evaluate_questions


@pytest.mark.slow
def test_demo_trains_evaluates_and_reports(tiny_world: Path, tmp_path: Path, capsys) -> None:
    args = ["demo", "--out", str(tmp_path), "--data", str(tiny_world), "--train-steps", "2", "--max-queries", "6"]
    args += ["--strategies", "initial,random,oracle-lookforward,simirv,plugir"]
    assert main(args) == 0
    printed = capsys.readouterr().out
    assert "| oracle-lookforward (uses ground truth) |" in printed
    timings = json.loads((tmp_path / "timings.json").read_text())
    assert [s["stage"] for s in timings["stages"]] == ["retriever", "evaluation"] and "wall time: retriever" in printed
    assert timings["total"] == pytest.approx(sum(s["seconds"] for s in timings["stages"]))
    report = tmp_path / "eval" / "report.md"
    assert report.is_file() and (tmp_path / "eval" / "rounds.png").is_file()
    results = json.loads((tmp_path / "eval" / "results.json").read_text())
    assert [s["name"] for s in results["strategies"]] == ["initial", "random", "oracle-lookforward", "simirv", "plugir"]
    assert all(len(s["rounds"]) == 6 for s in results["strategies"])
    # A second run reuses the trained retriever and every finished batch.
    before = {p: p.stat().st_mtime_ns for p in (tmp_path / "eval" / "strategies").glob("*/batches/*.json")}
    assert main(args) == 0
    assert "reusing" in capsys.readouterr().out
    assert {p: p.stat().st_mtime_ns for p in before} == before

    # The demo's retriever builds look-forward targets and the selector's warm-up file from them.
    ckpt = json.loads((tmp_path / "retriever" / "done.json").read_text())["ckpt"]
    targets = tmp_path / "lookforward"
    args = ["lookforward", "--retriever-ckpt", ckpt, "--data", str(tiny_world), "--out", str(targets)]
    assert main([*args, "--max-rounds", "2", "--selector-file", str(tmp_path / "selector.pt")]) == 0
    summary = json.loads((targets / "train.lookforward.json").read_text())
    assert summary["records"] == 24 and summary["rounds"]["1"]["dialogues"] == 24
    assert (tmp_path / "selector.pt").is_file()


@pytest.mark.slow
def test_demo_trains_llava_reid_and_evaluates_it(tiny_world: Path, tmp_path: Path, capsys) -> None:
    args = ["demo", "--out", str(tmp_path), "--data", str(tiny_world), "--train-steps", "2", "--max-queries", "4"]
    args += ["--strategies", "initial,target-frequency,llava-reid", "--llava-reid-records", "8"]
    args += ["--selector-steps", "2", "--questioner-steps", "3", "--joint-steps", "2", "--retry-beams", "4"]
    args += ["--on-policy-records", "4", "--on-policy-steps", "2"]
    assert main(args) == 0
    printed = capsys.readouterr().out
    assert "| llava-reid |" in printed and "| target-frequency |" in printed
    stages = json.loads((tmp_path / "timings.json").read_text())["stages"]
    assert [s["stage"] for s in stages] == ["retriever", "llava-reid", "targets", "evaluation"]
    config = json.loads((tmp_path / "eval" / "config.json").read_text())
    assert config["target_frequency"]["targets"] == str(tmp_path / "llava-reid" / "targets")
    for step in ("selector", "warmup", "joint", "on-policy"):
        assert json.loads((tmp_path / "llava-reid" / step / "done.json").read_text())["steps"] >= 2
    targets = json.loads((tmp_path / "llava-reid" / "targets" / "train.lookforward.json").read_text())
    assert targets["records"] == 8
    on_policy = json.loads((tmp_path / "llava-reid" / "targets-on-policy" / "train.lookforward.json").read_text())
    assert on_policy["records"] == 4 and on_policy["policy"] == "llava-reid"
    last = json.loads((tmp_path / "llava-reid" / "on-policy" / "done.json").read_text())["ckpt"]
    assert json.loads((tmp_path / "eval" / "config.json").read_text())["llava_reid"]["questioner_ckpt"] == last
    results = json.loads((tmp_path / "eval" / "results.json").read_text())
    (llava,) = [s for s in results["strategies"] if s["name"] == "llava-reid"]
    assert len(llava["rounds"]) == 6
    assert json.loads((tmp_path / "eval" / "config.json").read_text())["llava_reid"]["retry_beams"] == 4
    conversations = (tmp_path / "eval" / "strategies" / "llava-reid" / "conversations.jsonl").read_text()
    assert conversations.count("\n") == 4

    # What the trained questioner asks on the held-out look-forward rounds, and whether its images matter.
    scores = tmp_path / "asks.json"
    ask_args = ["--ckpt", last, "--lookforward", str(tmp_path / "llava-reid" / "targets"), "--data", str(tiny_world)]
    assert evaluate_questions([*ask_args, "--max-records", "3", "--out", str(scores)]) == 0
    asked = json.loads(scores.read_text())
    assert asked["examples"] > 0 and asked["selector"] is True
    assert all(0.0 <= asked[k] <= 1.0 for k in ("parsed_share", "repeat_share", "image_reliance"))

    # Table 3 from the same folder: the llava-reid row is reused, the demo's report is left as it was.
    report = (tmp_path / "eval" / "report.md").read_text()
    config = {
        "data_dir": str(tiny_world),
        "retriever_ckpt": json.loads((tmp_path / "retriever" / "done.json").read_text())["ckpt"],
        "out": str(tmp_path / "eval"),
        "max_queries": 4,
        "llava_reid": {"questioner_ckpt": last},
    }
    (tmp_path / "selection.yaml").write_text(json.dumps(config))
    assert main(["eval", "selection", "--config", str(tmp_path / "selection.yaml")]) == 0
    table = (tmp_path / "eval" / "selection" / "selection.md").read_text()
    assert all(f"| Candidate | {rule} |" in table for rule in ("k-means", "uniform", "top-k", "selector"))
    assert "| Question | random |" not in table and (tmp_path / "eval" / "report.md").read_text() == report

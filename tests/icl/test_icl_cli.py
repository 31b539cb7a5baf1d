"""`ireid icl build-sft` and `ireid icl rerank` on the tiny world, and THI's rows in `ireid eval interactive`."""

from __future__ import annotations

import inspect
import json
from pathlib import Path

import pytest
import torch
import yaml

from ireid.app.cli import main
from ireid.app.thi_pipeline import (
    RETRIEVER_ALONE,
    THI_ANNOTATED,
    THI_LEARNED,
    ICLBudget,
    icl_rows,
    thi_settings,
)
from ireid.chatreid.conversations import read_conversations
from ireid.chatreid.inference import ChatReID
from ireid.chatreid.module import ChatReIDModule
from ireid.chatreid.net_tower import NetTowerVisual
from ireid.chatreid.train_cli import main as train
from ireid.core.attribute_net import annotated_images
from ireid.core.attribute_net_training import fit_attribute_net
from ireid.core.images import ImageStore
from ireid.core.lightning_cli import compose_config
from ireid.core.loader import load_records
from ireid.icl.perception import anchor_prompt
from ireid.icl.sft import ANCHOR_TASK
from tests.helpers import train_on_two_processes


def test_build_sft_writes_shards_the_chatreid_loader_reads(tiny_world: Path, tower_file: Path, tmp_path: Path) -> None:
    out = tmp_path / "sft"
    ckpt = tower_file.parent / "retriever.ckpt"
    assert main(["icl", "build-sft", "--data", str(tiny_world), "--retriever-ckpt", str(ckpt), "--out", str(out),
                 "--samples", "60", "--negatives", "3"]) == 0  # fmt: skip
    conversations = list(read_conversations(out, 3))
    assert len(conversations) == 60
    counts = json.loads((out / "stage3.counts.json").read_text())["counts"]
    assert sum(counts.values()) == 60 and counts["icl_anchor Yes"] > 0 and counts["icl_anchor No"] > 0
    pid = {r.key: r.pid for r in load_records(tiny_world, "train")}
    caption_pid = {r.captions[0]: r.pid for r in load_records(tiny_world, "train")}
    for c in conversations:
        if c["task"] == ANCHOR_TASK:
            text = c["messages"][0]["content"][1]["text"]
            query_pid = next(p for caption, p in caption_pid.items() if anchor_prompt(caption) == text)
            assert (pid[c["images"][0]] == query_pid) == (c["messages"][1]["content"][0]["text"] == "Yes")


def test_rerank_with_perfect_eyes_scores_anchor_accuracy(tiny_world: Path, tower_file: Path, tmp_path: Path) -> None:
    out = tmp_path / "icl"
    ckpt = tower_file.parent / "retriever.ckpt"
    assert main(["icl", "rerank", "--data", str(tiny_world), "--retriever-ckpt", str(ckpt), "--aggregation", "join",
                 "--xi", "1.0", "--anchor-pairs", "6", "--out", str(out)]) == 0  # fmt: skip
    report = json.loads((out / "thi.json").read_text())
    assert report["uses_ground_truth"] is True
    # Perfect eyes: every anchor shows the query's person, and no Yes/No answer is wrong.
    assert report["anchor_is_match"] in (None, 100.0)
    assert report["anchor_accuracy"]["accuracy"] == 100.0 and report["anchor_accuracy"]["pairs"] == 12
    assert report["thi"]["R1"] >= report["retriever"]["R1"]


def test_rerank_with_an_attribute_nets_eyes_uses_no_ground_truth(tiny_world: Path, tower_file: Path, tmp_path: Path):
    """`--mllm attribute-net:<file>`: THI asks an attribute net, which reads every image; no annotation is read."""
    out, ckpt = tmp_path / "icl", tower_file.parent / "retriever.ckpt"
    net = fit_attribute_net(*annotated_images(tiny_world, "train"), steps=2, batch_size=4).save(tmp_path / "n.pt")
    rerank = ["icl", "rerank", "--data", str(tiny_world), "--retriever-ckpt", str(ckpt), "--anchor-pairs", "6",
              "--mllm", f"attribute-net:{net}", "--out", str(out)]  # fmt: skip
    assert main([*rerank, "--aggregation", "join"]) == 0
    report = json.loads((out / "thi.json").read_text())
    assert report["perception"] == "attribute-net" and report["uses_ground_truth"] is False
    assert report["anchor_accuracy"]["pairs"] == 12
    assert report["counts"]["queries"] == len(load_records(tiny_world, "test"))
    assert main([*rerank, "--aggregation", "mllm"]) == 2  # no language model to merge the answers: one line


def test_eval_interactive_scores_thi_rows_beside_each_strategy(tiny_world: Path, tower_file: Path, tmp_path: Path):
    out = tmp_path / "eval"
    ckpt = tower_file.parent / "retriever.ckpt"
    assert main(["eval", "interactive", "--data", str(tiny_world), "--retriever-ckpt", str(ckpt), "--out", str(out),
                 "--strategies", "initial,oracle-lookforward", "--rounds", "2", "--thi", "annotated"]) == 0  # fmt: skip
    report = (out / "report.md").read_text()
    assert "## With re-ranking: ICL★ THI on each round's dialogue text, MLLM annotated (uses ground truth)" in report
    strategies = json.loads((out / "results.json").read_text())["strategies"]
    for strategy in strategies:
        assert len(strategy["reranked_rounds"]) == 3 and "reranked_bri" in strategy
        # The initial description is re-ranked the same way in every strategy's round 0.
        assert strategy["reranked_rounds"][0] == strategies[0]["reranked_rounds"][0]
    assert main(["eval", "interactive", "--data", str(tiny_world), "--retriever-ckpt", str(ckpt), "--out", str(out),
                 "--thi", "annotated", "--rerank-ckpt", str(ckpt)]) == 2  # fmt: skip


CONFIGS = Path(__file__).resolve().parents[2] / "configs" / "icl"


def sft_config(tiny_world: Path, tower_file: Path, tmp_path: Path) -> Path:
    """`ireid icl build-sft`'s data and `configs/icl/sft-synthetic.yaml` pointed at it, under `tmp_path`."""
    ckpt = tower_file.parent / "retriever.ckpt"
    assert main(["icl", "build-sft", "--data", str(tiny_world), "--retriever-ckpt", str(ckpt), "--out",
                 str(tmp_path / "sft"), "--samples", "40", "--negatives", "3"]) == 0  # fmt: skip
    config = compose_config(CONFIGS / "sft-synthetic.yaml")
    config["trainer"]["logger"]["init_args"]["save_dir"] = str(tmp_path / "runs")
    config["trainer"]["callbacks"][0]["init_args"]["dirpath"] = str(tmp_path / "checkpoints")
    config["data"].update(conversations_dir=str(tmp_path / "sft"), data_dir=str(tiny_world), val_fraction=0.25)
    config["model"]["vision_checkpoint"] = str(tower_file)
    path = tmp_path / "sft.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


SHORT = ["--trainer.max_steps", "2", "--trainer.val_check_interval", "2", "--trainer.limit_val_batches", "1",
         "--trainer.enable_progress_bar", "false", "--trainer.enable_model_summary", "false"]  # fmt: skip


def test_sft_config_trains_a_model_thi_can_ask(tiny_world: Path, tower_file: Path, tmp_path: Path) -> None:
    """`configs/icl/sft-synthetic.yaml` on `ireid icl build-sft`'s data, two steps; the checkpoint answers Eq. 2."""
    assert train(["fit", "--config", str(sft_config(tiny_world, tower_file, tmp_path)), *SHORT]) == 0
    model = ChatReID.from_checkpoint(tmp_path / "checkpoints" / "best.ckpt")
    record = load_records(tiny_world, "test")[0]
    image = ImageStore.from_shards(tiny_world, "test").load([record.key])
    assert len(model.judge([anchor_prompt(record.captions[0])], image)) == 1


def test_the_sft_with_the_papers_lora_trains_on_two_processes(tiny_world: Path, tower_file: Path, tmp_path: Path):
    """ICL's SFT as `sft-real.yaml` runs it (LoRA r 8, α 16 on the decoder, the rest frozen) on two processes."""
    config = sft_config(tiny_world, tower_file, tmp_path)
    lora = ["--model.lora", '{"r": 8, "alpha": 16, "dropout": 0.05}']
    train_on_two_processes("ireid.chatreid", ["fit", "--config", str(config), *SHORT, *lora], tmp_path)
    checkpoint = torch.load(tmp_path / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    assert checkpoint["global_step"] == 2 and any("lora_" in key for key in checkpoint["state_dict"])


def test_the_real_sft_config_fits_the_module_with_the_papers_lora() -> None:
    config = compose_config(CONFIGS / "sft-real.yaml")
    inspect.signature(ChatReIDModule).bind(**config["model"])  # every key is a module argument
    assert config["model"]["lora"] == {"r": 8, "alpha": 16, "dropout": 0.05} and config["model"]["lr"] == 5e-5
    assert config["trainer"]["max_epochs"] == 2 and config["data"]["stage"] == config["model"]["stage"] == 3


def test_an_unreachable_mllm_server_is_one_line_naming_it(tiny_world: Path, tower_file: Path, tmp_path: Path, capsys):
    ckpt = tower_file.parent / "retriever.ckpt"
    status = main(["icl", "rerank", "--data", str(tiny_world), "--retriever-ckpt", str(ckpt), "--mllm",
                   "openai:http://127.0.0.1:9/v1#vision", "--max-retries", "1", "--timeout-s", "2",
                   "--out", str(tmp_path / "icl")])  # fmt: skip
    errors = [line for line in capsys.readouterr().err.splitlines() if "error" in line.lower()]  # bars aside
    assert status == 2 and len(errors) == 1 and "Traceback" not in errors[0]
    assert errors[0].startswith("error: cannot reach the chat server at http://127.0.0.1:9/v1/chat/completions")
    assert not (tmp_path / "icl" / "thi.json").exists()


def test_thi_settings_from_an_evaluation_config() -> None:
    mllm, settings, server = thi_settings({"mllm": "annotated", "xi": 0.4, "server": {"timeout_s": 5}})
    assert mllm == "annotated" and settings.xi == 0.4 and settings.aggregation == "join" and server.timeout_s == 5
    assert thi_settings({"mllm": "attribute-net:n.pt"})[1].aggregation == "join"  # no language model either
    with pytest.raises(ValueError, match="unknown key"):
        thi_settings({"mllm": "annotated", "threshold": 0.4})
    with pytest.raises(ValueError, match=r"thi\.server"):
        thi_settings({"server": {"timeout": 5}})


def test_table6_rows_for_eval_learning(tiny_world: Path, tower_file: Path, tmp_path: Path) -> None:
    budget = ICLBudget(sft_samples=40, negatives=3, sft_steps=2, overrides=[
        "--trainer.val_check_interval", "2", "--trainer.limit_val_batches", "1", "--data.val_fraction", "0.25",
        "--trainer.enable_progress_bar", "false", "--trainer.enable_model_summary", "false"])  # fmt: skip
    ckpt = tower_file.parent / "retriever.ckpt"
    rows = icl_rows(tmp_path / "icl", tiny_world, ckpt, budget, seed=0)
    assert set(rows) == {RETRIEVER_ALONE, THI_LEARNED, THI_ANNOTATED}
    assert rows[THI_ANNOTATED]["anchor accuracy"] == 100.0
    assert 0.0 <= rows[THI_LEARNED]["anchor accuracy"] <= 100.0
    assert rows[THI_ANNOTATED]["caption R@1"] >= rows[RETRIEVER_ALONE]["caption R@1"]
    assert (tmp_path / "icl" / "sft" / "done.json").exists()
    assert icl_rows(tmp_path / "icl", tiny_world, ckpt, budget, seed=0) == rows  # every step is reused


def test_table6_rows_with_an_attribute_net_as_the_mllms_eyes(tiny_world: Path, tower_file: Path, tmp_path: Path):
    """`icl.eyes: attribute-net`: the tuned MLLM reads the seed's net in place of the retriever's image encoder."""
    net = fit_attribute_net(*annotated_images(tiny_world, "train"), steps=2, batch_size=4).save(tmp_path / "n.pt")
    budget = ICLBudget(sft_samples=24, negatives=3, sft_steps=1, eyes="attribute-net", overrides=[
        "--trainer.val_check_interval", "1", "--trainer.limit_val_batches", "1", "--data.val_fraction", "0.25",
        "--trainer.enable_progress_bar", "false", "--trainer.enable_model_summary", "false"])  # fmt: skip
    ckpt = tower_file.parent / "retriever.ckpt"
    with pytest.raises(ValueError, match="needs the seed's attribute net"):
        icl_rows(tmp_path / "icl", tiny_world, ckpt, budget, seed=0)
    rows = icl_rows(tmp_path / "icl", tiny_world, ckpt, budget, seed=0, net=net)
    assert set(rows) == {RETRIEVER_ALONE, THI_LEARNED, THI_ANNOTATED}
    tuned = json.loads((tmp_path / "icl" / "sft" / "done.json").read_text())["ckpt"]
    assert isinstance(ChatReID.from_checkpoint(tuned).model.model.visual, NetTowerVisual)
    assert not (tmp_path / "icl" / "vision-tower.pt").exists()
    with pytest.raises(ValueError, match=r"icl\.eyes"):
        ICLBudget(eyes="net")

"""Both stages through the CLI, and checkpoints that rebuild the questioner and its selector on their own."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
from PIL import Image

from ireid.core.protocols import Dialogue, Questioner
from ireid.questioner.cli import main as questioner_main
from ireid.questioner.data import read_rounds
from ireid.questioner.inference import LlavaReidQuestioner, load_selector
from ireid.questioner.module import QuestionerModule
from ireid.selector import inference as selector_inference
from tests.questioner.conftest import TINY

CONFIGS = Path(__file__).resolve().parents[2] / "configs" / "questioner"


def fit(config: str, out: Path, tiny_world: Path, lookforward: Path, tower: Path, *extra: str) -> Path:
    questioner_main([
        "fit", "--config", str(CONFIGS / config), "--trainer.logger.init_args.save_dir", str(out),
        "--trainer.enable_progress_bar", "false", "--trainer.enable_model_summary", "false",
        "--trainer.max_steps", "3", "--trainer.val_check_interval", "3",
        "--data.lookforward", str(lookforward), "--data.data", str(tiny_world), "--data.batch_size", "4",
        "--model.tokenizer", str(tiny_world), "--model.tokenizer_vocab", "600", "--model.overrides", json.dumps(TINY),
        "--model.vision_checkpoint", str(tower), *extra,
    ])  # fmt: skip
    return next(out.rglob("checkpoints"))


@pytest.fixture(scope="module")
def stages(
    tiny_world: Path, lookforward: Path, selector_checkpoint: Path, tower_file: Path, tmp_path_factory
) -> tuple[Path, Path]:
    out = tmp_path_factory.mktemp("questioner_runs")
    warm = fit("warmup-synthetic.yaml", out / "warm", tiny_world, lookforward, tower_file)
    joint = fit(
        "joint-synthetic.yaml", out / "joint", tiny_world, lookforward, tower_file,
        "--model.init_checkpoint", str(warm / "best.ckpt"), "--model.selector_checkpoint", str(selector_checkpoint),
    )  # fmt: skip
    return warm, joint


def people(n: int) -> list[Image.Image]:
    return [Image.new("RGB", (32, 64), (30 * i, 90, 200 - 20 * i)) for i in range(n)]


@pytest.mark.slow
def test_stages_write_best_and_last_and_restore_without_the_data(stages, tmp_path: Path) -> None:
    warm, joint = stages
    assert {p.name for p in warm.iterdir()} == {p.name for p in joint.iterdir()} == {"best.ckpt", "last.ckpt"}
    checkpoint = torch.load(joint / "last.ckpt", map_location="cpu", weights_only=True)
    checkpoint["hyper_parameters"]["tokenizer"] = str(tmp_path / "nowhere")  # only the stored tokenizer is left
    moved = tmp_path / "moved.ckpt"
    torch.save(checkpoint, moved)
    questioner = LlavaReidQuestioner.from_checkpoint(moved, device="cpu", batch_size=2)
    assert isinstance(questioner, Questioner) and questioner.num_images == 4
    state = questioner.network.state_dict()
    assert all(torch.equal(state[k], v) for k, v in checkpoint["state_dict"].items())
    dialogues = [Dialogue("I saw a man."), Dialogue("A woman in a red top."), Dialogue("A man with a bag.")]
    asked = questioner.ask(dialogues, [people(4), people(4), people(2)])
    again = LlavaReidQuestioner.from_checkpoint(joint / "last.ckpt", device="cpu", batch_size=3)
    assert len(asked) == 3 and asked == again.ask(dialogues, [people(4), people(4), people(2)])
    with pytest.raises(ValueError, match="dialogue 1: no candidate images"):
        questioner.ask(dialogues[:2], [people(1), []])


@pytest.mark.slow
def test_joint_starts_from_the_warmup_and_trains_the_selector_it_stores(stages, selector_checkpoint: Path) -> None:
    warm, joint = stages
    assert load_selector(warm / "best.ckpt") is None
    trained = load_selector(joint / "last.ckpt")
    stored = torch.load(joint / "last.ckpt", map_location="cpu", weights_only=True)["state_dict"]
    assert all(torch.equal(v, stored[f"selector.{k}"]) for k, v in trained.state_dict().items())
    before = selector_inference.load_selector(selector_checkpoint)
    moved = [not torch.equal(a, b) for a, b in zip(before.parameters(), trained.parameters(), strict=True)]
    assert any(moved)  # the questioner's NLL is the selector's only loss


@pytest.mark.slow
def test_joint_model_starts_from_the_warmup_weights(stages, tiny_world: Path, selector_checkpoint: Path) -> None:
    warm, _ = stages
    module = QuestionerModule(
        tokenizer=str(tiny_world), tokenizer_vocab=600, overrides=TINY, stage="joint",
        init_checkpoint=str(warm / "best.ckpt"), selector_checkpoint=str(selector_checkpoint),
    )  # fmt: skip
    stored = torch.load(warm / "best.ckpt", map_location="cpu", weights_only=True)["state_dict"]
    own = module.state_dict()
    assert stored and all(torch.equal(own[k], v) for k, v in stored.items())


def test_lora_checkpoints_hold_the_adapters_and_rebuild_the_base(tiny_world: Path, tmp_path: Path) -> None:
    lora = {"r": 4, "alpha": 8, "dropout": 0.0}
    module = QuestionerModule(tokenizer=str(tiny_world), tokenizer_vocab=600, overrides=TINY, lora=lora)
    with torch.no_grad():
        for name, p in module.named_parameters():
            if "lora_B" in name:
                p.normal_()
    checkpoint = {"state_dict": module.state_dict(), "hyper_parameters": dict(module.hparams)}
    module.on_save_checkpoint(checkpoint)
    assert checkpoint["state_dict"] and all("lora_" in k for k in checkpoint["state_dict"])
    torch.save(checkpoint, tmp_path / "lora.ckpt")
    restored = QuestionerModule.restore(tmp_path / "lora.ckpt")
    mine, theirs = module.state_dict(), restored.state_dict()
    assert mine.keys() == theirs.keys() and all(torch.equal(mine[k], theirs[k]) for k in mine)
    wrong = {"state_dict": {"questioner.model.nothing": torch.zeros(1)}, "hyper_parameters": dict(module.hparams)}
    torch.save(wrong, tmp_path / "wrong.ckpt")
    with pytest.raises(ValueError, match=r"wrong\.ckpt: field 'state_dict' does not fit this questioner"):
        QuestionerModule.restore(tmp_path / "wrong.ckpt")


def unigram_cross_entropy(train: list[list[int]], held_out: list[list[int]]) -> float:
    """Nats per token of the held-out sequences under the training tokens' add-one unigram distribution."""
    counts: dict[int, int] = {}
    for ids in train:
        for i in ids:
            counts[i] = counts.get(i, 0) + 1
    vocab = len(set(counts) | {i for ids in held_out for i in ids})
    total = sum(counts.values()) + vocab
    tokens = [i for ids in held_out for i in ids]
    return -sum(math.log((counts.get(i, 0) + 1) / total) for i in tokens) / len(tokens)


@pytest.mark.slow
def test_warmup_learns_held_out_questions_below_the_unigram_baseline(
    tiny_world: Path, lookforward: Path, tokenizer, tower_file: Path, tmp_path: Path
) -> None:
    """A short warm-up must model unseen rounds' target questions better than their token frequencies do."""
    ckpts = fit("warmup-synthetic.yaml", tmp_path, tiny_world, lookforward, tower_file, "--trainer.max_steps", "120",
                "--trainer.val_check_interval", "120", "--model.lr", "3e-3")  # fmt: skip
    checkpoint = torch.load(ckpts / "best.ckpt", map_location="cpu", weights_only=True)
    states = checkpoint["callbacks"].items()
    held_out = float(next(s["best_model_score"] for k, s in states if k.startswith("ResumableCheckpoint")))

    def targets(split: str) -> list[list[int]]:
        questions = [example.question for example in read_rounds(lookforward, split)]
        return [tokenizer(q, add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id] for q in questions]

    baseline = unigram_cross_entropy(targets("train"), targets("val"))
    assert held_out < 0.8 * baseline, (held_out, baseline)

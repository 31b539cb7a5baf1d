"""The questioner's inference surface: checkpoints rebuild without Lightning and ask what the trained module asks."""

from __future__ import annotations

import inspect
from pathlib import Path

import pytest
import torch
from PIL import Image

from ireid.core.protocols import Dialogue
from ireid.questioner.inference import (
    INFERENCE_SETTINGS,
    LlavaReidQuestioner,
    load_selector,
    network_from_checkpoint,
)
from ireid.questioner.module import QuestionerModule
from ireid.selector.data import synthetic_batch
from tests.questioner.conftest import EMBEDDING_DIM, TINY


def save(module: QuestionerModule, path: Path) -> Path:
    """What Lightning writes of the module: its state dict, hyper-parameters and `on_save_checkpoint`'s fields."""
    checkpoint = {"state_dict": module.state_dict(), "hyper_parameters": dict(module.hparams)}
    module.on_save_checkpoint(checkpoint)
    torch.save(checkpoint, path)
    return path


def people(n: int) -> list[Image.Image]:
    return [Image.new("RGB", (32, 64), (30 * i, 90, 200 - 20 * i)) for i in range(n)]


def dialogues() -> list[Dialogue]:
    asked = Dialogue("A woman in a red top.")
    asked.ask("Was she wearing a hat?", "No.")
    return [Dialogue("I saw a man."), asked, Dialogue("A man with a bag.")]


@pytest.fixture(scope="module")
def joint(tiny_world: Path, selector_checkpoint: Path, tmp_path_factory) -> tuple[QuestionerModule, Path]:
    torch.manual_seed(0)
    module = QuestionerModule(
        tokenizer=str(tiny_world), tokenizer_vocab=600, overrides=TINY, stage="joint",
        selector_checkpoint=str(selector_checkpoint), eval_instruction=1, max_new_tokens=7,
    )  # fmt: skip
    with torch.no_grad():  # move the selector off its warm-up weights, so the checkpoint's own ones must be read
        for p in module.selector.parameters():
            p.add_(0.01 * torch.randn_like(p))
    return module.eval(), save(module, tmp_path_factory.mktemp("joint") / "joint.ckpt")


def test_the_checkpoint_asks_what_the_module_asks(joint) -> None:
    module, path = joint
    questioner = LlavaReidQuestioner.from_checkpoint(path, device="cpu", batch_size=2)
    own = module.state_dict()
    state = questioner.network.state_dict()
    assert state.keys() == own.keys() and all(torch.equal(state[k], own[k]) for k in own)
    assert questioner.eval_instruction == 1 and questioner.max_new_tokens == 7 and questioner.num_images == 4
    images = [people(4), people(4), people(2)]
    for beams in (1, 3):
        expected = module.questioner.generate(dialogues(), images, variant=1, max_new_tokens=7, candidates=beams)
        beam = LlavaReidQuestioner.from_checkpoint(path, device="cpu", batch_size=2, candidates=beams)
        assert beam.ask(dialogues(), images) == expected
    other = LlavaReidQuestioner.from_checkpoint(path, device="cpu", max_new_tokens=5, eval_instruction=0)
    expected = module.questioner.generate(dialogues(), images, variant=0, max_new_tokens=5)
    assert other.ask(dialogues(), images) == expected


def test_the_joint_selector_is_the_trained_one(joint) -> None:
    module, path = joint
    batch = synthetic_batch(3, num_candidates=6, dim=EMBEDDING_DIM, generator=torch.Generator().manual_seed(0))
    args = (batch["dialogue"], batch["candidates"], batch["mask"])
    expected = module.selector(*args)
    network, _ = network_from_checkpoint(path)
    assert torch.equal(load_selector(path)(*args), expected) and torch.equal(network.selector(*args), expected)


def test_lora_checkpoints_rebuild_their_base_for_inference(tiny_world: Path, tmp_path: Path) -> None:
    module = QuestionerModule(
        tokenizer=str(tiny_world), tokenizer_vocab=600, overrides=TINY, lora={"r": 4, "alpha": 8, "dropout": 0.0}
    )
    with torch.no_grad():
        for name, p in module.named_parameters():
            if "lora_B" in name:
                p.normal_()
    network, settings = network_from_checkpoint(save(module, tmp_path / "lora.ckpt"))
    mine, theirs = module.state_dict(), network.state_dict()
    assert settings["lora"] == {"r": 4, "alpha": 8, "dropout": 0.0} and network.selector is None
    assert mine.keys() == theirs.keys() and all(torch.equal(mine[k], theirs[k]) for k in mine)


def test_inference_defaults_are_the_modules() -> None:
    """A checkpoint lacking a setting gets what `QuestionerModule` would have stored."""
    parameters = inspect.signature(QuestionerModule.__init__).parameters
    assert {name: parameters[name].default for name in INFERENCE_SETTINGS} == INFERENCE_SETTINGS


def test_bad_checkpoints_and_settings_are_errors_naming_the_file(joint, tmp_path: Path) -> None:
    _, path = joint
    with pytest.raises(FileNotFoundError, match=r"nowhere\.ckpt: questioner checkpoint not found"):
        LlavaReidQuestioner.from_checkpoint(tmp_path / "nowhere.ckpt")
    with pytest.raises(ValueError, match=r"joint\.ckpt: unknown setting\(s\) \['eval_instructions'\]"):
        LlavaReidQuestioner.from_checkpoint(path, eval_instructions=1)
    checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    checkpoint["hyper_parameters"]["selector"] = None
    torch.save(checkpoint, tmp_path / "lost.ckpt")
    with pytest.raises(ValueError, match=r"lost\.ckpt: a joint checkpoint without field 'hyper_parameters\.selector'"):
        LlavaReidQuestioner.from_checkpoint(tmp_path / "lost.ckpt")

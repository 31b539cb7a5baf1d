"""The questioner seeing candidates through a trained retriever's image encoder (LLaVA's frozen CLIP tower)."""

from __future__ import annotations

import pytest
import torch
from PIL import Image

from ireid.core.person_vision import VisionTowerFile
from ireid.core.pixels import to_pixels
from ireid.questioner.inference import network_from_checkpoint
from ireid.questioner.module import QuestionerModule
from ireid.retriever.inference import load_retriever
from ireid.retriever.transforms import ImageTransform
from tests.questioner.conftest import TINY
from tests.questioner.test_inference import dialogues, save


def people(n: int) -> list[Image.Image]:
    return [Image.effect_noise((64, 128), 40 + 10 * i).convert("RGB") for i in range(n)]


def test_the_tower_sees_what_the_retriever_sees_and_stays_frozen(questioner, tower_file, tiny_world) -> None:
    retriever = load_retriever(tower_file.parent / "retriever.ckpt")
    images = people(3)
    own = torch.stack([ImageTransform((128, 64))(im) for im in images])
    model = questioner.questioner
    pixels = to_pixels(images, model.pixel_spec)
    assert pixels.shape == own.shape == (3, 3, 128, 64)
    assert torch.allclose(pixels, own, atol=2e-2), "same crop, resampling and normalisation as the retriever"
    with torch.no_grad():
        expected = retriever.features.clip.vision_model(pixel_values=own).last_hidden_state
        seen = model.hf.model.vision_tower(own, output_hidden_states=True).hidden_states[-1]
    assert torch.allclose(seen, expected, atol=1e-5)
    patch = VisionTowerFile.load(tower_file).config["patch_size"]
    grid = (128 // patch, 64 // patch)
    assert model.grid_hw == grid and model.tokens_per_image == -(-grid[0] // 4) * -(-grid[1] // 4), "pooled 4×4"
    hidden = model.hf.config.text_config.hidden_size
    assert model.image_features(model.tower_states(pixels)).shape == (3, model.tokens_per_image, hidden)
    tower = model.hf.model.vision_tower
    assert not any(p.requires_grad for p in tower.parameters())
    assert all(p.requires_grad for p in model.hf.model.multi_modal_projector.parameters())


def test_a_checkpoint_rebuilds_the_tower_without_its_file(questioner, tower_file, tmp_path) -> None:
    path = save(questioner, tmp_path / "warmup.ckpt")
    moved = tower_file.with_suffix(".moved")
    tower_file.rename(moved)
    try:
        network, settings = network_from_checkpoint(path)
    finally:
        moved.rename(tower_file)
    assert settings["person_vision"]["image_hw"] == [128, 64]
    images = [people(4), people(2), people(1)]
    expected = questioner.questioner.generate(dialogues(), images, max_new_tokens=6)
    assert network.questioner.generate(dialogues(), images, max_new_tokens=6) == expected


def test_a_tower_file_is_checked_when_read(tower_file, tmp_path) -> None:
    tower = VisionTowerFile.load(tower_file)
    assert tower.architecture()["config"]["patch_size"] == tower.config["patch_size"]
    again = VisionTowerFile.load(tower.save(tmp_path / "again.pt"))
    assert again.image_hw == tower.image_hw and all(torch.equal(again.state[k], v) for k, v in tower.state.items())
    retriever = load_retriever(tower_file.parent / "retriever.ckpt")
    assert torch.equal(again.projection, retriever.features.clip.visual_projection.weight)
    assert tower.architecture()["projection_dim"] == retriever.features.embed_dim
    torch.save({"format": "something else"}, tmp_path / "bad.pt")
    with pytest.raises(ValueError, match=r"bad\.pt: field 'format'"):
        VisionTowerFile.load(tmp_path / "bad.pt")
    torch.save({"format": "ireid.person-vision-tower/1"}, tmp_path / "old.pt")
    with pytest.raises(ValueError, match="export it again"):
        VisionTowerFile.load(tmp_path / "old.pt")
    record = torch.load(tower_file, weights_only=True)
    del record["projection"]
    torch.save(record, tmp_path / "short.pt")
    with pytest.raises(ValueError, match=r"short\.pt: missing field 'projection'"):
        VisionTowerFile.load(tmp_path / "short.pt")
    with pytest.raises(FileNotFoundError, match="vision tower file not found"):
        VisionTowerFile.load(tmp_path / "missing.pt")
    (tmp_path / "text.pt").write_text("not a tower")
    with pytest.raises(ValueError, match=r"text\.pt: not a torch file \(\w+\) \(expected a vision tower file\)"):
        VisionTowerFile.load(tmp_path / "text.pt")


def test_the_class_token_is_the_state_the_retriever_embeds(questioner, tiny_world, tower_file, tmp_path) -> None:
    """With `class_token` each image's first token is the projected class token after the tower's final norm,
    the state the retriever's image embedding is read from; the pooled patches follow, and a checkpoint keeps it."""
    module = QuestionerModule(
        tokenizer=str(tiny_world),
        tokenizer_vocab=600,
        overrides=TINY,
        vision_checkpoint=str(tower_file),
        pool=4,
        class_token=True,
    ).eval()
    model = module.questioner
    retriever = load_retriever(tower_file.parent / "retriever.ckpt")
    pixels = to_pixels(people(2), model.pixel_spec)
    with torch.no_grad():
        pooled = retriever.features.clip.vision_model(pixel_values=pixels).pooler_output  # final norm of the class
        features = model.image_features(model.tower_states(pixels))
        projector = model.hf.model.multi_modal_projector
        expected = projector(pooled[:, None])
    patches = questioner.questioner.tokens_per_image
    assert model.tokens_per_image == 1 + patches and features.shape[1] == model.tokens_per_image
    assert torch.allclose(features[:, :1], expected, atol=1e-5)
    network, settings = network_from_checkpoint(save(module, tmp_path / "cls.ckpt"))
    assert settings["class_token"] is True and network.questioner.tokens_per_image == 1 + patches
    images = [people(4), people(2), people(1)]
    expected_questions = model.generate(dialogues(), images, max_new_tokens=6)
    assert network.questioner.generate(dialogues(), images, max_new_tokens=6) == expected_questions

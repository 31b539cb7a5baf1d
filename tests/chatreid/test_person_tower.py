"""A retriever's image encoder as ChatReID's vision encoder: the processor's patches become the tower's images
again, the merger reads the retriever's patch features and identity embedding, the tower never trains,
checkpoints restore it."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from ireid.chatreid.checkpoint import read_checkpoint
from ireid.chatreid.inference import ChatReID
from ireid.chatreid.model import build_network
from ireid.chatreid.module import ChatReIDModule
from ireid.chatreid.person_tower import PersonTowerVisual
from ireid.core.person_vision import VisionTowerFile
from ireid.retriever.inference import load_retriever
from tests.chatreid.conftest import fit, stage_data


def crop(seed: int) -> Image.Image:
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 256, (128, 64, 3), dtype=np.uint8))


@pytest.fixture(scope="module")
def network(single_thread, tiny_world: Path, tower_file: Path):
    return build_network(1, data_dir=str(tiny_world), vision_checkpoint=str(tower_file))


def test_the_processor_patches_become_the_normalised_images_again(network, tower_file: Path):
    tower = VisionTowerFile.load(tower_file)
    images = [crop(0), crop(1)]
    batch = network.processor.image_processor(images=images, return_tensors="pt")
    visual = network.model.model.visual
    rebuilt = visual.images(batch["pixel_values"], batch["image_grid_thw"])
    mean, std = torch.tensor(tower.mean)[:, None, None], torch.tensor(tower.std)[:, None, None]
    expected = torch.stack([(torch.from_numpy(np.array(i)).permute(2, 0, 1) / 255 - mean) / std for i in images])
    torch.testing.assert_close(rebuilt, expected, atol=1e-5, rtol=0)


def test_each_image_token_reads_its_window_and_the_retrievers_identity_embedding(network, tower_file: Path):
    visual: PersonTowerVisual = network.model.model.visual
    batch = network.processor.image_processor(images=[crop(2)], return_tensors="pt")
    out = visual(batch["pixel_values"], batch["image_grid_thw"])
    retriever = load_retriever(tower_file.parent / "retriever.ckpt")
    with torch.no_grad():
        pixels = visual.images(batch["pixel_values"], batch["image_grid_thw"])
        tokens = retriever.features.image_tokens(pixels)  # the retriever's own projected tokens
        identity = retriever.features.encode_images(pixels)  # and the embedding it ranks people by
    gh, gw = visual.grid_hw
    grid = tokens[0, 1:].reshape(gh, gw, -1)
    merger = visual.merger
    window = grid[2:4, 0:2].reshape(1, -1, grid.shape[-1])  # window (1, 0): rows 2-3, columns 0-1
    expected = merger.mlp(merger.ln_q(window).flatten(1))[0] + merger.identity(merger.ln_identity(identity))[0]
    assert out.pooler_output.shape == (gh * gw // 4, network.model.config.text_config.hidden_size)
    torch.testing.assert_close(out.pooler_output[gw // 2], expected, atol=1e-5, rtol=1e-4)


def test_the_tower_is_the_files_and_stays_frozen(network, tower_file: Path):
    tower = VisionTowerFile.load(tower_file)
    state = network.model.model.visual.tower.state_dict()
    assert state.keys() == tower.state.keys() and all(torch.equal(state[k], tower.state[k]) for k in state)
    assert torch.equal(network.model.model.visual.projection.weight, tower.projection)
    trainable = {n for n, p in network.model.named_parameters() if p.requires_grad}
    assert not any(".visual.tower." in n or ".visual.projection." in n for n in trainable), "the tower never trains"
    assert any(".visual.merger." in n for n in trainable), "the merger learns to read it"
    network.model.train()
    assert not network.model.model.visual.tower.training


def test_an_image_of_another_size_is_a_clear_error(network):
    batch = network.processor.image_processor(images=[crop(3).resize((32, 64))], return_tensors="pt")
    with pytest.raises(ValueError, match="tower reads one 128x64 image"):
        network.model.model.visual(batch["pixel_values"], batch["image_grid_thw"])


def test_real_weights_keep_their_own_encoder(tiny_world: Path, tower_file: Path):
    with pytest.raises(ValueError, match="tiny models only"):
        build_network(1, "/nonexistent/Qwen2-VL", data_dir=str(tiny_world), vision_checkpoint=str(tower_file))


def test_stages_carry_the_tower_and_checkpoints_restore_it(
    single_thread, tiny_world: Path, conversations: Path, tower_file: Path, tmp_path: Path
):
    tower = VisionTowerFile.load(tower_file)
    ckpts: dict[int, Path] = {}
    for stage in (1, 2, 3):
        module = ChatReIDModule(
            stage, data_dir=str(tiny_world), init_from=str(ckpts[stage - 1]) if stage > 1 else None, lr=1e-2,
            warmup_fraction=0.0, vision_checkpoint=str(tower_file) if stage == 1 else None,
        )  # fmt: skip
        assert isinstance(module.model.model.visual, PersonTowerVisual), f"stage {stage}"
        merger_before = {k: v.clone() for k, v in module.model.model.visual.merger.state_dict().items()}
        ckpts[stage] = fit(module, stage_data(tiny_world, conversations, stage), 2, tmp_path / f"s{stage}.ckpt")
        state = read_checkpoint(ckpts[stage]).state
        for name, tensor in tower.state.items():
            assert torch.equal(state[f"model.visual.tower.{name}"], tensor), f"stage {stage}: {name}"
        merger_after = module.model.model.visual.merger.state_dict()
        moved = any(not torch.equal(merger_before[k], merger_after[k]) for k in merger_before)
        assert moved == (stage < 3), f"stage {stage}: the merger trains in stages 1 and 2, then stays frozen"
    model = ChatReID.from_checkpoint(ckpts[3])
    scores = model.match_confidence("standard", crop(4), [crop(5), crop(6)])
    again = ChatReID.from_checkpoint(ckpts[3]).match_confidence("standard", crop(4), [crop(5), crop(6)])
    assert len(scores) == 2 and np.allclose(scores, again)
    assert torch.equal(module.model.model.visual.merger.mlp[0].weight, model.model.model.visual.merger.mlp[0].weight)

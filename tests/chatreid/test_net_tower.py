"""An attribute net as ChatReID's vision encoder: the processor's patches become the net's crops again, each
attribute gets one image token from the net's readings, the net never trains, checkpoints restore it."""

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
from ireid.chatreid.net_tower import NetTowerVisual, value_words
from ireid.core.attribute_net import AttributeNet, annotated_images
from ireid.core.attribute_net_training import fit_attribute_net
from tests.chatreid.conftest import fit, stage_data


def crop(seed: int) -> Image.Image:
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 256, (128, 64, 3), dtype=np.uint8))


@pytest.fixture(scope="module")
def net_file(tiny_world: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    net = fit_attribute_net(*annotated_images(tiny_world, "train"), steps=2, batch_size=4)
    return net.save(tmp_path_factory.mktemp("net") / "attribute-net.pt")


@pytest.fixture(scope="module")
def network(single_thread, tiny_world: Path, net_file: Path):
    return build_network(3, data_dir=str(tiny_world), vision_checkpoint=str(net_file), merger_in_encoder=False)


def test_each_attribute_token_is_the_nets_reading_of_the_crop(network, net_file: Path):
    visual: NetTowerVisual = network.model.model.visual
    images = [crop(0), crop(1)]
    batch = network.processor.image_processor(images=images, return_tensors="pt")
    out = visual(batch["pixel_values"], batch["image_grid_thw"])
    net = AttributeNet.load(net_file)
    read = net.probabilities(images)  # the net on the crops as it reads them itself
    for a, name in enumerate(net.vocabulary):
        torch.testing.assert_close(out.last_hidden_state[:, a, : len(net.vocabulary[name])], read[name], atol=1e-5,
                                   rtol=1e-4)  # fmt: skip
    slots = visual.merger.slot.shape[0]
    assert out.pooler_output.shape == (2 * slots, network.model.config.text_config.hidden_size)
    first = out.last_hidden_state[1, 0] @ visual.merger.words[0] + visual.merger.slot[0]
    torch.testing.assert_close(out.pooler_output[slots], first)  # image 2, attribute 1
    torch.testing.assert_close(out.pooler_output[slots - 1], visual.merger.slot[-1])  # a window with no attribute


def test_a_value_starts_as_the_decoders_embedding_of_the_words_texts_use_for_it(network):
    visual: NetTowerVisual = network.model.model.visual
    vocabulary = visual.net.vocabulary
    embeddings = network.model.get_input_embeddings().weight
    tokenizer = network.processor.tokenizer
    a, v = list(vocabulary).index("upper_type"), vocabulary["upper_type"].index("t-shirt")
    ids = tokenizer(" T-shirt", add_special_tokens=False)["input_ids"]
    torch.testing.assert_close(visual.merger.words[a, v], embeddings[ids].mean(0))
    # an image the net reads as surely a T-shirt gives the decoder what a text saying "T-shirt" gives it
    readings = torch.zeros(1, len(vocabulary), visual.values)
    readings[0, a, v] = 1.0
    tokens = visual.merger(readings)
    torch.testing.assert_close(tokens[a], embeddings[ids].mean(0) + visual.merger.slot[a])


def test_value_words_are_the_texts_words_without_the_article():
    assert value_words("upper_type", "t-shirt") == "T-shirt"
    assert value_words("bag", "none") == "no bag"
    assert value_words("upper_colour", "blue") == "blue"
    assert value_words("tattoo", "dragon") == "dragon"  # outside the vocabulary: as written


def test_the_net_is_the_files_and_stays_frozen_while_the_merger_learns(network, net_file: Path):
    state = network.model.model.visual.net.state_dict()
    saved = AttributeNet.load(net_file).state_dict()
    assert state.keys() == saved.keys() and all(torch.equal(state[k], saved[k]) for k in state)
    trainable = {n for n, p in network.model.named_parameters() if p.requires_grad}
    assert not any(".visual.net." in n for n in trainable), "the net never trains"
    assert any(".visual.merger." in n for n in trainable), "the merger learns to read it (ICL's SFT, stage 3)"
    network.model.train()
    assert not network.model.model.visual.net.training


def test_an_image_of_another_size_is_a_clear_error(network):
    batch = network.processor.image_processor(images=[crop(3).resize((32, 64))], return_tensors="pt")
    with pytest.raises(ValueError, match="tower reads one 128x64 image"):
        network.model.model.visual(batch["pixel_values"], batch["image_grid_thw"])


def test_a_tuned_model_restores_the_net_from_its_checkpoint(
    single_thread, tiny_world: Path, conversations: Path, net_file: Path, tmp_path: Path
):
    module = ChatReIDModule(3, data_dir=str(tiny_world), lr=1e-2, warmup_fraction=0.0, merger_in_encoder=False,
                            vision_checkpoint=str(net_file))  # fmt: skip
    merger_before = {k: v.clone() for k, v in module.model.model.visual.merger.state_dict().items()}
    ckpt = fit(module, stage_data(tiny_world, conversations, 3), 2, tmp_path / "s3.ckpt")
    merger_after = module.model.model.visual.merger.state_dict()
    assert any(not torch.equal(merger_before[k], merger_after[k]) for k in merger_before)
    state = read_checkpoint(ckpt).state
    for name, tensor in AttributeNet.load(net_file).state_dict().items():
        assert torch.equal(state[f"model.visual.net.{name}"], tensor), name
    model = ChatReID.from_checkpoint(ckpt)
    assert isinstance(model.model.model.visual, NetTowerVisual)
    scores = model.match_confidence("standard", crop(4), [crop(5), crop(6)])
    again = ChatReID.from_checkpoint(ckpt).match_confidence("standard", crop(4), [crop(5), crop(6)])
    assert len(scores) == 2 and np.allclose(scores, again)

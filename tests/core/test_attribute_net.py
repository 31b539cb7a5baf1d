"""The attribute net: it learns to name what an image shows, round-trips through its file and speaks a vocabulary."""

from __future__ import annotations

import random
from pathlib import Path

import pytest
import torch
from PIL import Image

from ireid.app.cli import main
from ireid.core.attribute_net import AttributeNet, accuracy, fit_attribute_net
from ireid.core.checkpoints import save_torch_file

COLOURS = {"red": (200, 30, 30), "blue": (30, 30, 200), "green": (30, 160, 30)}


def shirts(count: int, seed: int) -> tuple[list[Image.Image], list[dict[str, str]]]:
    """Noisy 128×64 crops whose upper half is one colour (half of them red) and whose legs carry a bag or not."""
    rng = random.Random(seed)
    images, attributes = [], []
    for _ in range(count):
        colour = "red" if rng.random() < 0.5 else rng.choice(["blue", "green"])
        bag = rng.choice(["none", "backpack"])
        noise = torch.randint(0, 80, (128, 64, 3), generator=torch.Generator().manual_seed(rng.randrange(10**6)))
        pixels = noise.clone()
        pixels[20:60, 16:48] = torch.tensor(COLOURS[colour])
        if bag == "backpack":
            pixels[70:100, 4:14] = torch.tensor((240, 240, 240))
        images.append(Image.fromarray(pixels.to(torch.uint8).numpy()))
        attributes.append({"upper_colour": colour, "bag": bag})
    return images, attributes


def test_it_learns_each_attribute_well_beyond_the_commonest_value() -> None:
    train, test = shirts(96, seed=0), shirts(48, seed=1)
    net, training = fit_attribute_net(*train, steps=60, batch_size=32, lr=3e-3, progress=False)
    assert training["steps"] == 60 and training["last_loss"] < training["first_loss"] / 2
    scores = accuracy(net, *test)
    for name in ("upper_colour", "bag"):
        assert scores[name]["accuracy"] >= scores[name]["majority"] + 0.3, (name, scores[name])


def test_the_file_round_trips_and_a_foreign_file_is_refused_by_field(tmp_path: Path) -> None:
    images, attributes = shirts(8, seed=2)
    net, _ = fit_attribute_net(images, attributes, steps=2, batch_size=4, progress=False)
    path = net.save(tmp_path / "net.pt", {"note": "two steps"})
    again = AttributeNet.load(path)
    assert again.vocabulary == {"bag": ["backpack", "none"], "upper_colour": ["blue", "green", "red"]}
    for name, p in net.probabilities(images).items():
        assert torch.allclose(p, again.probabilities(images)[name], atol=1e-6)
    save_torch_file(tmp_path / "other.pt", {"format": "something else"})
    with pytest.raises(ValueError, match=r"other\.pt: field 'format'"):
        AttributeNet.load(tmp_path / "other.pt")


def test_eyes_speak_the_asked_vocabulary_in_its_order() -> None:
    """Values come in the vocabulary's order; one the net never learnt reads 0, one the vocabulary lacks is dropped
    (rows renormalised), and attributes the net does not name are left out."""
    net = AttributeNet({"bag": ["backpack", "none", "suitcase"], "hat": ["cap", "none"]})
    images, _ = shirts(3, seed=3)
    read = net.probabilities(images)
    eyes = net.eyes(images, {"bag": ["none", "handbag", "backpack"], "glasses": ["none", "sunglasses"]})
    assert list(eyes) == ["bag"]
    kept = read["bag"][:, [1, 0]]
    expected = torch.stack([kept[:, 0], torch.zeros(3), kept[:, 1]], dim=1) / kept.sum(1, keepdim=True)
    assert torch.allclose(eyes["bag"], expected, atol=1e-6)


def test_the_command_trains_saves_and_scores_on_a_world(tiny_world: Path, tmp_path: Path, capsys) -> None:
    out = tmp_path / "net.pt"
    assert main(["attribute-net", "fit", "--data", str(tiny_world), "--out", str(out), "--steps", "3"]) == 0
    printed = capsys.readouterr().out
    assert "val: mean" in printed and "3 steps" in printed
    assert main(["attribute-net", "test", "--data", str(tiny_world), "--net", str(out), "--out",
                 str(tmp_path / "test.json")]) == 0  # fmt: skip
    assert "gender:" in capsys.readouterr().out and (tmp_path / "test.json").exists()

"""The attribute net: it learns to name what an image shows, round-trips through its file and speaks a vocabulary."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest
import torch
from PIL import Image

from ireid.app.cli import main
from ireid.core.attribute_labels import IGNORE, attribute_labels
from ireid.core.attribute_net import AttributeNet, accuracy, annotated_images, crops, normalise
from ireid.core.attribute_net_training import AttributeNetModule, fit_attribute_net, net_from_checkpoint
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
    net = fit_attribute_net(*train, steps=60, batch_size=32, lr=3e-3)
    scores = accuracy(net, *test)
    for name in ("upper_colour", "bag"):
        assert scores[name]["accuracy"] >= scores[name]["majority"] + 0.3, (name, scores[name])


def test_the_file_round_trips_and_a_foreign_file_is_refused_by_field(tmp_path: Path) -> None:
    images, attributes = shirts(8, seed=2)
    net = fit_attribute_net(images, attributes, steps=2, batch_size=4)
    path = net.save(tmp_path / "net.pt", {"note": "two steps"})
    again = AttributeNet.load(path)
    assert again.vocabulary == {"bag": ["backpack", "none"], "upper_colour": ["blue", "green", "red"]}
    for name, p in net.probabilities(images).items():
        assert torch.allclose(p, again.probabilities(images)[name], atol=1e-6)
    save_torch_file(tmp_path / "other.pt", {"format": "something else"})
    with pytest.raises(ValueError, match=r"other\.pt: field 'format'"):
        AttributeNet.load(tmp_path / "other.pt")


def test_the_loss_is_the_cross_entropy_averaged_over_the_annotated_attributes() -> None:
    """An attribute no image of the batch annotates adds nothing; a missing value is ignored, not counted wrong."""
    module = AttributeNetModule({"bag": ["backpack", "none"], "hat": ["cap", "none"], "upper_colour": ["blue", "red"]})
    images, _ = shirts(3, seed=4)
    annotations = [{"bag": "none", "upper_colour": "red"}, {"bag": "backpack", "upper_colour": "purple"}, {}]
    targets = attribute_labels(module.net.vocabulary, annotations)
    assert targets.tolist() == [[1, IGNORE, 1], [0, IGNORE, IGNORE], [IGNORE, IGNORE, IGNORE]]
    module.eval()
    loss, logits = module.losses(normalise(crops(images)), targets)
    bag = -(logits["bag"][0].log_softmax(-1)[1] + logits["bag"][1].log_softmax(-1)[0]) / 2
    colour = -logits["upper_colour"][0].log_softmax(-1)[1]
    assert torch.allclose(loss, (bag + colour) / 2, atol=1e-6)


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
    """A Lightning run with TensorBoard logs and checkpoints beside the file; a second `fit` reuses the run."""
    out = tmp_path / "net.pt"
    fit = ["attribute-net", "fit", "--data", str(tiny_world), "--out", str(out), "--steps", "3"]
    assert main(fit) == 0
    printed = capsys.readouterr().out
    assert "val: mean" in printed and "3 steps" in printed
    run = tmp_path / "net-run"
    assert list(run.glob("**/events.out.tfevents.*")) and list(run.glob("**/checkpoints/last.ckpt"))
    checkpoint = net_from_checkpoint(json.loads((run / "done.json").read_text())["ckpt"])
    images = annotated_images(tiny_world, "test")[0][:2]
    for name, p in AttributeNet.load(out).probabilities(images).items():
        assert torch.allclose(p, checkpoint.probabilities(images)[name], atol=1e-6)
    assert main(fit) == 0 and "attribute net: reusing" in capsys.readouterr().out
    assert main(["attribute-net", "fit", "--data", str(tmp_path / "none"), "--out", str(out)]) == 2
    assert "none/train.manifest.json: no manifest" in capsys.readouterr().err
    save_torch_file(tmp_path / "foreign.ckpt", {"state_dict": {}, "hyper_parameters": {"lr": 1.0}})
    with pytest.raises(ValueError, match=r"foreign\.ckpt: field 'hyper_parameters.vocabulary' missing"):
        net_from_checkpoint(tmp_path / "foreign.ckpt")
    assert main(["attribute-net", "test", "--data", str(tiny_world), "--net", str(out), "--out",
                 str(tmp_path / "test.json")]) == 0  # fmt: skip
    assert "gender:" in capsys.readouterr().out and (tmp_path / "test.json").exists()

"""`ireid chatreid`: ask about a few image files, evaluate the Re-ID tasks, and clear errors on bad input."""

from __future__ import annotations

import json
from pathlib import Path

import lightning
import numpy as np
import pytest
import torch
from PIL import Image

from ireid.app.chatreid_cli import main
from ireid.chatreid.inference import ChatReID, pair_conversation
from ireid.retriever.module import RetrieverModule


@pytest.fixture
def two_images(tmp_path: Path) -> list[Path]:
    paths = []
    for i in range(2):
        path = tmp_path / f"person{i}.png"
        Image.fromarray(np.random.default_rng(i).integers(0, 256, (40, 20, 3), dtype=np.uint8)).save(path)
        paths.append(path)
    return paths


def test_ask_answers_a_question_about_two_images(stages, two_images, capsys):
    args = ["chatreid", "ask", "--model-ckpt", str(stages.ckpts[3]), "--images", *map(str, two_images)]
    assert main([*args, "--text", "Do they wear the same top?", "--max-new-tokens", "4", "--device", "cpu"]) == 0
    model = ChatReID.from_checkpoint(stages.ckpts[3])
    answer = model.ask([Image.open(p).convert("RGB") for p in two_images], "Do they wear the same top?", 4)
    assert isinstance(answer, str) and capsys.readouterr().out == answer + "\n"


def test_ask_refuses_missing_and_corrupt_images_before_loading_the_model(two_images, tmp_path, capsys):
    never_loaded = tmp_path / "model.ckpt"
    never_loaded.write_bytes(b"not read: the images are checked first")
    base = [
        "chatreid",
        "ask",
        "--model-ckpt",
        str(never_loaded),
        "--text",
        "Same person?",
        "--images",
        str(two_images[0]),
    ]
    assert main([*base, str(tmp_path / "missing.jpg")]) == 2
    assert f"image {tmp_path / 'missing.jpg'}: no such file" in capsys.readouterr().err
    corrupt = tmp_path / "corrupt.jpg"
    corrupt.write_bytes(b"\xff\xd8 definitely not a JPEG")
    assert main([*base, str(corrupt)]) == 2
    assert f"image {corrupt}: cannot be read as an image" in capsys.readouterr().err
    missing_model = ["--model-ckpt", str(tmp_path / "none.ckpt"), "--text", "x", "--images", *map(str, two_images)]
    assert main(["chatreid", "ask", *missing_model]) == 2
    assert f"--model-ckpt {tmp_path / 'none.ckpt'}: no such file" in capsys.readouterr().err


def test_match_confidence_is_yes_against_no_and_independent_of_batching(stages):
    model = ChatReID.from_checkpoint(stages.ckpts[3], batch_size=3)
    pixels = [np.random.default_rng(i).integers(0, 256, (128, 64, 3), dtype=np.uint8) for i in range(4)]
    people = [Image.fromarray(p) for p in pixels]
    batched = model.match_confidence("standard", people[0], people[1:])
    inputs = model._inputs([pair_conversation(model.prompts["standard"], people[0], people[2])])
    logits = model.model(**inputs).logits[0, -1]
    by_hand = torch.softmax(logits[[model.yes_id, model.no_id]], 0)[0]
    assert batched[1].item() == pytest.approx(by_hand.item(), abs=1e-5)
    model.batch_size = 1
    assert torch.allclose(model.match_confidence("standard", people[0], people[1:]), batched, atol=1e-5)
    assert model.prompts["text-to-image"].startswith("Does the image {candidate}")


@pytest.fixture(scope="module")
def retriever_ckpt(tiny_world: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An untrained tiny retriever saved as a Lightning checkpoint: the filter only needs to load and embed."""
    module = RetrieverModule(str(tiny_world), losses="sdm")
    path = tmp_path_factory.mktemp("retriever") / "retriever.ckpt"
    hparams = dict(module.hparams)
    torch.save({"state_dict": module.state_dict(), "hyper_parameters": hparams,
                "pytorch-lightning_version": lightning.__version__}, path)  # fmt: skip
    return path


def test_eval_prints_paper_style_tables_and_writes_json(stages, retriever_ckpt, tmp_path, capsys):
    out = tmp_path / "eval.json"
    args = ["chatreid", "eval", "--task", "standard", "text-to-image", "--model-ckpt", str(stages.ckpts[3]),
            "--retriever-ckpt", str(retriever_ckpt), "--data", str(stages.world), "--tau", "-1",
            "--max-candidates", "3", "--max-queries", "4", "--device", "cpu", "--out", str(out)]  # fmt: skip
    assert main(args) == 0
    printed = capsys.readouterr().out
    assert printed.count("Method") == 2 and "retriever only (filter)" in printed
    report = json.loads(out.read_text())
    for task in ("standard", "text-to-image"):
        result = report["tasks"][task]
        assert result["queries"] == 4 and result["mean_candidates"] == 3
        assert 0 <= result["model"]["mAP"] <= 100 and set(result["baseline"]) >= {"mAP", "R1"}
    assert report["tasks"]["standard"]["gallery"] == 6, "6 test people × 2 images, one of each is a query"
    bad = [*args[:3], "cloth-changing", *args[5:]]
    assert main(bad) == 2 and "more than one outfit" in capsys.readouterr().err

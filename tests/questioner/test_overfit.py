"""A short training on a handful of examples makes the tiny questioner ask exactly its target questions."""

from __future__ import annotations

import pytest
import torch
from PIL import Image

from ireid.core.protocols import Dialogue
from ireid.questioner.model import QuestionerModel, build_questioner_model
from tests.questioner.conftest import TINY


@pytest.mark.slow
def test_overfits_four_dialogues(tokenizer) -> None:
    torch.manual_seed(0)
    q = QuestionerModel(build_questioner_model("tiny", tokenizer, TINY), pool=2)
    q.train()
    colours = [(220, 30, 30), (30, 220, 30), (30, 30, 220), (200, 200, 30)]
    images = [[Image.new("RGB", (32, 64), c)] * 2 for c in colours]
    dialogues = [Dialogue("I saw a man."), Dialogue("I saw a woman."), Dialogue("I saw a man."), Dialogue("A child.")]
    dialogues[2].ask("Was he wearing a hat?", "No.")
    targets = [
        "Was he wearing a hat?",
        "What colour was her top?",
        "What was he holding?",
        "Did the child carry a bag?",
    ]
    optimiser = torch.optim.AdamW(q.parameters(), lr=3e-3)
    before = q.generate(dialogues, images, max_new_tokens=16)
    for _ in range(80):
        loss, _ = q.nll(dialogues, images, targets, [0] * 4)
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
    q.eval()
    assert before != targets and q.generate(dialogues, images, max_new_tokens=16) == targets

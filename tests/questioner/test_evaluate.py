"""The question scores of `python -m ireid.questioner.evaluate` on a worked example."""

from __future__ import annotations

import pytest

from ireid.core.protocols import Dialogue
from ireid.questioner.evaluate import question_scores


def test_question_scores_on_a_worked_example() -> None:
    asked_hat = Dialogue("I saw a woman in a red top.")
    asked_hat.ask("Did she have a hat?", "No.")
    dialogues = [asked_hat, Dialogue("I saw a man."), Dialogue("I saw a man.")]
    generated = ["What kind of hat did she wear?", "What colour were his shoes?", "Tell me more?"]
    targets = ["What colour were her shoes?", "What colour were his shoes?", "Did he carry a bag?"]
    scores = question_scores(dialogues, generated, targets)
    assert scores["parsed_share"] == pytest.approx(2 / 3), "the third reads as no attribute"
    assert scores["repeat_share"] == pytest.approx(1 / 3), "the hat was asked about"
    assert scores["stated_share"] == 0.0
    assert scores["target_attribute_share"] == pytest.approx(1 / 3) and scores["exact_share"] == pytest.approx(1 / 3)
    assert scores["distinct_questions"] == 3
    stated = question_scores([Dialogue("I saw a woman in a red top.")], ["What colour was her top?"], ["x"])
    assert stated["stated_share"] == 1.0
    with pytest.raises(ValueError, match="no questions"):
        question_scores([], [], [])

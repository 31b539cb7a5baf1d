"""The rule-based witness: each question type, unknowns in both `missing` modes, and consistency with its memory."""

from __future__ import annotations

from pathlib import Path

import pytest

from ireid.answerer import RuleBasedWitness, build_witness
from ireid.core.answers import UNKNOWN
from ireid.core.loader import load_records
from ireid.core.protocols import Witness
from ireid.core.vocabulary.parse import parse_description

MEMORY = (
    "I saw a woman in a red top. She looked young and had long blonde hair. She wore no hat. "
    "She had a backpack with her. I saw her in a park."
)


def answer(question: str, memory: str = MEMORY, **kw) -> str:
    return RuleBasedWitness(**kw).answer([question], [memory])[0]


@pytest.mark.parametrize(
    ("question", "possible"),
    [
        ("What colour was her top?", {"Her top was red.", "She wore a red top."}),  # descriptive
        ("Was she carrying a backpack?", {"Yes, she carried a backpack.", "Yes, she had a backpack with her."}),
        ("Was she wearing a cap?", {"No, she wore no hat.", "No, she had no hat on her head."}),  # corrective
        ("Was she bare-headed?", {"Yes, she wore no hat.", "Yes, she had no hat on her head."}),  # absent assumed
        ("Was her hair black?", {"No, she had blonde hair.", "No, her hair was blonde."}),
        ("What colour was her top? A) blue B) red C) green D) black", {"Her top was red.", "She wore a red top."}),
        (
            "What colour was her top? A) blue B) white C) green D) black",
            {"None of those. Her top was red.", "None of those. She wore a red top."},
        ),
        ("Where did you see her?", {"I saw her in a park.", "The woman was in a park.", "She was walking in a park."}),
    ],
)
def test_answers_each_question_type_from_memory(question: str, possible: set[str]) -> None:
    assert answer(question) in possible


def test_unknowns_and_the_short_question_rule() -> None:
    assert answer("Hello there, how are you?") == UNKNOWN  # no attribute
    assert answer("Was she young?") == UNKNOWN  # 14 characters: too short to ask, although remembered
    assert answer("Would you say she was young?") in {"Yes, she looked young.", "Yes, she was a young woman."}
    assert answer("What was she holding?") == UNKNOWN  # not in memory
    assert answer("What was she holding?", missing="absent") in {
        "She was holding nothing.",
        "She had nothing in her hands.",
    }
    assert answer("What colour were her shoes?", missing="absent") == UNKNOWN  # shoes cannot be absent


def test_memory_without_gender_speaks_of_the_person() -> None:
    said = answer("What did the person have on their head?", memory="The person had a cap on their head.")
    assert said in {"The person wore a cap.", "The person had a cap on their head."}


def test_deterministic_per_seed_question_and_memory() -> None:
    questions = [f"What colour was her top{'?' * i}" for i in range(1, 30)]
    first = RuleBasedWitness(seed=0).answer(questions, [MEMORY] * len(questions))
    assert RuleBasedWitness(seed=0).answer(questions, [MEMORY] * len(questions)) == first
    assert RuleBasedWitness(seed=1).answer(questions, [MEMORY] * len(questions)) != first
    assert len(set(first)) == 2  # both statement templates are used


def test_sub_caption_memory_answers_only_what_it_holds() -> None:
    memory = "His shoes were white. He carried a handbag."
    witness = RuleBasedWitness()
    said = witness.answer(["What colour were his shoes?", "What kind of bag, if any, was he carrying?"], [memory] * 2)
    assert parse_description(said[0])["shoes_colour"] == "white"
    assert parse_description(said[1])["bag"] == "handbag"
    assert witness.answer(["Can you describe his headwear?"], [memory]) == [UNKNOWN]


def test_every_annotated_question_of_the_tiny_world_is_answered_consistently(tiny_world: Path) -> None:
    """For every QA: the answer states the record's value; yes/no answers have the annotation's polarity."""
    witness = RuleBasedWitness()
    checked = 0
    for split in ("train", "val", "test"):
        for record in load_records(tiny_world, split):
            questions = [qa.question for qa in record.qas]
            answers = witness.answer(questions, [record.fine_description] * len(questions))
            for qa, said in zip(record.qas, answers, strict=True):
                assert parse_description(said)[qa.attribute] == record.attributes[qa.attribute], (qa.question, said)
                if qa.qtype == "yes_no":
                    assert said.split(",")[0] == qa.answer.split(",")[0], (qa.question, said)
                checked += 1
    assert checked > 500


def test_factory_builds_rule_witnesses() -> None:
    plain, absent = build_witness("rule"), build_witness("rule-absent", seed=3)
    assert isinstance(plain, Witness) and isinstance(absent, RuleBasedWitness)
    assert (plain.missing, absent.missing, absent.seed) == ("unknown", "absent", 3)


def test_bad_arguments_are_errors() -> None:
    with pytest.raises(ValueError, match="missing"):
        RuleBasedWitness(missing="guess")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="2 questions but 1 memories"):
        RuleBasedWitness().answer(["What colour was her top?"] * 2, [MEMORY])

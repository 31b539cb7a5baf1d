"""Answer clean-up: what of a witness answer reaches the retrieval text."""

from __future__ import annotations

import pytest

from ireid.core.answers import MIN_QUESTION_CHARS, UNKNOWN, answer_for_short_question, clean_answer


@pytest.mark.parametrize(
    ("answer", "cleaned"),
    [
        ("Yes, she wore a cap.", "She wore a cap."),
        ("No, his top was red.", "His top was red."),
        ("yes. She wore a cap.", "She wore a cap."),
        ("NO. The bag was black.", "The bag was black."),
        ("B) a backpack. He carried a backpack.", "A backpack. He carried a backpack."),
        ("(C) white sneakers.", "White sneakers."),
        ("D. a long skirt.", "A long skirt."),
        ("Option A: short black hair.", "Short black hair."),
        ("option b a cap.", "A cap."),
        ("Yes, A) a red jacket.", "A red jacket."),
        ("I don't know.", ""),
        ("I don't know. He wore boots.", "He wore boots."),
        ("He wore boots. I do not remember his bag. I'm not sure about the hat.", "He wore boots."),
        ("He wore boots. His bag was", "He wore boots."),
        ("He wore boots", "He wore boots."),  # a lone unterminated sentence is the whole fact: kept
        ("Yes, he wore boots", "He wore boots."),
        ('He said "hello." He wore a hat.', 'He said "hello." He wore a hat.'),
        ("  he   wore\n boots.  ", "He wore boots."),
        ("Is it? Maybe a hat! He wore", "Is it? Maybe a hat!"),
    ],
)
def test_clean_answer(answer: str, cleaned: str) -> None:
    assert clean_answer(answer) == cleaned


@pytest.mark.parametrize("answer", ["", "   \n", "Yes.", "No", "yes,", "A)", "I do not know", "Not sure."])
def test_answers_without_a_fact_clean_to_nothing(answer: str) -> None:
    assert clean_answer(answer) == ""


@pytest.mark.parametrize(
    "answer",
    ["A man in a red coat.", "Nobody else was there.", "Notably tall.", "Yesterday's jacket.", "B.C. on his shirt."],
)
def test_words_that_only_look_like_labels_stay(answer: str) -> None:
    assert clean_answer(answer) == answer


def test_cleaning_is_idempotent() -> None:
    for answer in ["Yes, she wore a cap.", "B) a backpack. He carried a backpack.", "He wore boots. His bag was"]:
        once = clean_answer(answer)
        assert clean_answer(once) == once


def test_short_questions_get_unknown() -> None:
    assert MIN_QUESTION_CHARS == 15
    assert answer_for_short_question("Hat colour?") == UNKNOWN == "I don't know."
    assert answer_for_short_question("  " + "x" * 14 + "  ") == UNKNOWN  # length counts without the padding
    assert answer_for_short_question("x" * 15) is None
    assert answer_for_short_question("What colour was the hat?") is None


def test_yes_no_replies_are_read_from_their_first_word() -> None:
    from ireid.core.answers import parse_yes_no

    replies = ("Yes.", " yes, it does", '"No"', "NO", "no way")
    assert [parse_yes_no(r) for r in replies] == [True, True, False, False, False]
    assert [parse_yes_no(r) for r in ("", "Maybe.", "Yesterday", "I think yes", "Not sure")] == [None] * 5

"""Witness answers made fit for the retrieval text.

The retriever reads the initial description followed by the answers, so an answer should add facts about the
person and nothing else: "Yes,"/"No," and option letters carry no appearance, "I don't know" sentences carry none,
and a sentence cut off by the generation limit is half a fact. The same clean-up serves the LLM witness and the
looking-forward targets, so a model is trained on the text it is later shown.
"""

from __future__ import annotations

import re

MIN_QUESTION_CHARS = 15
UNKNOWN = "I don't know."

_YES_NO = re.compile(r"^(?:yes|no)(?:[,.!;:]\s*|$)", re.IGNORECASE)
# An option label of a multiple-choice answer: "A)", "(B)", "C.", "D:" or "Option A" (optionally followed by ")", "."
# or ":"), letters A-D in either case, and followed by a space or the end, so "A man ..." and "B.C." stay.
_OPTION = re.compile(r"^(?:option\s+[a-d][).:]?|\([a-d]\)|[a-d][).:])(?:\s+|$)", re.IGNORECASE)
# A sentence ends at . ! or ?, possibly followed by a closing quote or bracket.
_SENTENCE_BREAK = re.compile(r"(?:(?<=[.!?])|(?<=[.!?][\"'”’)]))\s+")
_TERMINATED = re.compile(r"[.!?][\"'”’)]?$")
_UNCERTAIN = re.compile(
    r"\bI\s+(?:don['’]?t|do\s+not)\s+(?:know|remember|recall)\b"
    r"|\bI\s+(?:can['’]?t|cannot)\s+(?:remember|recall|tell)\b"
    r"|\bnot\s+sure\b",
    re.IGNORECASE,
)


def answer_for_short_question(question: str) -> str | None:
    """UNKNOWN for a question too short to mean anything (under MIN_QUESTION_CHARS), else None: ask the witness."""
    return UNKNOWN if len(question.strip()) < MIN_QUESTION_CHARS else None


def clean_answer(answer: str) -> str:
    """The part of an answer worth appending to the retrieval text; "" when nothing is left.

    In order: whitespace collapses; a leading "Yes"/"No" followed by , . ! ; : (or alone) goes, then a leading
    option label (`_OPTION`; the option's text stays: "B) a backpack." -> "A backpack."); text after the last sentence
    end (. ! ? maybe followed by a closing quote or bracket) goes when at least one sentence ends before it (a
    generation cut mid-sentence); sentences saying the witness does not know, remember or is not sure go
    (`_UNCERTAIN`); the first letter is capitalised. An answer that is one unterminated sentence is kept and given a
    full stop ("He wore boots" -> "He wore boots."): it is more likely a complete short reply than a cut one, and
    dropping it would lose the only fact. So every non-empty result ends a sentence.
    """
    text = " ".join(answer.split())
    text = _OPTION.sub("", _YES_NO.sub("", text), count=1)
    sentences = [s for s in _SENTENCE_BREAK.split(text) if s]
    if len(sentences) > 1 and not _TERMINATED.search(sentences[-1]):
        sentences.pop()
    kept = [s for s in sentences if not _UNCERTAIN.search(s)]
    if not kept:
        return ""
    text = " ".join(kept)
    if not _TERMINATED.search(text):
        text += "."
    return text[0].upper() + text[1:]


_LEADING_WORD = re.compile(r"^\W*([A-Za-z]+)")


def parse_yes_no(reply: str) -> bool | None:
    """A model's Yes/No reply: True for "Yes...", False for "No...", None for anything else (to be counted)."""
    match = _LEADING_WORD.match(reply)
    word = match.group(1).lower() if match else ""
    return True if word == "yes" else False if word == "no" else None

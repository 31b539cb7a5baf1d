"""Usable sentences out of a language model's free reply: what every generation pipeline (ICL's RDA, the
Interactive-PEDES construction) checks before a reply becomes data.

Small models answer a "one per line" request with numbered lists, bullets, a paragraph, or a sentence cut off by
the generation limit; these helpers keep the sentences and drop the rest, so the caller can count what it dropped.
"""

from __future__ import annotations

import re

from ireid.core.llm import Message

_MARKER = re.compile(r"^\s*(?:[-*•]+|\d+\s*[.):]|\(\d+\)|rewrite\s*\d*\s*:|sentence\s*\d*\s*:)\s*", re.IGNORECASE)
_SENTENCE = re.compile(r"(?<=[.!?])\s+")


def user_turn(prompt: str) -> list[Message]:
    """A one-message conversation for `ChatLLM.chat`."""
    return [{"role": "user", "content": prompt}]


def sentences(text: str) -> list[str]:
    """The text's own sentences."""
    return [s.strip() for s in _SENTENCE.split(text) if s.strip()]


def reply_items(reply: str) -> list[str]:
    """The items of a "one per line" reply: its non-empty lines, list markers and enclosing quotes stripped, spaces
    collapsed."""
    lines = [" ".join(_MARKER.sub("", raw).split()).strip(" \"'") for raw in reply.splitlines()]
    return [line for line in lines if line]


def reply_lines(reply: str, max_words: int) -> list[str]:
    """A reply's usable sentences, each once: lines with list markers stripped, split into sentences (small models
    answer in a paragraph); a fragment cut off by the generation limit, questions and overlong sentences are out."""
    out: list[str] = []
    lines = reply_items(reply)
    for index, line in enumerate(lines):
        parts = sentences(line)
        for position, part in enumerate(parts):
            last = index == len(lines) - 1 and position == len(parts) - 1
            if part[-1] not in ".!?":
                if last and len(parts) > 1:
                    continue  # a paragraph cut off mid-sentence
                part += "."
            if not part.endswith("?") and len(part.split()) <= max_words:
                out.append(part)
    return list(dict.fromkeys(out))

"""A witness simulated by a chat LLM prompted with LLaVA-ReID's answerer instruction (Table 10).

The memory is the fine-grained description told to the model in the second person ("I saw" -> "You saw"), the
question follows, and the model replies greedily within `max_new_tokens` (40, as in the paper). Questions under 15
characters are answered "I don't know." without asking the model. Replies are only trimmed to their first line:
cleaning them for retrieval ("Yes,"/"No," prefixes, cut sentences) is the dialogue harness's job.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Literal

from ireid.core.answers import UNKNOWN, answer_for_short_question
from ireid.core.llm import ChatLLM, Message
from ireid.core.prompts import read_prompt

PROMPT_FILE = "witness.txt"
MEMORY_SLOT = "<context>"
QUESTION_SLOT = "<question>"
QUESTION_MARK = "Question:"
Layout = Literal["user", "system"]
LAYOUTS: tuple[str, ...] = ("user", "system")

_I_SAW = re.compile(r"\bI saw\b")
_ANSWER_PREFIX = re.compile(r"^\s*answer\s*:\s*", re.IGNORECASE)


def load_prompt(name: str = PROMPT_FILE) -> str:
    """A prompt file of this package without its first-line citation comment."""
    return read_prompt("ireid.answerer", name)


def check_prompt(template: str) -> str:
    missing = [slot for slot in (MEMORY_SLOT, QUESTION_SLOT) if slot not in template]
    if missing:
        raise ValueError(f"witness prompt lacks the slot(s) {', '.join(missing)}")
    return template


def second_person(memory: str) -> str:
    """The memory as told to the witness: "I saw a man ..." -> "You saw a man ..."."""
    return _I_SAW.sub("You saw", memory)


def fill_prompt(template: str, question: str, memory: str) -> str:
    """The answerer instruction with the (second-person) memory and the question in their slots."""
    return template.replace(MEMORY_SLOT, second_person(memory).strip()).replace(QUESTION_SLOT, question.strip())


def witness_conversation(template: str, question: str, memory: str, layout: Layout = "user") -> list[Message]:
    """The chat the model answers.

    "user" (the paper's): the filled instruction as one user message. "system": the instruction and memory as the
    system message, and the part from "Question:" on as the user message.
    """
    prompt = fill_prompt(template, question, memory)
    if layout == "user":
        return [{"role": "user", "content": prompt}]
    head, mark, tail = prompt.rpartition(QUESTION_MARK)
    if not mark:
        raise ValueError(f'layout "system" needs a "{QUESTION_MARK}" line in the witness prompt')
    return [{"role": "system", "content": head.strip()}, {"role": "user", "content": (mark + tail).strip()}]


def first_line(reply: str) -> str:
    """The reply's first non-empty line, without an echoed "Answer:"; UNKNOWN for an empty reply."""
    for line in reply.splitlines():
        line = _ANSWER_PREFIX.sub("", line).strip()
        if line:
            return line
    return UNKNOWN


class LLMWitness:
    """Answers with a chat LLM (local or behind an OpenAI-compatible server); one model call per batch."""

    def __init__(
        self, llm: ChatLLM, max_new_tokens: int = 40, prompt: str | None = None, layout: Layout = "user"
    ) -> None:
        if max_new_tokens < 1:
            raise ValueError(f"max_new_tokens must be at least 1, got {max_new_tokens}")
        if layout not in LAYOUTS:
            raise ValueError(f"layout must be one of {LAYOUTS}, got {layout!r}")
        self.llm = llm
        self.max_new_tokens = max_new_tokens
        self.template = check_prompt(prompt if prompt is not None else load_prompt())
        self.layout = layout

    def answer(self, questions: Sequence[str], memories: Sequence[str]) -> list[str]:
        if len(questions) != len(memories):
            raise ValueError(f"{len(questions)} questions but {len(memories)} memories")
        answers = [answer_for_short_question(q) for q in questions]
        asked = [i for i, a in enumerate(answers) if a is None]
        conversations = [witness_conversation(self.template, questions[i], memories[i], self.layout) for i in asked]
        replies = self.llm.chat(conversations, self.max_new_tokens) if conversations else []
        if len(replies) != len(asked):
            raise RuntimeError(f"the chat LLM returned {len(replies)} replies for {len(asked)} conversations")
        for i, reply in zip(asked, replies, strict=True):
            answers[i] = first_line(reply)
        return [a if a is not None else UNKNOWN for a in answers]

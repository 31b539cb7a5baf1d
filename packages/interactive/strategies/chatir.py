"""`chatir`: an instruction-following LLM asks the next question, prompted with example dialogues (ChatIR)."""

from __future__ import annotations

import re
from collections.abc import Sequence

from ireid.core.llm import ChatLLM
from ireid.core.prompts import read_prompt
from ireid.core.protocols import Dialogue
from ireid.core.records import Record
from ireid.core.reply_text import reply_items
from ireid.core.rounds import RoundContext

_WITNESS = re.compile(r"^\s*witness\s*:", re.IGNORECASE)
_PREFIX = re.compile(r"^\s*(?:next question|question|you|q)\s*\d*\s*[:\-]\s*", re.IGNORECASE)
_AFTER_QUESTION = re.compile(r"(?<=\?)\s+")


def dialogue_lines(dialogue: Dialogue) -> str:
    """LLaVA-ReID Table 9's conversation lines: "Witness: <initial>", then "You: <q>" / "Witness: <a>"."""
    lines = [f"Witness: {dialogue.initial}"]
    for turn in dialogue.turns:
        lines += [f"You: {turn.question}", f"Witness: {turn.answer}"]
    return "\n".join(lines)


def example_dialogues(records: Sequence[Record], count: int, turns: int = 3) -> str:
    """`count` annotated dialogues (initial description and the first `turns` Q&A pairs) from training records."""
    chosen = [r for r in records if r.initial_description and len(r.qas) >= turns][:count]
    examples = []
    for record in chosen:
        dialogue = Dialogue(record.initial_description)
        for qa in record.qas[:turns]:
            dialogue.ask(qa.question, qa.answer)
        examples.append(dialogue_lines(dialogue))
    return "\n\n".join(examples)


def _question_lines(reply: str) -> list[str]:
    """The reply's lines, list markers and "Question:"-style prefixes stripped, a line holding several questions split
    after each "?"; lines the model wrote for the witness are skipped."""
    lines: list[str] = []
    for item in reply_items(reply):
        if _WITNESS.match(item):
            continue
        for part in _AFTER_QUESTION.split(item):  # "1. Was he tall? 2. Was he old?" on one line
            lines += [_PREFIX.sub("", piece).strip(" \"'") for piece in reply_items(part)]
    return [line for line in lines if line]


def reply_questions(reply: str) -> list[str]:
    """Every question of a reply (each up to its "?"), in order and each once: what a "one per line" request for
    several questions gets back from a small model, numbered, bulleted or run together."""
    return list(dict.fromkeys(line[: line.index("?") + 1] for line in _question_lines(reply) if "?" in line))


def first_question(reply: str) -> str:
    """The reply's first question (`reply_questions`); falls back to its first other non-empty line when nothing ends
    in "?"."""
    questions = reply_questions(reply)
    if questions:
        return questions[0]
    lines = _question_lines(reply)
    return lines[0] if lines else ""


class ChatIR:
    name = "chatir"
    uses_ground_truth = False

    def __init__(self, llm: ChatLLM, examples: str, max_new_tokens: int = 48, prompt: str | None = None):
        self.llm, self.examples, self.max_new_tokens = llm, examples, max_new_tokens
        self.template = prompt if prompt is not None else read_prompt("ireid.interactive", "chatir.txt")

    def prompt(self, dialogue: Dialogue) -> str:
        return self.template.format(examples=self.examples, dialogue=dialogue_lines(dialogue))

    def ask(self, ctx: RoundContext) -> list[str | None]:
        conversations = [[{"role": "user", "content": self.prompt(d)}] for d in ctx.dialogues]
        replies = self.llm.chat(conversations, max_new_tokens=self.max_new_tokens)
        return [first_question(reply) or None for reply in replies]

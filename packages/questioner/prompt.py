"""The questioner's prompt, in the layout of LLaVA-ReID Table 9.

The user turn is `<candidates><dialog>` then one instruction variant:

    [Candidate Person] <image>\\n[Similar Persons]#0 <image>\\n#1 <image>\\n...
    [Conversation] Witness: <initial>You: <q>\\n Witness: <a>\\n...
    <instruction>

exactly as the table's code writes it (no separator after the initial description, a space before each
"Witness:" answer). Each `<image>` stands for one image's tokens, expanded when the prompt is encoded. The turn is
wrapped in the ChatML format LLaVA-OneVision-Qwen2 was trained on; the target is the next question.
"""

from __future__ import annotations

import random
from functools import cache

from ireid.core.prompts import read_prompt
from ireid.core.protocols import Dialogue

PACKAGE = "ireid.questioner"
IMAGE = "<image>"
IM_START, IM_END = "<|im_start|>", "<|im_end|>"


@cache
def instructions() -> tuple[str, ...]:
    """The three instruction variants of Table 9 (blank-line separated in `prompts/instructions.txt`)."""
    text = read_prompt(PACKAGE, "instructions.txt")
    return tuple(block.strip() for block in text.split("\n\n") if block.strip())


@cache
def system_message() -> str:
    return read_prompt(PACKAGE, "system.txt")


def candidates_text(num_images: int) -> str:
    """`<candidates>`: the candidate person, then `#i` for each similar person (i from 0, as in Table 9)."""
    if num_images < 1:
        raise ValueError(f"the prompt needs at least one image (the candidate person), got {num_images}")
    return f"[Candidate Person] {IMAGE}\n[Similar Persons]" + "".join(f"#{i} {IMAGE}\n" for i in range(num_images - 1))


def dialog_text(dialogue: Dialogue) -> str:
    """`<dialog>`: the witness's initial description, then every question and its answer."""
    return f"[Conversation] Witness: {dialogue.initial}" + "".join(
        f"You: {turn.question}\n Witness: {turn.answer}\n" for turn in dialogue.turns
    )


def user_text(dialogue: Dialogue, num_images: int, instruction: str) -> str:
    return f"{candidates_text(num_images)}{dialog_text(dialogue)}\n{instruction}"


def render_chat(user: str, system: str | None) -> str:
    """The ChatML prompt up to the assistant's turn (LLaVA-OneVision's `qwen_1_5` conversation format)."""
    head = f"{IM_START}system\n{system}{IM_END}\n" if system is not None else ""
    return f"{head}{IM_START}user\n{user}{IM_END}\n{IM_START}assistant\n"


def build_prompt(dialogue: Dialogue, num_images: int, variant: int = 0, system: str | None = None) -> str:
    """The whole prompt text for one dialogue shown `num_images` images, with instruction `variant`."""
    options = instructions()
    if not 0 <= variant < len(options):
        raise ValueError(f"instruction variant {variant} out of range: there are {len(options)}")
    return render_chat(user_text(dialogue, num_images, options[variant]), system)


class InstructionChooser:
    """Which instruction variant each prompt gets: random from a seeded generator (training) or a fixed one."""

    def __init__(self, fixed: int | None = None, seed: int = 0):
        count = len(instructions())
        if fixed is not None and not 0 <= fixed < count:
            raise ValueError(f"instruction variant {fixed} out of range: there are {count}")
        self.fixed = fixed
        self._rng = random.Random(seed)

    def __call__(self) -> int:
        return self.fixed if self.fixed is not None else self._rng.randrange(len(instructions()))

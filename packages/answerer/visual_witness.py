"""A witness that answers from an image of the person instead of a description: for data sets that have no
fine-grained description to remember (CUHK-PEDES, ICFG-PEDES, RSTPReid, or any converted set).

The model is any `VisionLanguageModel`: a ChatReID model (tiny, tuned by `ireid answerer build-visual-sft` and a
ChatReID stage-3 fit, or real Qwen2-VL weights) or a vision server. It is asked `prompts/visual_witness.txt`
(LLaVA-ReID's Table 10 with the image as the memory) with the image first. The rules of the text witness hold:
questions under 15 characters get "I don't know." without a model call, the reply is cut to its first line, and
an empty reply is "I don't know.".
"""

from __future__ import annotations

from collections.abc import Sequence

from PIL import Image

from ireid.answerer.llm_witness import QUESTION_SLOT, first_line, load_prompt
from ireid.core.answers import UNKNOWN, answer_for_short_question
from ireid.core.protocols import VisionLanguageModel

PROMPT_FILE = "visual_witness.txt"


def visual_prompt(question: str, template: str | None = None) -> str:
    """The instruction with the question in its slot (the image goes before it)."""
    template = template if template is not None else load_prompt(PROMPT_FILE)
    if QUESTION_SLOT not in template:
        raise ValueError(f"visual witness prompt lacks the slot {QUESTION_SLOT}")
    return template.replace(QUESTION_SLOT, question.strip())


class VisualWitness:
    """Answers each question about its image; one model call per batch. Its memories are images (`memory`)."""

    memory = "image"

    def __init__(self, vlm: VisionLanguageModel, max_new_tokens: int = 40, prompt: str | None = None) -> None:
        if max_new_tokens < 1:
            raise ValueError(f"max_new_tokens must be at least 1, got {max_new_tokens}")
        self.vlm = vlm
        self.max_new_tokens = max_new_tokens
        self.template = prompt if prompt is not None else load_prompt(PROMPT_FILE)
        visual_prompt("?", self.template)  # the slot is checked once, here

    def answer(self, questions: Sequence[str], memories: Sequence[Image.Image]) -> list[str]:
        if len(questions) != len(memories):
            raise ValueError(f"{len(questions)} questions but {len(memories)} images")
        answers = [answer_for_short_question(q) for q in questions]
        asked = [i for i, a in enumerate(answers) if a is None]
        prompts = [visual_prompt(questions[i], self.template) for i in asked]
        replies = self.vlm.reply(prompts, [memories[i] for i in asked], self.max_new_tokens) if asked else []
        if len(replies) != len(asked):
            raise RuntimeError(f"the vision model returned {len(replies)} replies for {len(asked)} questions")
        for i, reply in zip(asked, replies, strict=True):
            answers[i] = first_line(reply)
        return [a if a is not None else UNKNOWN for a in answers]

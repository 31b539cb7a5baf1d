"""One image, one question, one answer, in ChatReID's conversation format (`ireid.chatreid.conversations` checks
it): the SFT samples that teach a ChatReID model to answer about an image, written by ICL's SFT builder (anchor and
VQA pairs) and the visual witness's (its Q&A), so the ChatReID training module tunes on both alike."""

from __future__ import annotations

from typing import Any


def image_question_conversation(stage: int, task: str, image_key: str, prompt: str, answer: str) -> dict[str, Any]:
    """The image first, then the prompt, then the answer: the order the model is asked in at test time."""
    messages = [
        {"role": "user", "content": [{"type": "image", "index": 0}, {"type": "text", "text": prompt}]},
        {"role": "assistant", "content": [{"type": "text", "text": answer}]},
    ]
    return {"stage": stage, "task": task, "images": [image_key], "messages": messages, "answer_positions": []}

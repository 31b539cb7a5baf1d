"""A trained ChatReID model answering questions: match confidences for evaluation, free-form answers for users.

A match confidence is read from the answer's first token, as the paper ranks candidates by response confidence:
the probability of "Yes" renormalised against "No", P(Yes) / (P(Yes) + P(No)), after a one-to-one matching
question that pairs the query with one gallery image. The questions are stage 2's one-to-one matching prompts
(paper Fig. 4; `prompts/eval_image_pair.txt`, `eval_text_pair.txt`), the form in which the model learned to
answer Yes or No: image queries of every task (standard, cloth-changing, visible-infrared) get the
image-to-image one, text queries the text-to-image one. The task prompts of §3.1.3 ask for a choice among many
gallery images and have no Yes/No form.

The model comes from `model.load_network`: a checkpoint file alone restores it, without Lightning or the
training module, so this is the one surface for using a trained model.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from PIL import Image
from torch import Tensor
from transformers import BatchFeature, ProcessorMixin

from ireid.chatreid.encoding import template_messages
from ireid.chatreid.eval_tasks import TASKS
from ireid.chatreid.image_sizes import SizeRule
from ireid.chatreid.model import ChatReIDNetwork, load_network
from ireid.chatreid.person_tower import PersonTowerVisual
from ireid.core.prompts import read_prompt

_PLACEHOLDER = re.compile(r"\{(query|candidate|text)\}")

Prompt = tuple[list[dict[str, Any]], list[Image.Image]]  # messages awaiting an answer, the images they show in order


def task_prompt(task: str) -> str:
    """The one-to-one matching prompt asked for a task's query-candidate pairs."""
    if task not in TASKS:
        raise ValueError(f"unknown task {task!r}; expected one of {', '.join(TASKS)}")
    return read_prompt("ireid.chatreid", "eval_text_pair.txt" if task == "text-to-image" else "eval_image_pair.txt")


def pair_conversation(template: str, query: Image.Image | str, candidate: Image.Image) -> Prompt:
    """One user turn from a prompt template: `{query}`/`{candidate}` become image items, `{text}` the query text."""
    content: list[dict[str, Any]] = []
    images: list[Image.Image] = []
    position = 0
    for match in _PLACEHOLDER.finditer(template):
        if match.start() > position:
            content.append({"type": "text", "text": template[position : match.start()]})
        name = match.group(1)
        if name == "text":
            if not isinstance(query, str):
                raise ValueError("this prompt asks about a text query, but the query is an image")
            content.append({"type": "text", "text": query})
        else:
            image = candidate if name == "candidate" else query
            if not isinstance(image, Image.Image):
                raise ValueError("this prompt shows the query image, but the query is a text")
            content.append({"type": "image", "index": len(images)})
            images.append(image)
        position = match.end()
    if position < len(template):
        content.append({"type": "text", "text": template[position:]})
    return [{"role": "user", "content": content}], images


def first_token(processor: ProcessorMixin, word: str) -> int:
    """The id of the token `word` starts with, which decides a Yes/No answer."""
    ids = processor.tokenizer.encode(word, add_special_tokens=False)
    if not ids:
        raise ValueError(f"the answer word {word!r} encodes to no token")
    return ids[0]


def _single_image_turn(prompt: str, image: Image.Image | None) -> Prompt:
    """One user turn: the image (when there is one), then the prompt."""
    if not prompt.strip():
        raise ValueError("the prompt is empty")
    content: list[dict[str, Any]] = [{"type": "image", "index": 0}] if image is not None else []
    content.append({"type": "text", "text": prompt.strip()})
    return [{"role": "user", "content": content}], [] if image is None else [image]


class ChatReID:
    """Qwen2-VL with its processor, in eval mode, for scoring and answering (no gradients anywhere)."""

    def __init__(
        self,
        model: torch.nn.Module,
        processor: ProcessorMixin,
        *,
        batch_size: int = 8,
        size_rule: SizeRule | None = None,
        yes: str = "Yes",
        no: str = "No",
    ):
        self.model = model.eval()
        self.processor = processor
        self.batch_size = batch_size
        visual = getattr(getattr(model, "model", None), "visual", None)
        # a person tower reads one input size: every image is resized to it unless a rule is given
        self.size_rule = size_rule or SizeRule(
            exact_hw=visual.image_hw if isinstance(visual, PersonTowerVisual) else None
        )
        self.yes_id, self.no_id = first_token(processor, yes), first_token(processor, no)
        if self.yes_id == self.no_id:
            raise ValueError(f"{yes!r} and {no!r} start with the same token; their probabilities cannot be told apart")
        self.prompts = {task: task_prompt(task) for task in TASKS}

    @classmethod
    def from_checkpoint(
        cls, path: Path | str, device: str | torch.device = "cpu", dtype: torch.dtype | None = None, **kwargs: Any
    ) -> ChatReID:
        """A trained model from its checkpoint file alone (read with `weights_only=True`); `kwargs` as `__init__`."""
        return cls.from_network(load_network(path, dtype=dtype), device, **kwargs)

    @classmethod
    def from_network(
        cls, network: ChatReIDNetwork, device: str | torch.device | None = None, **kwargs: Any
    ) -> ChatReID:
        """Answer with a network in hand (e.g. the one a `ChatReIDModule` trains); it is put in eval mode."""
        model = network.model if device is None else network.model.to(device)
        return cls(model, network.processor, **kwargs)

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    def _inputs(self, conversations: Sequence[Prompt]) -> BatchFeature:
        """Left-padded prompts ending in the assistant header, so the last position predicts the answer."""
        texts = [
            self.processor.apply_chat_template(template_messages(m), tokenize=False, add_generation_prompt=True)
            for m, _ in conversations
        ]
        images = [self.size_rule(image) for _, shown in conversations for image in shown]
        inputs = self.processor(
            text=texts, images=images or None, padding=True, padding_side="left", return_tensors="pt"
        ).to(self.device)
        if "pixel_values" in inputs:
            inputs["pixel_values"] = inputs["pixel_values"].to(self.model.dtype)
        return inputs

    @torch.no_grad()
    def yes_probability(self, conversations: Sequence[Prompt]) -> Tensor:
        """P(Yes) / (P(Yes) + P(No)) for the first answer token of each conversation; float32 [N] on CPU."""
        out = []
        for start in range(0, len(conversations), self.batch_size):
            inputs = self._inputs(conversations[start : start + self.batch_size])
            logits = self.model(**inputs, logits_to_keep=1).logits[:, -1].float()
            out.append(logits[:, [self.yes_id, self.no_id]].softmax(-1)[:, 0].cpu())
        return torch.cat(out) if out else torch.zeros(0)

    def match_confidence(self, task: str, query: Image.Image | str, candidates: Sequence[Image.Image]) -> Tensor:
        """How confidently the model says each candidate shows the query's person (the task's prompt)."""
        if task not in self.prompts:
            raise ValueError(f"unknown task {task!r}; expected one of {', '.join(TASKS)}")
        return self.yes_probability([pair_conversation(self.prompts[task], query, c) for c in candidates])

    def judge(self, prompts: Sequence[str], images: Sequence[Image.Image]) -> list[bool | None]:
        """Yes where P(Yes) / (P(Yes) + P(No)) of the first answer token is above one half (a
        `VisionLanguageModel`, as ICL's anchor localisation asks it); the image comes before the prompt."""
        probabilities = self.yes_probability([_single_image_turn(p, i) for p, i in zip(prompts, images, strict=True)])
        return [bool(p > 0.5) for p in probabilities.tolist()]

    @torch.no_grad()
    def reply(self, prompts: Sequence[str], images: Sequence[Image.Image | None], max_new_tokens: int) -> list[str]:
        """Greedy answers to each prompt about its image (or about nothing, where it is None), in batches."""
        turns = [_single_image_turn(p, i) for p, i in zip(prompts, images, strict=True)]
        replies: list[str] = []
        for start in range(0, len(turns), self.batch_size):
            inputs = self._inputs(turns[start : start + self.batch_size])
            generated = self.model.generate(**inputs, max_new_tokens=max_new_tokens, do_sample=False)
            new_tokens = generated[:, inputs["input_ids"].shape[1] :]
            replies += [t.strip() for t in self.processor.tokenizer.batch_decode(new_tokens, skip_special_tokens=True)]
        return replies

    @torch.no_grad()
    def ask(self, images: Sequence[Image.Image], text: str, max_new_tokens: int = 64) -> str:
        """A free-form, greedy answer to `text` about the images. The question comes first, then the images as
        "Gallery image N:" lines, the way the Re-ID instructions list a gallery, so answers name images that way."""
        if not text.strip():
            raise ValueError("the question is empty")
        content: list[dict[str, Any]] = [{"type": "text", "text": text.strip()}]
        for i in range(len(images)):
            content += [{"type": "text", "text": f"\nGallery image {i + 1}: "}, {"type": "image", "index": i}]
        inputs = self._inputs([([{"role": "user", "content": content}], list(images))])
        generated = self.model.generate(**inputs, max_new_tokens=max_new_tokens, do_sample=False)
        answer = generated[0, inputs["input_ids"].shape[1] :]
        return self.processor.tokenizer.decode(answer, skip_special_tokens=True).strip()

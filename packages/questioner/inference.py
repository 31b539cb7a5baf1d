"""The trained questioner behind the `Questioner` protocol, and the jointly trained selector of a checkpoint.

    questioner = LlavaReidQuestioner.from_checkpoint("runs/questioner/synthetic/joint/checkpoints/best.ckpt")
    questions = questioner.ask(dialogues, candidates)  # candidates[i][0] is dialogue i's candidate person
    selector = load_selector("runs/questioner/synthetic/joint/checkpoints/best.ckpt")  # None for a warm-up one
    picked = selector.select(dialogue_emb, candidate_embs, mask, questioner.num_images)  # rank-1 kept first

Checkpoints load with `weights_only=True` and carry the tokenizer and architecture, so a tiny model rebuilds
without its data set; a real model (and its 4-bit base) is rebuilt from the `source` it was trained from.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from PIL import Image

from ireid.core.protocols import Dialogue
from ireid.questioner.module import QuestionerModule, selector_from_state
from ireid.selector.model import Selector


class LlavaReidQuestioner:
    """Next questions of a trained questioner for batches of dialogues (the `Questioner` protocol): greedy, or with
    `candidates` > 1 the best of that many beams not already asked in the dialogue.

    Each dialogue comes with its candidate images: the first is the candidate person (the best match so far), the
    others the similar persons, in the order the prompt lists them. Prompts use the instruction variant the
    module validates with (`eval_instruction`, 0 by default).
    """

    def __init__(
        self,
        module: QuestionerModule,
        batch_size: int = 16,
        max_new_tokens: int | None = None,
        candidates: int = 1,
    ):
        if batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {batch_size}")
        self.module = module.eval()
        self.batch_size = batch_size
        self.max_new_tokens = max_new_tokens
        self.candidates = candidates

    @classmethod
    def from_checkpoint(
        cls,
        path: str | Path,
        device: str | torch.device | None = None,
        batch_size: int = 16,
        max_new_tokens: int | None = None,
        candidates: int = 1,
        **changes: Any,
    ) -> LlavaReidQuestioner:
        """Restore a `QuestionerModule` checkpoint (warm-up or joint); `changes` override stored settings
        (e.g. `eval_instruction=1`). Unquantised models move to `device` (default: CUDA when available)."""
        module = QuestionerModule.restore(path, **changes)
        if module.hparams.quantization is None:
            module.to(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        return cls(module, batch_size, max_new_tokens, candidates)

    @property
    def num_images(self) -> int:
        """How many candidate images the questioner was trained to look at (c)."""
        return int(self.module.hparams.num_images)

    @property
    def selector(self) -> Selector | None:
        """The jointly trained selector, for a joint checkpoint."""
        return self.module.selector

    def ask(self, dialogues: Sequence[Dialogue], candidates: Sequence[Sequence[Image.Image]]) -> list[str]:
        if len(dialogues) != len(candidates):
            raise ValueError(f"{len(dialogues)} dialogues but {len(candidates)} candidate lists")
        for i, images in enumerate(candidates):
            if not images:
                raise ValueError(f"dialogue {i}: no candidate images (the first one is the candidate person)")
        questions: list[str] = []
        for start in range(0, len(dialogues), self.batch_size):
            end = start + self.batch_size
            questions += self.module.generate(
                dialogues[start:end], candidates[start:end], self.max_new_tokens, self.candidates
            )
        return questions


def load_selector(path: str | Path, device: str | torch.device = "cpu") -> Selector | None:
    """The selector trained jointly with the questioner (None for a warm-up checkpoint), in eval mode.

    Reads only the selector's weights and architecture; the language model is not built.
    """
    if not Path(path).is_file():
        raise FileNotFoundError(f"{path}: questioner checkpoint not found")
    checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    settings = checkpoint.get("hyper_parameters", {})
    if settings.get("stage") != "joint":
        return None
    if settings.get("selector") is None:
        raise ValueError(f"{path}: a joint checkpoint without field 'hyper_parameters.selector'")
    return selector_from_state(settings["selector"], checkpoint["state_dict"]).to(device).eval()

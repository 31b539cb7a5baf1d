"""The trained questioner behind the `Questioner` protocol, and the jointly trained selector of a checkpoint.

    questioner = LlavaReidQuestioner.from_checkpoint("runs/questioner/synthetic/joint/checkpoints/best.ckpt")
    questions = questioner.ask(dialogues, candidates)  # candidates[i][0] is dialogue i's candidate person
    selector = load_selector("runs/questioner/synthetic/joint/checkpoints/best.ckpt")  # None for a warm-up one
    picked = selector.select(dialogue_emb, candidate_embs, mask, questioner.num_images)  # rank-1 kept first

Checkpoints load with `weights_only=True` and carry the tokenizer and architecture, so a tiny model rebuilds
without its data set; a real model (and its 4-bit base) is rebuilt from the `source` it was trained from. The
networks are rebuilt here with `ireid.questioner.model.build_network`, the builder training uses, without the
LightningModule: serving a questioner does not import Lightning.
"""

from __future__ import annotations

import inspect
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from PIL import Image

from ireid.core.protocols import Dialogue
from ireid.questioner.model import NETWORK_SETTINGS, QuestionerNetwork, build_network, load_weights
from ireid.questioner.tokenizer import TOKENIZER_KEY, source_tokenizer, write_tokenizer_files
from ireid.selector.inference import read_checkpoint, selector_from_state
from ireid.selector.model import Selector

# What inference reads of a checkpoint's hyper-parameters, and the value when a checkpoint lacks one: the defaults
# of `build_network` and of `QuestionerModule` (tests/questioner/test_inference.py checks that they agree).
INFERENCE_SETTINGS: dict[str, Any] = {
    **{name: inspect.signature(build_network).parameters[name].default for name in NETWORK_SETTINGS},
    "tokenizer": None,
    "tokenizer_vocab": 2048,
    "stage": "warmup",
    "selector": None,
    "num_images": 4,
    "eval_instruction": 0,
    "max_new_tokens": 96,
}


def read_questioner_checkpoint(path: str | Path) -> dict[str, Any]:
    """A `QuestionerModule` checkpoint as a dict (`weights_only=True`); errors name the file."""
    return read_checkpoint(path, what="questioner checkpoint")


def inference_settings(checkpoint: dict[str, Any], path: str | Path, **changes: Any) -> dict[str, Any]:
    """`INFERENCE_SETTINGS` as the checkpoint's hyper-parameters set them, then as `changes` override them.

    A change may name an inference setting or any stored hyper-parameter (a training one is then without effect).
    """
    stored = checkpoint.get("hyper_parameters") or {}
    unknown = sorted(set(changes) - set(INFERENCE_SETTINGS) - set(stored))
    if unknown:
        raise ValueError(f"{path}: unknown setting(s) {unknown}; expected one of {sorted(INFERENCE_SETTINGS)}")
    settings = {name: stored.get(name, default) for name, default in INFERENCE_SETTINGS.items()}
    settings.update({name: value for name, value in changes.items() if name in INFERENCE_SETTINGS})
    if settings["stage"] not in ("warmup", "joint"):
        raise ValueError(
            f"{path}: field 'hyper_parameters.stage' must be 'warmup' or 'joint', got {settings['stage']!r}"
        )
    if settings["stage"] == "joint" and settings["selector"] is None:
        raise ValueError(f"{path}: a joint checkpoint without field 'hyper_parameters.selector'")
    return settings


def network_from_checkpoint(path: str | Path, **changes: Any) -> tuple[QuestionerNetwork, dict[str, Any]]:
    """The networks of a checkpoint, rebuilt from what it stores (no data set or selector file), its weights loaded,
    in eval mode, on the CPU; and the `inference_settings` they were built with."""
    checkpoint = read_questioner_checkpoint(path)
    settings = inference_settings(checkpoint, path, **changes)
    with tempfile.TemporaryDirectory(prefix="ireid-questioner-") as tmp:
        if TOKENIZER_KEY in checkpoint:
            settings["tokenizer"] = str(write_tokenizer_files(checkpoint[TOKENIZER_KEY], tmp))
        tokenizer = source_tokenizer(settings["source"], settings["tokenizer"], settings["tokenizer_vocab"])
        network = build_network(
            tokenizer,
            **{name: settings[name] for name in NETWORK_SETTINGS},
            selector=settings["selector"] if settings["stage"] == "joint" else None,
        )
    load_weights(network, checkpoint["state_dict"], str(path), lora=settings["lora"] is not None)
    return network.eval(), settings


class LlavaReidQuestioner:
    """Next questions of a trained questioner for batches of dialogues (the `Questioner` protocol): greedy, or with
    `candidates` > 1 the best of that many beams not already asked in the dialogue (and, where none is new, of
    `retry_candidates` beams of a wider search, then with `open_fallback` the likeliest open question).

    Each dialogue comes with its candidate images: the first is the candidate person (the best match so far), the
    others the similar persons, in the order the prompt lists them. Prompts use the instruction variant the
    questioner was validated with (`eval_instruction`, 0 by default).
    """

    def __init__(
        self,
        network: QuestionerNetwork,
        num_images: int = 4,
        eval_instruction: int = 0,
        max_new_tokens: int = 96,
        batch_size: int = 16,
        candidates: int = 1,
        retry_candidates: int = 0,
        open_fallback: bool = False,
    ):
        if batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {batch_size}")
        self.network = network.eval()
        self._num_images = num_images
        self.eval_instruction = eval_instruction
        self.max_new_tokens = max_new_tokens
        self.batch_size = batch_size
        self.candidates = candidates
        self.retry_candidates = retry_candidates
        self.open_fallback = open_fallback

    @classmethod
    def from_checkpoint(
        cls,
        path: str | Path,
        device: str | torch.device | None = None,
        batch_size: int = 16,
        max_new_tokens: int | None = None,
        candidates: int = 1,
        retry_candidates: int = 0,
        open_fallback: bool = False,
        **changes: Any,
    ) -> LlavaReidQuestioner:
        """Rebuild a `QuestionerModule` checkpoint (warm-up or joint); `changes` override stored settings
        (e.g. `eval_instruction=1`). Unquantised models move to `device` (default: CUDA when available).
        `max_new_tokens` defaults to the checkpoint's."""
        network, settings = network_from_checkpoint(path, **changes)
        if settings["quantization"] is None:
            network.to(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        return cls(
            network,
            num_images=int(settings["num_images"]),
            eval_instruction=settings["eval_instruction"],
            max_new_tokens=max_new_tokens or settings["max_new_tokens"],
            batch_size=batch_size,
            candidates=candidates,
            retry_candidates=retry_candidates,
            open_fallback=open_fallback,
        )

    @property
    def num_images(self) -> int:
        """How many candidate images the questioner was trained to look at (c)."""
        return self._num_images

    @property
    def selector(self) -> Selector | None:
        """The jointly trained selector, for a joint checkpoint."""
        return self.network.selector

    def ask(self, dialogues: Sequence[Dialogue], candidates: Sequence[Sequence[Image.Image]]) -> list[str]:
        if len(dialogues) != len(candidates):
            raise ValueError(f"{len(dialogues)} dialogues but {len(candidates)} candidate lists")
        for i, images in enumerate(candidates):
            if not images:
                raise ValueError(f"dialogue {i}: no candidate images (the first one is the candidate person)")
        questions: list[str] = []
        for start in range(0, len(dialogues), self.batch_size):
            end = start + self.batch_size
            questions += self.network.questioner.generate(
                dialogues[start:end],
                candidates[start:end],
                self.eval_instruction,
                self.max_new_tokens,
                self.candidates,
                self.retry_candidates,
                self.open_fallback,
            )
        return questions


def load_selector(path: str | Path, device: str | torch.device = "cpu") -> Selector | None:
    """The selector trained jointly with the questioner (None for a warm-up checkpoint), in eval mode.

    Reads only the selector's weights and architecture; the language model is not built.
    """
    checkpoint = read_questioner_checkpoint(path)
    settings = checkpoint.get("hyper_parameters", {})
    if settings.get("stage") != "joint":
        return None
    if settings.get("selector") is None:
        raise ValueError(f"{path}: a joint checkpoint without field 'hyper_parameters.selector'")
    return selector_from_state(settings["selector"], checkpoint["state_dict"]).to(device).eval()

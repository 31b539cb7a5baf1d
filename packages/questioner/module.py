"""LLaVA-ReID questioner training (§4.2, Appendix C.2): a warm-up stage on the retriever's top-4, then joint
training with the selector.

`warmup`: the context is the round's top `num_images` candidates in rank order; loss = NLL of the look-forward
target question. `joint`: a `Selector` (from a `SelectorWarmup` checkpoint) scores the round's top-k_t candidate
embeddings given the dialogue embedding; `Selector.sample(..., mode="hard")` at τ annealed 1.0 → 0.1 gives a k-hot
of `num_images` candidates; only those images are encoded, their tokens multiplied by their k-hot entry (1.0 in the
forward pass, the relaxed gradient backwards), so the questioner's NLL trains the selector, which has no loss of
its own. The joint stage starts from the warm-up checkpoint (`init_checkpoint`).

Checkpoints carry what rebuilding needs without the data: the hyper-parameters, the tiny model's tokenizer files
and the selector's architecture. With LoRA only the trainable weights are stored; the frozen base comes from
`source` again.
"""

from __future__ import annotations

import inspect
import math
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import lightning as L
import torch
from torch import Tensor

from ireid.core.protocols import Dialogue
from ireid.questioner.model import ImageInput, LoraSettings, QuestionerModel, build_questioner_model
from ireid.questioner.prompt import InstructionChooser, system_message
from ireid.questioner.tokenizer import resolve_tokenizer, tokenizer_files, write_tokenizer_files
from ireid.selector.gumbel import TemperatureSchedule
from ireid.selector.model import Selector

SELECTOR_ARGS = ("dim", "layers", "heads", "ffn", "dropout", "input_dim", "keep_first", "norm_first")
SELECTOR_PREFIX = "selector."  # where both SelectorWarmup and this module keep the selector's weights
TOKENIZER_KEY = "questioner_tokenizer"


def load_warmup_selector(path: str | Path) -> tuple[Selector, dict[str, Any]]:
    """The `Selector` of a `SelectorWarmup` checkpoint and its constructor arguments.

    Read from the file rather than through `SelectorWarmup.load_from_checkpoint`: inside LightningCLI's
    instantiation, a nested module's `save_hyperparameters` would record the questioner's arguments instead.
    """
    if not Path(path).is_file():
        raise FileNotFoundError(f"{path}: selector checkpoint not found (field 'selector_checkpoint')")
    checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    stored = checkpoint.get("hyper_parameters", {})
    missing = [name for name in SELECTOR_ARGS if name not in stored]
    if missing:
        raise ValueError(f"{path}: not a SelectorWarmup checkpoint, field 'hyper_parameters' lacks {missing}")
    settings = {name: stored[name] for name in SELECTOR_ARGS}
    return selector_from_state(settings, checkpoint["state_dict"]), settings


def selector_from_state(settings: dict[str, Any], state: dict[str, Tensor]) -> Selector:
    """A `Selector` built from its arguments, with the `selector.*` weights of a Lightning state dict."""
    selector = Selector(**settings)
    selector.load_state_dict({k[len(SELECTOR_PREFIX) :]: v for k, v in state.items() if k.startswith(SELECTOR_PREFIX)})
    return selector


class QuestionerModule(L.LightningModule):
    """The questioner (and in `joint` the selector) as a LightningModule.

    Args:
        source: "tiny" or a LLaVA-OneVision checkpoint (directory or cached hub id).
        tokenizer: tiny only: a tokenizer directory, or a data set folder whose questioner tokenizer is used
            (trained on its text and the prompts once, `ireid.questioner.tokenizer`); `tokenizer_vocab` its size.
        overrides: config overrides for the factory (tiny sizes: `text_config`, `vision_config`).
        quantization: "nf4" for QLoRA (4-bit NF4, double quantisation; needs `lora`).
        dtype: the weights' dtype when loading (e.g. "bfloat16"); also the 4-bit compute dtype.
        lora: {r, alpha, dropout, target_modules}; None trains every weight (tiny models).
        gradient_checkpointing: recompute activations in the backward pass.
        stage: "warmup" or "joint".
        init_checkpoint: joint: the warm-up questioner checkpoint to start from.
        selector_checkpoint: joint: the `SelectorWarmup` checkpoint; `selector` then records its architecture.
        selector: the `Selector` constructor arguments (filled in from `selector_checkpoint`).
        num_images: c, the candidate images shown per prompt.
        pool: average-pooling window over the projected patch grid.
        system_prompt: start the chat with the system message (`prompts/system.txt`).
        instruction: the Table 9 variant of training prompts; None draws one per example (seeded).
        eval_instruction: the variant of validation and generation prompts.
        max_new_tokens: cap of generated questions.
        lr, selector_lr, weight_decay, warmup_ratio, scheduler: AdamW, linear warm-up then cosine (or constant).
        tau_start, tau_end, tau_steps: the selector's Gumbel temperature schedule (steps default: the whole fit).
        seed: of the instruction draws.
    """

    def __init__(
        self,
        source: str = "tiny",
        tokenizer: str | None = None,
        tokenizer_vocab: int = 2048,
        overrides: dict[str, Any] | None = None,
        quantization: Literal["nf4"] | None = None,
        dtype: str | None = None,
        lora: dict[str, Any] | None = None,
        gradient_checkpointing: bool = False,
        stage: Literal["warmup", "joint"] = "warmup",
        init_checkpoint: str | None = None,
        selector_checkpoint: str | None = None,
        selector: dict[str, Any] | None = None,
        num_images: int = 4,
        pool: int = 2,
        system_prompt: bool = True,
        instruction: int | None = None,
        eval_instruction: int = 0,
        max_new_tokens: int = 96,
        lr: float = 1e-5,
        selector_lr: float = 1e-4,
        weight_decay: float = 0.0,
        warmup_ratio: float = 0.02,
        scheduler: Literal["cosine", "constant"] = "cosine",
        tau_start: float = 1.0,
        tau_end: float = 0.1,
        tau_steps: int | None = None,
        seed: int = 0,
    ):
        super().__init__()
        if stage not in ("warmup", "joint"):
            raise ValueError(f"stage must be 'warmup' or 'joint', got {stage!r}")
        if scheduler not in ("cosine", "constant"):
            raise ValueError(f"scheduler must be 'cosine' or 'constant', got {scheduler!r}")
        if num_images < 1:
            raise ValueError(f"num_images must be at least 1, got {num_images}")
        self.save_hyperparameters()
        base_tokenizer = None
        if source == "tiny":
            if tokenizer is None:
                raise ValueError("source 'tiny' needs field 'tokenizer' (a tokenizer directory or a data set folder)")
            base_tokenizer = resolve_tokenizer(tokenizer, tokenizer_vocab)
        self._tokenizer_files = tokenizer_files(base_tokenizer) if base_tokenizer is not None else None
        built = build_questioner_model(
            source,
            base_tokenizer,
            overrides,
            quantization,
            dtype,
            LoraSettings.from_dict(lora) if lora is not None else None,
            gradient_checkpointing,
        )
        self.questioner = QuestionerModel(built, pool, system_message() if system_prompt else None)
        self.selector: Selector | None = None
        if stage == "joint":
            self._build_selector(selector_checkpoint, selector)
        self.strict_loading = lora is None  # LoRA checkpoints hold the trainable weights only
        self.train_instruction = InstructionChooser(instruction, seed)
        self.temperature: TemperatureSchedule | None = None
        if init_checkpoint is not None:
            self.load_weights(init_checkpoint, questioner_only=True)
        self.train()  # the factory returns eval-mode models; Lightning keeps the modes it finds at fit start

    def _build_selector(self, checkpoint: str | None, settings: dict[str, Any] | None) -> None:
        if checkpoint is not None:
            self.selector, settings = load_warmup_selector(checkpoint)
            self.hparams["selector"] = settings
        elif settings is not None:
            self.selector = Selector(**settings)
        else:
            raise ValueError("stage 'joint' needs field 'selector_checkpoint' (a SelectorWarmup checkpoint)")
        if self.hparams.num_images <= int(self.selector.keep_first):
            raise ValueError(f"num_images={self.hparams.num_images} leaves the selector nothing to choose")

    # -------------------------------------------------------------------------------------------- checkpoints

    def _trainable_names(self) -> set[str]:
        return {name for name, p in self.named_parameters() if p.requires_grad}

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        if self.hparams.lora is not None:
            keep = self._trainable_names()
            checkpoint["state_dict"] = {k: v for k, v in checkpoint["state_dict"].items() if k in keep}
        if self._tokenizer_files is not None:
            checkpoint[TOKENIZER_KEY] = self._tokenizer_files

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        self._check_weights(checkpoint["state_dict"], "checkpoint", questioner_only=False)

    def _check_weights(self, state: dict[str, Tensor], where: str, questioner_only: bool) -> None:
        """Saved names must be this model's, and every weight that trains (or, without LoRA, every weight) saved."""
        own = set(self.state_dict())
        unknown = sorted(set(state) - own)
        needed = self._trainable_names() if self.hparams.lora is not None else own
        if questioner_only:
            needed = {name for name in needed if not name.startswith("selector.")}
        missing = sorted(needed - set(state))
        if unknown or missing:
            raise ValueError(
                f"{where}: field 'state_dict' does not fit this questioner: unknown {unknown[:3]}, missing "
                f"{missing[:3]} ({len(unknown)} unknown, {len(missing)} missing; do source, overrides and lora match?)"
            )

    def load_weights(self, path: str | Path, questioner_only: bool = False) -> None:
        """Load a checkpoint of this module's weights (`questioner_only`: a warm-up checkpoint, no selector)."""
        if not Path(path).is_file():
            raise FileNotFoundError(f"{path}: questioner checkpoint not found")
        state = torch.load(path, map_location="cpu", weights_only=True)["state_dict"]
        self._check_weights(state, str(path), questioner_only)
        self.load_state_dict(state, strict=False)

    @classmethod
    def restore(cls, path: str | Path, **changes: Any) -> QuestionerModule:
        """The module of a checkpoint, rebuilt from what it stores (no data set or selector file needed)."""
        if not Path(path).is_file():
            raise FileNotFoundError(f"{path}: questioner checkpoint not found")
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
        accepted = set(inspect.signature(cls.__init__).parameters) - {"self"}
        settings = {k: v for k, v in checkpoint.get("hyper_parameters", {}).items() if k in accepted}
        settings.update(init_checkpoint=None, selector_checkpoint=None, **changes)
        if settings.get("stage") == "joint" and settings.get("selector") is None:
            raise ValueError(f"{path}: a joint checkpoint without field 'hyper_parameters.selector'")
        with tempfile.TemporaryDirectory(prefix="ireid-questioner-") as tmp:
            if TOKENIZER_KEY in checkpoint:
                settings["tokenizer"] = str(write_tokenizer_files(checkpoint[TOKENIZER_KEY], tmp))
            module = cls(**settings)
        module._check_weights(checkpoint["state_dict"], str(path), questioner_only=False)
        module.load_state_dict(checkpoint["state_dict"], strict=False)
        return module.eval()

    # ---------------------------------------------------------------------------------------------- context

    def choose_images(self, batch: dict[str, Any], sample: bool) -> tuple[list[list[ImageInput]], list[Tensor] | None]:
        """The images each prompt shows (rank order) and, when sampled, their straight-through k-hot weights."""
        if self.selector is None:
            return [row[: self.hparams.num_images] for row in batch["images"]], None
        c = self.hparams.num_images
        args = (batch["dialogue"], batch["candidates"], batch["mask"], c)
        if sample:
            khot = self.selector.sample(*args, temperature=self.current_temperature(), mode="hard")
            picks = [row.nonzero().flatten() for row in khot.detach() > 0.5]
            weights: list[Tensor] | None = [khot[r, p] for r, p in enumerate(picks)]
        else:
            picks = list(self.selector.select(*args).sort(dim=1).values)
            weights = None
        images = [[row[i] for i in p.tolist()] for row, p in zip(batch["images"], picks, strict=True)]
        return images, weights

    def current_temperature(self) -> float:
        if self.temperature is None:
            hp = self.hparams
            steps = hp.tau_steps or (self.trainer.estimated_stepping_batches if self._trainer is not None else 1)
            self.temperature = TemperatureSchedule(max(1, int(steps)), hp.tau_start, hp.tau_end)
        return self.temperature(self.global_step)

    # ----------------------------------------------------------------------------------------------- steps

    def training_step(self, batch: dict[str, Any], batch_idx: int) -> Tensor:
        images, weights = self.choose_images(batch, sample=True)
        variants = [self.train_instruction() for _ in images]
        loss, tokens = self.questioner.nll(batch["dialogues"], images, batch["questions"], variants, weights)
        self.log("train/loss", loss, prog_bar=True, batch_size=tokens)
        if self.selector is not None:
            self.log("train/tau", self.current_temperature())
        return loss

    def validation_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        images, _ = self.choose_images(batch, sample=False)
        variants = [self.hparams.eval_instruction] * len(images)
        loss, tokens = self.questioner.nll(batch["dialogues"], images, batch["questions"], variants)
        self.log("val/loss", loss, prog_bar=True, batch_size=tokens)  # token-weighted mean over the epoch

    def generate(
        self,
        dialogues: Sequence[Dialogue],
        images: Sequence[Sequence[ImageInput]],
        max_new_tokens: int | None = None,
        candidates: int = 1,
    ) -> list[str]:
        hp = self.hparams
        return self.questioner.generate(
            dialogues, images, hp.eval_instruction, max_new_tokens or hp.max_new_tokens, candidates
        )

    def configure_optimizers(self) -> Any:
        hp = self.hparams
        groups = [
            {
                "params": [p for p in self.questioner.parameters() if p.requires_grad],
                "lr": hp.lr,
                "weight_decay": hp.weight_decay,
            }
        ]
        if self.selector is not None:
            groups.append({"params": list(self.selector.parameters()), "lr": hp.selector_lr, "weight_decay": 0.0})
        optimizer = torch.optim.AdamW(groups)
        total = max(1, int(self.trainer.estimated_stepping_batches))
        warmup = math.ceil(hp.warmup_ratio * total)

        def factor(step: int) -> float:
            if step < warmup:
                return (step + 1) / warmup
            if hp.scheduler == "constant":
                return 1.0
            return 0.5 * (1.0 + math.cos(math.pi * min(1.0, (step - warmup) / max(1, total - warmup))))

        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, factor)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}

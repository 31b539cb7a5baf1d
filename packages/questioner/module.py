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
`source` again. The networks are built by `ireid.questioner.model.build_network`, which inference
(`ireid.questioner.inference`) uses as well, so a checkpoint is served without this module or Lightning.
"""

from __future__ import annotations

import inspect
import math
import tempfile
from pathlib import Path
from typing import Any, Literal

import lightning as L
import torch
from torch import Tensor

from ireid.core.person_vision import VisionTowerFile
from ireid.questioner.inference import read_questioner_checkpoint
from ireid.questioner.model import (
    TOWER_CACHE_MB,
    ImageInput,
    build_network,
    check_weights,
    load_person_tower,
    load_weights,
    trainable_names,
)
from ireid.questioner.prompt import InstructionChooser
from ireid.questioner.tokenizer import TOKENIZER_KEY, source_tokenizer, tokenizer_files, write_tokenizer_files
from ireid.questioner.tower_cache import TowerCache
from ireid.selector.gumbel import TemperatureSchedule
from ireid.selector.inference import read_selector_checkpoint
from ireid.selector.model import Selector


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
        vision_checkpoint: a vision tower file (`ireid.core.person_vision`, e.g. a trained retriever's image
            encoder): the frozen vision tower of a tiny model; `person_vision` then records its architecture.
        person_vision: the person tower's architecture (filled in from `vision_checkpoint`, or else from
            `init_checkpoint`).
        class_token: each image also gives the tower's class token, projected, as its first token.
        tower_cache_mb: memory for a frozen tower's states by image, so a candidate shown again skips the tower
            (`tower_cache.py`; 0: off).
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
        vision_checkpoint: str | None = None,
        person_vision: dict[str, Any] | None = None,
        class_token: bool = False,
        tower_cache_mb: int = TOWER_CACHE_MB,
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
        base_tokenizer = source_tokenizer(source, tokenizer, tokenizer_vocab)
        self._tokenizer_files = tokenizer_files(base_tokenizer) if base_tokenizer is not None else None
        warm_selector = None
        if stage == "joint":
            selector, warm_selector = self._selector_settings(selector_checkpoint, selector)
        tower = None
        if vision_checkpoint is not None:
            tower = VisionTowerFile.load(vision_checkpoint)
            person_vision = self.hparams["person_vision"] = tower.architecture()
        elif init_checkpoint is not None and person_vision is None:  # the warm-up's tower comes with its weights
            stored = read_questioner_checkpoint(init_checkpoint).get("hyper_parameters") or {}
            person_vision = self.hparams["person_vision"] = stored.get("person_vision")
        network = build_network(
            base_tokenizer,
            source,
            overrides,
            quantization,
            dtype,
            lora,
            gradient_checkpointing,
            pool,
            system_prompt,
            person_vision,
            class_token,
            selector=selector if stage == "joint" else None,
        )
        if tower is not None:
            load_person_tower(network.questioner.hf, tower, vision_checkpoint)
        # the networks are this module's own children, so checkpoints name them `questioner.*` and `selector.*`
        self.questioner = network.questioner
        self.questioner.tower_cache = TowerCache(tower_cache_mb << 20)
        self.selector: Selector | None = network.selector
        if self.selector is not None:
            if warm_selector is not None:
                self.selector.load_state_dict(warm_selector)
            if num_images <= int(self.selector.keep_first):
                raise ValueError(f"num_images={num_images} leaves the selector nothing to choose")
        self.strict_loading = lora is None  # LoRA checkpoints hold the trainable weights only
        self.train_instruction = InstructionChooser(instruction, seed)
        self.temperature: TemperatureSchedule | None = None
        if init_checkpoint is not None:
            self.load_weights(init_checkpoint, questioner_only=True)
        self.train()  # the factory returns eval-mode models; Lightning keeps the modes it finds at fit start

    def _selector_settings(
        self, checkpoint: str | None, settings: dict[str, Any] | None
    ) -> tuple[dict[str, Any], dict[str, Tensor] | None]:
        """The joint stage's `Selector` arguments and, from a `SelectorWarmup` checkpoint, its weights.

        Read from the file, not through `SelectorWarmup.load_from_checkpoint`: inside LightningCLI's instantiation a
        nested module's `save_hyperparameters` would record the questioner's arguments instead.
        """
        if checkpoint is not None:
            if not Path(checkpoint).is_file():
                raise FileNotFoundError(f"{checkpoint}: selector checkpoint not found (field 'selector_checkpoint')")
            settings, weights = read_selector_checkpoint(checkpoint)
            self.hparams["selector"] = settings
            return settings, weights
        if settings is not None:
            return settings, None
        raise ValueError("stage 'joint' needs field 'selector_checkpoint' (a SelectorWarmup checkpoint)")

    # -------------------------------------------------------------------------------------------- checkpoints

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        if self.hparams.lora is not None:
            keep = trainable_names(self)
            checkpoint["state_dict"] = {k: v for k, v in checkpoint["state_dict"].items() if k in keep}
        if self._tokenizer_files is not None:
            checkpoint[TOKENIZER_KEY] = self._tokenizer_files

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        check_weights(self, checkpoint["state_dict"], "checkpoint", lora=self.hparams.lora is not None)

    def load_weights(self, path: str | Path, questioner_only: bool = False) -> None:
        """Load a checkpoint of this module's weights (`questioner_only`: a warm-up checkpoint, no selector)."""
        state = read_questioner_checkpoint(path)["state_dict"]
        load_weights(self, state, str(path), self.hparams.lora is not None, questioner_only)

    @classmethod
    def restore(cls, path: str | Path, **changes: Any) -> QuestionerModule:
        """The module of a checkpoint, rebuilt from what it stores (no data set or selector file needed), to train
        on; inference rebuilds the networks alone (`ireid.questioner.inference.network_from_checkpoint`)."""
        checkpoint = read_questioner_checkpoint(path)
        accepted = set(inspect.signature(cls.__init__).parameters) - {"self"}
        settings = {k: v for k, v in checkpoint.get("hyper_parameters", {}).items() if k in accepted}
        settings.update(init_checkpoint=None, selector_checkpoint=None, vision_checkpoint=None, **changes)
        if settings.get("stage") == "joint" and settings.get("selector") is None:
            raise ValueError(f"{path}: a joint checkpoint without field 'hyper_parameters.selector'")
        with tempfile.TemporaryDirectory(prefix="ireid-questioner-") as tmp:
            if TOKENIZER_KEY in checkpoint:
                settings["tokenizer"] = str(write_tokenizer_files(checkpoint[TOKENIZER_KEY], tmp))
            module = cls(**settings)
        load_weights(module, checkpoint["state_dict"], str(path), module.hparams.lora is not None)
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
        self.log(
            "val/loss", loss, prog_bar=True, batch_size=tokens, sync_dist=True
        )  # token-weighted mean over the epoch

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

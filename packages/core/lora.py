"""LoRA adapters on a language model's linear layers, shared by the questioner (QLoRA, LLaVA-ReID Table 11) and the
ChatReID model when it is tuned as ICL's MLLM (ICL Eq. 3: r 8, α 16).

`inject_lora` puts adapters into a model in place (the model keeps its class, so its own methods and attribute
paths still work) and leaves only the adapters trainable. `merge_lora_state` folds the adapters of a saved state
dict into the base weights under the plain names, so a tuned model loads without peft.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from torch import Tensor, nn

# Every linear layer of the language model (the LLaVA recipe: not the vision tower, not the projector).
LANGUAGE_MODEL_LINEARS = r".*language_model.*\.(q_proj|k_proj|v_proj|o_proj|gate_proj|up_proj|down_proj)"
ADAPTER = "default"  # peft's adapter name


@dataclass(frozen=True)
class LoraSettings:
    """LoRA adapters (LLaVA-ReID Table 11: r 128, α 256, dropout 0.05) on `target_modules` (names or a regex)."""

    r: int = 128
    alpha: int = 256
    dropout: float = 0.05
    target_modules: str | list[str] = field(default=LANGUAGE_MODEL_LINEARS)

    @classmethod
    def from_dict(cls, settings: Mapping[str, Any]) -> LoraSettings:
        unknown = set(settings) - {"r", "alpha", "dropout", "target_modules"}
        if unknown:
            raise ValueError(f"lora: unknown field(s) {sorted(unknown)}; expected r, alpha, dropout, target_modules")
        settings = dict(settings)
        if isinstance(settings.get("target_modules"), tuple):
            settings["target_modules"] = list(settings["target_modules"])
        return cls(**settings)

    def to_dict(self) -> dict[str, Any]:
        return {"r": self.r, "alpha": self.alpha, "dropout": self.dropout, "target_modules": self.target_modules}

    @property
    def scale(self) -> float:
        return self.alpha / self.r


def inject_lora(model: nn.Module, settings: LoraSettings) -> nn.Module:
    """Adapters in place on `settings.target_modules`; every other parameter is frozen. Returns `model`."""
    from peft import LoraConfig, inject_adapter_in_model

    config = LoraConfig(
        r=settings.r, lora_alpha=settings.alpha, lora_dropout=settings.dropout, target_modules=settings.target_modules
    )
    model = inject_adapter_in_model(config, model)
    for name, parameter in model.named_parameters():
        parameter.requires_grad_(".lora_" in name)
    if not any(p.requires_grad for p in model.parameters()):
        raise ValueError(f"lora: target_modules {settings.target_modules!r} match no layer of the model")
    return model


def merge_lora_state(state: Mapping[str, Tensor], scale: float) -> dict[str, Tensor]:
    """A state dict with `inject_lora`'s adapters folded in: W + scale · B @ A under each layer's plain name."""
    merged: dict[str, Tensor] = {}
    for name, value in state.items():
        if f".lora_A.{ADAPTER}." in name or f".lora_B.{ADAPTER}." in name:
            continue
        if ".base_layer." in name:
            layer = name.split(".base_layer.")[0]
            plain = name.replace(".base_layer.", ".")
            a, b = state.get(f"{layer}.lora_A.{ADAPTER}.weight"), state.get(f"{layer}.lora_B.{ADAPTER}.weight")
            if name.endswith(".weight") and a is not None and b is not None:
                value = value + (scale * (b.float() @ a.float())).to(value.dtype)
            merged[plain] = value
        else:
            merged[name] = value
    return merged

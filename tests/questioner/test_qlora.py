"""QLoRA on CPU: 4-bit NF4 base weights stay frozen, the LoRA adapters learn from the questioner's NLL."""

from __future__ import annotations

import bitsandbytes as bnb
from PIL import Image

from ireid.core.lora import LoraSettings
from ireid.core.protocols import Dialogue
from ireid.questioner.model import QuestionerModel, build_questioner_model
from tests.questioner.conftest import TINY


def test_nf4_lora_trains_the_adapters_only(tokenizer) -> None:
    built = build_questioner_model("tiny", tokenizer, TINY, "nf4", lora=LoraSettings(r=4, alpha=8, dropout=0.0))
    q = QuestionerModel(built, pool=2)
    language = q.hf.model.language_model
    base = language.layers[0].self_attn.q_proj.base_layer
    assert isinstance(base, bnb.nn.Linear4bit) and isinstance(base.weight, bnb.nn.Params4bit)
    assert base.weight.quant_state.quant_type == "nf4" and base.weight.quant_state.state2 is not None  # double quant
    frozen_4bit = [m.weight for m in q.hf.modules() if isinstance(m, bnb.nn.Linear4bit)]
    assert frozen_4bit and not any(w.requires_grad for w in frozen_4bit)

    images = [[Image.new("RGB", (32, 64), (200, 10, 10 * i)) for i in range(4)]]
    loss, _ = q.nll([Dialogue("I saw a man.")], images, ["Was he wearing a hat?"], [0])
    loss.backward()
    trainable = {n: p for n, p in q.named_parameters() if p.requires_grad}
    assert trainable and all("lora_" in n for n in trainable)
    assert all(".language_model." in n for n in trainable)  # the vision tower and projector stay as they are
    lora_b = [p for n, p in trainable.items() if "lora_B" in n]
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in lora_b)

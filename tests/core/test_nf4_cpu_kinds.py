"""NF4 behaves the same on every CPU kind: the AVX512-BF16 decision bitsandbytes makes is forced here on any CPU.

bitsandbytes 0.50 decides per `Linear4bit` at construction (`has_avx512bf16()`, from its native library) whether
to repack the weight for its fused bf16 CPU kernel on the first eval-mode, no-grad forward; its int8 kernels
follow `torch.backends.cpu.get_cpu_capability()`. Both are patched to claim AVX-512, so these tests take the
code path of an AVX-512 machine whatever machine runs them.
"""

from __future__ import annotations

import copy

import bitsandbytes as bnb
import bitsandbytes.nn.modules as bnb_modules
import pytest
import torch
from bitsandbytes.functional import _convert_weight_packed_for_cpu, _convert_weight_packed_for_cpu_inverse
from peft import LoraConfig, get_peft_model, prepare_model_for_kbit_training
from PIL import Image
from transformers import PreTrainedTokenizerBase

from ireid.core.factory import Built, build_model
from tests.core.test_factory import CPU, TEXTS, vlm_inputs


@pytest.fixture
def avx512(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make bitsandbytes believe it runs on an AVX-512 CPU with bf16 support."""
    monkeypatch.setattr(bnb_modules, "has_avx512bf16", lambda: True)
    monkeypatch.setattr(torch.backends.cpu, "get_cpu_capability", lambda: "AVX512")


def _linear4bit(built: Built) -> dict[str, bnb.nn.Linear4bit]:
    return {n: m for n, m in built.model.named_modules() if isinstance(m, bnb.nn.Linear4bit)}


@pytest.mark.parametrize("kind", ["qwen2-lm", "llava-onevision", "qwen2-vl"])
def test_every_tiny_nf4_layer_fits_the_avx512_repacking(
    kind: str, tokenizer: PreTrainedTokenizerBase, avx512: None
) -> None:
    """Each quantised layer survives the AVX-512 repacking and its inverse bit for bit (out % 32, in % 64)."""
    built = build_model(kind, tokenizer=tokenizer, quantization="nf4", device_map=CPU)
    layers = _linear4bit(built)
    assert layers
    for name, layer in layers.items():
        weight, state = layer.weight.data.clone(), copy.deepcopy(layer.weight.quant_state)
        packed, packed_state = _convert_weight_packed_for_cpu(weight.clone(), state)
        restored, _ = _convert_weight_packed_for_cpu_inverse(packed, packed_state)
        assert torch.equal(restored, weight), name


def test_vision_tower_and_projector_stay_unquantised(tokenizer: PreTrainedTokenizerBase) -> None:
    """QLoRA quantises the language model; the vision side keeps the compute dtype, as in LLaVA's recipe."""
    for kind, vision in (("llava-onevision", "model.vision_tower"), ("qwen2-vl", "model.visual")):
        names = _linear4bit(build_model(kind, tokenizer=tokenizer, quantization="nf4", device_map=CPU))
        assert names and all(".language_model." in n for n in names), kind
        assert not any(n.startswith(vision) or "multi_modal_projector" in n for n in names), kind


def test_nf4_output_and_training_do_not_depend_on_the_cpu_kind(
    tokenizer: PreTrainedTokenizerBase, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Eval logits match bit for bit with and without AVX-512; QLoRA then trains after an eval pass."""
    images = [Image.new("RGB", (64, 128), (120, 30, 200))]

    def logits(built: Built) -> torch.Tensor:
        with torch.no_grad():
            return built.model(**vlm_inputs(built, images)).logits

    plain = build_model("llava-onevision", tokenizer=tokenizer, quantization="nf4", device_map=CPU)
    expected = logits(plain)
    monkeypatch.setattr(bnb_modules, "has_avx512bf16", lambda: True)
    monkeypatch.setattr(torch.backends.cpu, "get_cpu_capability", lambda: "AVX512")
    forced = build_model("llava-onevision", tokenizer=tokenizer, quantization="nf4", device_map=CPU)
    assert torch.equal(logits(forced), expected)
    assert not any(getattr(m.weight.quant_state, "packing_format_for_cpu", False) for m in _linear4bit(forced).values())

    lm = build_model("qwen2-lm", tokenizer=tokenizer, quantization="nf4", device_map=CPU)
    model = prepare_model_for_kbit_training(lm.model, use_gradient_checkpointing=False)
    model = get_peft_model(model, LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"], lora_dropout=0.0))
    ids = lm.tokenizer(TEXTS[:2], return_tensors="pt", padding=True)
    model.eval()
    with torch.no_grad():
        model(**ids)  # a validation pass: this is where the AVX-512 path would repack the weights
    model.train()
    loss = model(**ids, labels=ids["input_ids"]).loss
    loss.backward()
    lora_b = [p for n, p in model.named_parameters() if "lora_B" in n]
    assert torch.isfinite(loss) and all(p.grad is not None for p in lora_b)


def test_each_process_quantises_onto_its_own_gpu(monkeypatch) -> None:
    from ireid.core import nf4

    monkeypatch.setattr(nf4.torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(nf4.torch.cuda, "current_device", lambda: 0)
    monkeypatch.setenv("LOCAL_RANK", "3")
    assert nf4.local_device() == 3  # rank 3 of a DDP launch, before Lightning sets its device
    monkeypatch.delenv("LOCAL_RANK")
    assert nf4.local_device() == 0
    monkeypatch.setattr(nf4.torch.cuda, "is_available", lambda: False)
    assert nf4.local_device() == "cpu"

"""4-bit NF4 loading (QLoRA) that behaves the same on every CPU kind and on the GPU.

Used by the model factory for tiny and real checkpoints alike: `nf4_loading_kwargs` for `from_pretrained`, then
`keep_portable` on the loaded model.
"""

from __future__ import annotations

import os
from typing import Any

import torch
from transformers import BitsAndBytesConfig, PreTrainedModel

# QLoRA quantises the language model only. LLaVA's QLoRA recipe keeps the vision tower and the projector in the
# compute dtype (they are loaded apart from the quantised LM there); the output head stays unquantised as in
# transformers' default. It also keeps real vision towers out of a CPU kernel they do not fit (SigLIP-so400m's MLP
# is 4304 wide; see `keep_portable`). Patterns match module names from the start, as regular expressions.
NF4_SKIP_MODULES: tuple[str, ...] = (
    "lm_head",
    r"(?:.*\.)?vision_tower",
    r"(?:.*\.)?multi_modal_projector",
    r"(?:.*\.)?visual",
)


def nf4_loading_kwargs(dtype: torch.dtype | None, device_map: str | dict[str, Any] | None) -> dict[str, Any]:
    """NF4 with double quantisation; bitsandbytes needs a concrete device (CPU works with the pinned 0.50)."""
    compute_dtype = dtype or (torch.bfloat16 if torch.cuda.is_available() else torch.float32)
    return {
        "quantization_config": BitsAndBytesConfig(
            load_in_4bit=True,
            bnb_4bit_quant_type="nf4",
            bnb_4bit_use_double_quant=True,
            bnb_4bit_compute_dtype=compute_dtype,
            llm_int8_skip_modules=list(NF4_SKIP_MODULES),
        ),
        "dtype": compute_dtype,
        "device_map": device_map or {"": local_device()},
    }


def local_device() -> int | str:
    """Where this process's quantised weights go: its own GPU under a multi-process launch (`LOCAL_RANK`, which
    torchrun and Lightning's DDP launcher set before the model is built, while `torch.cuda.current_device()` is
    still 0 in every rank), the current GPU otherwise, else the CPU."""
    if not torch.cuda.is_available():
        return "cpu"
    local_rank = os.environ.get("LOCAL_RANK")
    return int(local_rank) if local_rank is not None else torch.cuda.current_device()


def keep_portable(model: PreTrainedModel) -> None:
    """Keep every NF4 layer in bitsandbytes' portable layout, so results and training do not depend on the CPU.

    On a CPU with AVX512-BF16 (bitsandbytes asks its native library, `has_avx512bf16()`, once per layer at
    construction), bitsandbytes 0.50 repacks a `Linear4bit` weight in place the first time it runs in eval mode
    without gradients, and from then on computes that layer in bf16 through a fused kernel. Three things follow,
    all of them only on such CPUs: (1) the repacking asserts out_features % 32 == 0 and in_features a multiple of
    the 64-wide quantisation block, so small or unaligned layers crash; (2) eval-mode outputs are bf16 while the
    same model elsewhere computes in the compute dtype; (3) a QLoRA model that trains after a validation pass
    fails ("a view of a leaf Variable ... in-place") because the packed path adds the bias in place. Switching the
    per-layer flag off keeps the dequantise-then-matmul path that every CPU and the GPU share.
    """
    from bitsandbytes.nn import Linear4bit

    for module in model.modules():
        if isinstance(module, Linear4bit):
            module.support_avx512bf16_for_cpu = False

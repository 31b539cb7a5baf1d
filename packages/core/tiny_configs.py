"""Small configs for the `tiny` source: the real architectures, shrunk so tests and the demo train in seconds on CPU.

Plain nested dicts so `overrides` merge into them key by key. The factory fills in what depends on the tokenizer
(vocabulary size, special-token ids) and what must agree with the vision tower (Qwen2-VL's `mrope_section`,
LLaVA-OneVision's tile grid, the processors' patch sizes). The `processor` entry holds image-processor settings.
"""

from __future__ import annotations

from typing import Any

PERSON_HW = (128, 64)
"""Person crops are tall: the tiny image processors produce (height, width) = PERSON_HW."""

_TINY_QWEN2: dict[str, Any] = {
    "hidden_size": 64,
    "intermediate_size": 128,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
    "max_position_embeddings": 1024,
}

TINY: dict[str, dict[str, Any]] = {
    "clip": {
        "text_config": {
            "hidden_size": 128,
            "intermediate_size": 256,
            "num_hidden_layers": 2,
            "num_attention_heads": 2,
            "max_position_embeddings": 64,
        },
        # image_size sets the square position grid; non-square inputs interpolate it (see factory).
        "vision_config": {
            "hidden_size": 128,
            "intermediate_size": 256,
            "num_hidden_layers": 2,
            "num_attention_heads": 2,
            "image_size": PERSON_HW[0],
            "patch_size": 16,
        },
        "projection_dim": 64,
        "processor": {"size": {"height": PERSON_HW[0], "width": PERSON_HW[1]}, "do_center_crop": False},
    },
    "qwen2-lm": dict(_TINY_QWEN2),
    "llava-onevision": {
        "text_config": {"model_type": "qwen2", **_TINY_QWEN2},
        "vision_config": {
            "model_type": "siglip_vision_model",
            "hidden_size": 32,
            "intermediate_size": 64,
            "num_hidden_layers": 2,
            "num_attention_heads": 2,
            "image_size": 32,
            "patch_size": 8,
            "vision_use_head": False,
        },
        "vision_feature_select_strategy": "full",
        "vision_feature_layer": -1,
        "vision_aspect_ratio": "anyres_max_9",
        "processor": {},
    },
    "qwen2-vl": {
        "text_config": dict(_TINY_QWEN2),
        "vision_config": {
            "depth": 2,
            "embed_dim": 32,
            "num_heads": 2,
            "mlp_ratio": 2,
            "patch_size": 8,
            "spatial_merge_size": 2,
            "temporal_patch_size": 2,
        },
        # A 128×64 crop stays 128×64: 16×8 patches of 8 px, merged 2×2 into 32 image tokens.
        "processor": {"min_pixels": 32 * 32, "max_pixels": PERSON_HW[0] * PERSON_HW[1]},
    },
}

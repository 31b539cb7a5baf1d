"""Hierarchical progressive tuning: what each stage carries over, trains and freezes; checkpoints restore."""

from __future__ import annotations

import pytest
import torch

from ireid.chatreid.checkpoint import CheckpointError, is_vision_parameter, read_checkpoint
from ireid.chatreid.inference import ChatReID
from ireid.chatreid.module import ChatReIDModule
from ireid.core.factory import build_model
from ireid.core.tokenizer import dataset_tokenizer
from tests.chatreid.conftest import fit, stage_data


def split(state: dict[str, torch.Tensor], merger_in_encoder: bool = True) -> tuple[dict, dict]:
    vision = {k: v for k, v in state.items() if is_vision_parameter(k, merger_in_encoder)}
    return vision, {k: v for k, v in state.items() if k not in vision}


def same(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def all_differ(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    """Every matrix differs: each trained layer moved (vectors such as unused biases may not)."""
    return all(not torch.equal(a[k], b[k]) for k in a if a[k].dim() >= 2 and "embed_tokens" not in k)


def test_stage2_takes_the_trained_stage1_encoder_and_a_fresh_decoder(stages):
    trained1 = read_checkpoint(stages.ckpts[1], expect_stage=1).state
    vision1, decoder1 = split(trained1)
    vision2, decoder2 = split(stages.starts[2])
    start_vision1, start_decoder1 = split(stages.starts[1])
    assert same(vision2, vision1) and all_differ(vision1, start_vision1), "the trained stage-1 encoder, merger too"
    fresh = build_model("qwen2-vl", tokenizer=dataset_tokenizer(stages.world, 2048), seed=0).model.state_dict()
    assert same(decoder2, split(fresh)[1]) and same(decoder2, start_decoder1), "the seeded initialisation again"
    assert all_differ(decoder1, decoder2), "not the stage-1 decoder"
    assert all(p.requires_grad for p in stages.modules[2].model.parameters()), "stage 2 trains everything"


def test_merger_can_travel_with_the_decoder(stages):
    module = ChatReIDModule(2, data_dir=str(stages.world), init_from=str(stages.ckpts[1]), merger_in_encoder=False)
    state = module.model.state_dict()
    trained1 = read_checkpoint(stages.ckpts[1]).state
    merger = [k for k in state if k.startswith("model.visual.merger.")]
    assert merger and all(torch.equal(state[k], stages.starts[1][k]) for k in merger), "fresh merger"
    vit = [k for k in state if is_vision_parameter(k, merger_in_encoder=False)]
    assert all(torch.equal(state[k], trained1[k]) for k in vit), "trained ViT"


def test_stage2_continues_a_stage2_model_whole(stages):
    """A curriculum inside stage 2: a stage-2 `init_from` brings its decoder too, and everything still trains."""
    module = ChatReIDModule(2, data_dir=str(stages.world), init_from=str(stages.ckpts[2]))
    assert same(module.model.state_dict(), read_checkpoint(stages.ckpts[2], expect_stage=2).state)
    assert all(p.requires_grad for p in module.model.parameters())
    with pytest.raises(CheckpointError, match="stage-3 checkpoint, expected stage 1 or 2"):
        ChatReIDModule(2, data_dir=str(stages.world), init_from=str(stages.ckpts[3]))


def test_stage3_keeps_the_encoder_frozen_while_the_decoder_trains(stages):
    module = stages.modules[3]
    assert same(stages.starts[3], read_checkpoint(stages.ckpts[2], expect_stage=2).state), "the whole stage-2 model"
    module.train()
    assert not module.model.model.visual.training and module.model.model.language_model.training
    vision = [p for n, p in module.model.named_parameters() if is_vision_parameter(n, True)]
    assert vision and not any(p.requires_grad for p in vision)
    start_vision, start_decoder = split(stages.starts[3])
    end_vision, end_decoder = split(read_checkpoint(stages.ckpts[3], expect_stage=3).state)
    assert same(end_vision, start_vision), "3 optimiser steps left every vision weight as it was"
    assert all_differ(end_decoder, start_decoder), "and moved the decoder"


def test_lora_trains_only_adapters_and_the_checkpoint_reads_back_merged(stages, tmp_path):
    """ICL's SFT: a stage-3 model continued with LoRA on its decoder; the checkpoint loads without peft."""
    module = ChatReIDModule(
        3, init_from=str(stages.ckpts[3]), lr=1e-2, warmup_fraction=0.0,
        lora={"r": 4, "alpha": 8, "dropout": 0.0},
    )  # fmt: skip
    trainable = [n for n, p in module.model.named_parameters() if p.requires_grad]
    assert trainable and all(".lora_" in n and "language_model" in n for n in trainable)
    ckpt = fit(module, stage_data(stages.world, stages.conversations, 3), 3, tmp_path / "sft.ckpt")

    merged = read_checkpoint(ckpt, expect_stage=3).state
    before = read_checkpoint(stages.ckpts[3], expect_stage=3).state
    assert merged.keys() == before.keys(), "plain parameter names, adapters folded in"
    adapted = [k for k in merged if k.endswith("self_attn.q_proj.weight")]
    assert adapted and all(not torch.equal(merged[k], before[k]) for k in adapted)
    untouched = [k for k in merged if k.startswith("model.visual.") or k.endswith("_layernorm.weight")]
    assert untouched and all(torch.equal(merged[k], before[k]) for k in untouched)

    # The merged model computes what the adapted one does.
    module.eval()
    tokens = torch.tensor([[1, 2, 3, 4, 5]])
    with torch.no_grad():
        expected = module.model(input_ids=tokens).logits
        restored = ChatReID.from_checkpoint(ckpt).model(input_ids=tokens).logits
    assert torch.allclose(restored, expected, atol=1e-5)


def test_stages_refuse_the_wrong_previous_stage(stages):
    with pytest.raises(CheckpointError, match="stage-1 checkpoint, expected stage 2 or 3"):
        ChatReIDModule(3, init_from=str(stages.ckpts[1]))
    with pytest.raises(ValueError, match="stage 1 starts from the pre-trained source"):
        ChatReIDModule(1, data_dir=str(stages.world), init_from=str(stages.ckpts[2]))


def test_checkpoint_alone_restores_model_and_processor(stages):
    module = stages.modules[3].eval()
    restored = ChatReID.from_checkpoint(stages.ckpts[3])  # weights_only=True inside
    state = restored.model.state_dict()
    assert same(state, {k: v for k, v in module.model.state_dict().items()})
    assert restored.processor.tokenizer.get_vocab() == module.processor.tokenizer.get_vocab()
    assert restored.processor.chat_template == module.processor.chat_template
    text = "Given the person image, is this the same pedestrian?"
    assert restored.processor.tokenizer(text).input_ids == module.processor.tokenizer(text).input_ids

"""The tokenizer and the model factory: every kind builds tiny, runs on real processor output, and round-trips."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from transformers import AutoTokenizer, PreTrainedTokenizerBase

from ireid.core import tokenizer as tok
from ireid.core.factory import KINDS, Built, ModelNotAvailableError, build_model, save_built
from ireid.core.tokenizer import train_bpe_tokenizer

TEXTS = [
    "A man in a red jacket and black trousers walks with a grey backpack.",
    "The woman wears a blue dress, white shoes and carries a brown bag.",
    "Is the person wearing a hat? Yes, a black cap.",
    "What colour are the shoes? They are white.",
    "A young man, 25 years old, rides bicycle 1234 past the café.",
]
CPU = {"": "cpu"}  # NF4 tests exercise the CPU kernels, also where a GPU would be picked by default
CHAT = [
    {"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "Is the person wearing a hat?"}]},
    {"role": "assistant", "content": "Yes, a black cap."},
]


def person(seed: int, hw: tuple[int, int] = (128, 64)) -> Image.Image:
    pixels = np.random.default_rng(seed).integers(0, 256, (*hw, 3), dtype=np.uint8)
    return Image.fromarray(pixels)


def vlm_inputs(built: Built, images: list[Image.Image]) -> dict[str, torch.Tensor]:
    """One chat turn with an image, answered: the way the questioner and ChatReID feed their VLMs."""
    text = built.processor.apply_chat_template(CHAT, tokenize=False)
    return built.processor(images=images, text=[text] * len(images), return_tensors="pt")


def outputs(built: Built, images: list[Image.Image]) -> torch.Tensor:
    """A deterministic forward pass through processor and model, for comparing a model with its reload."""
    with torch.no_grad():
        if built.kind == "clip":
            inputs = built.processor(text=TEXTS[:2], images=images, return_tensors="pt", padding=True)
            return built.model(**inputs, **built.forward_kwargs).logits_per_image
        if built.kind == "qwen2-lm":
            return built.model(**built.tokenizer(TEXTS[:1], return_tensors="pt")).logits
        return built.model(**vlm_inputs(built, images)).logits


# ----------------------------------------------------------------------------------------------------- tokenizer


def test_tokenizer_round_trips_text_and_reloads(tokenizer: PreTrainedTokenizerBase, tmp_path: Path) -> None:
    for text in TEXTS:
        assert tokenizer.decode(tokenizer(text).input_ids) == text
    for special in tok.SPECIAL_TOKENS:
        ids = tokenizer(special, add_special_tokens=False).input_ids
        assert ids == [tokenizer.convert_tokens_to_ids(special)], special
    assert tokenizer.mask_token == tok.MASK and tokenizer.eos_token == tok.ENDOFTEXT

    tokenizer.save_pretrained(tmp_path)
    reloaded = AutoTokenizer.from_pretrained(tmp_path)
    assert reloaded.get_vocab() == tokenizer.get_vocab()
    assert reloaded.all_special_tokens == tokenizer.all_special_tokens
    assert [reloaded(t).input_ids for t in TEXTS] == [tokenizer(t).input_ids for t in TEXTS]


def test_tokenizer_is_deterministic(tmp_path: Path) -> None:
    train_bpe_tokenizer(TEXTS, tmp_path / "a", vocab_size=400)
    train_bpe_tokenizer(TEXTS, tmp_path / "b", vocab_size=400)
    assert (tmp_path / "a/tokenizer.json").read_bytes() == (tmp_path / "b/tokenizer.json").read_bytes()


def test_chat_template_renders_and_masks_the_answer(tokenizer: PreTrainedTokenizerBase) -> None:
    rendered = tokenizer.apply_chat_template(CHAT, tokenize=False)
    assert rendered == (
        "<|im_start|>user\n<image>Is the person wearing a hat?<|im_end|>\n"
        "<|im_start|>assistant\nYes, a black cap.<|im_end|>\n"
    )
    prompt = tokenizer.apply_chat_template(CHAT[:1], tokenize=False, add_generation_prompt=True)
    assert prompt.endswith("<|im_end|>\n<|im_start|>assistant\n")
    encoded = tokenizer.apply_chat_template(CHAT, return_dict=True, return_assistant_tokens_mask=True)
    answer = [i for i, m in zip(encoded["input_ids"], encoded["assistant_masks"], strict=True) if m]
    assert tokenizer.decode(answer) == "Yes, a black cap.<|im_end|>"


# --------------------------------------------------------------------------------------------------- tiny models


def test_clip_embeds_text_and_a_tall_person_image(tokenizer: PreTrainedTokenizerBase) -> None:
    built = build_model("clip", tokenizer=tokenizer)
    inputs = built.processor(
        text=TEXTS[:2], images=[person(0, (200, 90)), person(1)], return_tensors="pt", padding=True
    )
    assert inputs["pixel_values"].shape == (2, 3, 128, 64)
    ids = inputs["input_ids"][0].tolist()
    assert (
        ids[0] == built.tokenizer.bos_token_id
        and ids[-1] == built.tokenizer.eos_token_id == built.config.text_config.eos_token_id
    )
    with torch.no_grad():
        out = built.model(**inputs, **built.forward_kwargs)
    assert out.image_embeds.shape == out.text_embeds.shape == (2, built.config.projection_dim)
    assert out.vision_model_output.last_hidden_state.shape[1] == 1 + (128 // 16) * (64 // 16)
    with pytest.raises(ValueError, match="doesn't match"):
        built.model(**inputs)  # without forward_kwargs the square position grid refuses 128×64


def test_llava_onevision_runs_chat_with_one_and_several_images(tokenizer: PreTrainedTokenizerBase) -> None:
    built = build_model("llava-onevision", tokenizer=tokenizer)
    inputs = vlm_inputs(built, [person(0)])
    out = built.model(**inputs, labels=inputs["input_ids"])
    assert out.logits.shape == (*inputs["input_ids"].shape, built.config.text_config.vocab_size)
    assert torch.isfinite(out.loss)

    text = "<|im_start|>user\n<image><image>Same person?<|im_end|>\n<|im_start|>assistant\n"
    pair = built.processor(images=[[person(1), person(2, (100, 50))]], text=[text], return_tensors="pt")
    assert pair["batch_num_images"].tolist() == [2]
    prompt_len = pair["input_ids"].shape[1]
    generated = built.model.generate(**pair, max_new_tokens=3, min_new_tokens=3, do_sample=False)
    assert generated.shape == (1, prompt_len + 3)


def test_qwen2_vl_runs_its_chat_format(tokenizer: PreTrainedTokenizerBase) -> None:
    built = build_model("qwen2-vl", tokenizer=tokenizer)
    inputs = vlm_inputs(built, [person(0), person(1)])
    assert "mm_token_type_ids" in inputs
    image_tokens = (inputs["input_ids"][0] == built.config.image_token_id).sum().item()
    assert image_tokens == (128 // 8) * (64 // 8) // 4  # 8-px patches merged 2×2
    out = built.model(**inputs, labels=inputs["input_ids"])
    assert out.logits.shape[:2] == inputs["input_ids"].shape and torch.isfinite(out.loss)
    prompt = built.processor.apply_chat_template(CHAT[:1], tokenize=False, add_generation_prompt=True)
    prompt_inputs = built.processor(images=[person(2)], text=[prompt], return_tensors="pt")
    generated = built.model.generate(**prompt_inputs, max_new_tokens=4, min_new_tokens=4, do_sample=False)
    assert generated.shape[1] == prompt_inputs["input_ids"].shape[1] + 4


def test_qwen2_lm_generates_from_a_chat_prompt(tokenizer: PreTrainedTokenizerBase) -> None:
    built = build_model("qwen2-lm", tokenizer=tokenizer)
    assert built.processor is None and built.tokenizer.eos_token == tok.IM_END
    prompt = built.tokenizer.apply_chat_template(
        [{"role": "user", "content": "Describe the person."}],
        add_generation_prompt=True,
        return_dict=True,
        return_tensors="pt",
    )
    generated = built.model.generate(**prompt, max_new_tokens=5, min_new_tokens=5, do_sample=False)
    assert generated.shape[1] == prompt["input_ids"].shape[1] + 5


def test_tiny_init_is_seeded(tokenizer: PreTrainedTokenizerBase) -> None:
    first, second = (build_model("qwen2-lm", tokenizer=tokenizer) for _ in range(2))
    other = build_model("qwen2-lm", tokenizer=tokenizer, seed=1)
    assert torch.equal(first.model.lm_head.weight, second.model.lm_head.weight)
    assert not torch.equal(first.model.lm_head.weight, other.model.lm_head.weight)


@pytest.mark.parametrize("kind", KINDS)
def test_save_and_reload_through_the_path_source(kind: str, tokenizer: PreTrainedTokenizerBase, tmp_path: Path) -> None:
    built = build_model(kind, tokenizer=tokenizer)
    save_built(built, tmp_path)
    reloaded = build_model(kind, tmp_path)

    assert type(reloaded.processor) is type(built.processor)
    images = [person(0), person(1)]
    assert torch.equal(outputs(reloaded, images), outputs(built, images))
    # Ids stay the tiny tokenizer's own: beside a qwen2 config AutoTokenizer would rebuild it as Qwen2Tokenizer.
    assert reloaded.tokenizer(TEXTS[4]).input_ids == built.tokenizer(TEXTS[4]).input_ids
    if built.processor is not None:
        saved = json.loads((tmp_path / "processor_config.json").read_text())
        assert saved["processor_class"] == type(built.processor).__name__  # a standard name, loadable elsewhere
        assert reloaded.processor.to_dict() == built.processor.to_dict()


def test_tokenizer_directory_is_accepted(tokenizer: PreTrainedTokenizerBase, tmp_path: Path) -> None:
    tokenizer.save_pretrained(tmp_path)
    built = build_model("qwen2-lm", tokenizer=tmp_path)
    assert built.config.vocab_size == len(tokenizer)


# ------------------------------------------------------------------------------------------------- configuration


def test_overrides_change_the_config(tokenizer: PreTrainedTokenizerBase) -> None:
    clip = build_model(
        "clip",
        tokenizer=tokenizer,
        overrides={
            "projection_dim": 32,
            "vision_config": {"patch_size": 8},
            "processor": {"size": {"height": 64, "width": 32}},
        },
    )
    assert clip.config.projection_dim == 32 and clip.config.vision_config.patch_size == 8
    assert clip.config.vision_config.hidden_size == 128  # untouched siblings keep the tiny values
    assert clip.processor(images=[person(0)], return_tensors="pt")["pixel_values"].shape == (1, 3, 64, 32)

    qwen = build_model("qwen2-vl", tokenizer=tokenizer, overrides={"text_config": {"hidden_size": 128}})
    assert qwen.config.text_config.hidden_size == qwen.config.vision_config.hidden_size == 128
    assert sum(qwen.config.text_config.rope_parameters["mrope_section"]) == 128 // 4 // 2
    with pytest.raises(ValueError, match="mrope_section"):
        build_model(
            "qwen2-vl",
            tokenizer=tokenizer,
            overrides={"text_config": {"rope_parameters": {"mrope_section": [1, 1, 1]}}},
        )


def test_hub_id_loads_offline_from_the_local_cache(
    tokenizer: PreTrainedTokenizerBase, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import huggingface_hub.constants

    repo = tmp_path / "models--ireid-test--tiny-lm"
    revision = "0" * 40
    (repo / "refs").mkdir(parents=True)
    (repo / "refs/main").write_text(revision)
    built = build_model("qwen2-lm", tokenizer=tokenizer)
    save_built(built, repo / "snapshots" / revision)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path))

    loaded = build_model("qwen2-lm", "ireid-test/tiny-lm", dtype="bfloat16")
    assert loaded.model.lm_head.weight.dtype == torch.bfloat16
    assert torch.equal(loaded.model.lm_head.weight, built.model.lm_head.weight.to(torch.bfloat16))


def test_missing_checkpoint_says_how_to_provide_it() -> None:
    hub_id = "ireid-test/not-in-any-cache"
    with pytest.raises(ModelNotAvailableError, match="not found locally") as error:
        build_model("clip", hub_id)
    assert hub_id in str(error.value) and f"hf download {hub_id} --local-dir" in str(error.value)


def test_bad_requests_are_refused(tokenizer: PreTrainedTokenizerBase, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="unknown model kind"):
        build_model("bert", tokenizer=tokenizer)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="need a tokenizer"):
        build_model("clip")
    save_built(build_model("qwen2-lm", tokenizer=tokenizer), tmp_path)
    with pytest.raises(ValueError, match="not 'clip'"):
        build_model("clip", tmp_path)
    with pytest.raises(ValueError, match="own tokenizer"):
        build_model("qwen2-lm", tmp_path, tokenizer=tokenizer)


# -------------------------------------------------------------------------------------------------- quantization


def test_nf4_tiny_model_trains_a_lora_adapter_on_cpu(tokenizer: PreTrainedTokenizerBase) -> None:
    from bitsandbytes.nn import Linear4bit
    from peft import LoraConfig, get_peft_model, prepare_model_for_kbit_training

    built = build_model("qwen2-lm", tokenizer=tokenizer, quantization="nf4", device_map=CPU)
    linears = {name: module for name, module in built.model.named_modules() if isinstance(module, torch.nn.Linear)}
    assert all(isinstance(m, Linear4bit) for name, m in linears.items() if name != "lm_head")
    q_proj = built.model.model.layers[0].self_attn.q_proj.weight
    assert q_proj.quant_state.quant_type == "nf4" and q_proj.quant_state.nested  # nested = double quantisation

    model = prepare_model_for_kbit_training(built.model, use_gradient_checkpointing=False)
    model = get_peft_model(model, LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"], lora_dropout=0.0))
    lora = {n: p for n, p in model.named_parameters() if p.requires_grad}
    before = {n: p.detach().clone() for n, p in lora.items()}
    ids = built.tokenizer(TEXTS[:2], return_tensors="pt", padding=True)
    loss = model(**ids, labels=ids["input_ids"]).loss
    loss.backward()
    torch.optim.SGD(lora.values(), lr=0.1).step()
    assert torch.isfinite(loss) and any(not torch.equal(before[n], p) for n, p in lora.items())


def test_nf4_tiny_vlm_runs_forward(tokenizer: PreTrainedTokenizerBase) -> None:
    from bitsandbytes.nn import Linear4bit

    built = build_model("llava-onevision", tokenizer=tokenizer, quantization="nf4", device_map=CPU)
    assert isinstance(built.model.model.language_model.layers[0].mlp.up_proj, Linear4bit)
    with torch.no_grad():
        logits = built.model(**vlm_inputs(built, [person(0)])).logits
    assert torch.isfinite(logits).all()


def test_dataset_tokenizer_is_trained_once_beside_the_shards(tmp_path):
    from ireid.core.shards import DatasetWriter
    from ireid.core.tokenizer import dataset_tokenizer
    from tests.helpers import jpeg, make_record

    writer = DatasetWriter(tmp_path)
    for i in range(6):
        writer.write(make_record(i), jpeg())
    writer.close()
    tok = dataset_tokenizer(tmp_path, vocab_size=300)
    assert (tmp_path / "tokenizer-300" / "tokenizer.json").exists()
    mtime = (tmp_path / "tokenizer-300" / "tokenizer.json").stat().st_mtime_ns
    again = dataset_tokenizer(tmp_path, vocab_size=300)
    assert (tmp_path / "tokenizer-300" / "tokenizer.json").stat().st_mtime_ns == mtime
    text = make_record(3).qas[0].question
    assert tok(text)["input_ids"] == again(text)["input_ids"]
    assert tok.decode(tok(text)["input_ids"]) == text

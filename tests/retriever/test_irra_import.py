"""irra_import: an IRRA `best.pth` (OpenAI's CLIP layout under IRRA's names) as an ireid retriever checkpoint.

The state dict is a tiny one of IRRA's key names and dtypes (fp16 where IRRA's `convert_weights` casts), and the
imported network is checked by behaviour: its image and text features, ID logits and MLM logits equal a plain-torch
forward of OpenAI's CLIP towers and IRRA's heads over the raw tensors, so the q/k/v split, the transposed
projections and the renamed norms are tested by what they compute.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from tokenizers import pre_tokenizers
from torch import Tensor
from transformers import CLIPConfig, CLIPImageProcessorPil, CLIPModel, CLIPProcessor, CLIPTokenizer

from ireid.retriever import inference
from ireid.retriever.cli import main as retriever_main
from ireid.retriever.irra_import import import_irra

WIDTH, EMBED, LAYERS, PATCH, IMAGE_HW, CONTEXT, IDS, MLM_LAYERS = 128, 64, 2, 16, (64, 32), 24, 5, 1
GRID = (IMAGE_HW[0] // PATCH) * (IMAGE_HW[1] // PATCH)
TEXTS = ["a woman in a red top", "Man, grey bag!"]  # 17 and 14 tokens of one byte each


@pytest.fixture(scope="module")
def tokenizer() -> CLIPTokenizer:
    """CLIP's tokenizer with a bytes-only vocabulary: start and end of text are the last two ids, as in CLIP's."""
    chars = sorted(pre_tokenizers.ByteLevel.alphabet())
    tokens = [*chars, *(c + "</w>" for c in chars), "<|startoftext|>", "<|endoftext|>"]
    return CLIPTokenizer(vocab={token: i for i, token in enumerate(tokens)}, merges=[])


@pytest.fixture(scope="module")
def clip_dir(tokenizer: CLIPTokenizer, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The Hugging Face CLIP IRRA 'started from': the architecture and tokenizer, its own weights random."""
    tower = {"hidden_size": WIDTH, "intermediate_size": 4 * WIDTH, "num_hidden_layers": LAYERS}
    ids = {"bos_token_id": tokenizer.bos_token_id, "eos_token_id": tokenizer.eos_token_id}
    config = CLIPConfig(
        text_config={**tower, **ids, "num_attention_heads": WIDTH // 64, "vocab_size": len(tokenizer),
                     "max_position_embeddings": 77, "pad_token_id": tokenizer.pad_token_id},
        vision_config={**tower, "num_attention_heads": WIDTH // 64, "image_size": 224, "patch_size": PATCH},
        projection_dim=EMBED,
    )  # fmt: skip
    out = tmp_path_factory.mktemp("clip")
    CLIPModel(config).save_pretrained(out)
    CLIPProcessor(image_processor=CLIPImageProcessorPil(), tokenizer=tokenizer).save_pretrained(out)
    return out


def irra_state(vocab: int) -> dict[str, Tensor]:
    """IRRA's `model.state_dict()` for a tiny ViT CLIP with the ID classifier and the MLM head."""
    generator = torch.Generator().manual_seed(0)

    def rand(*shape: int, std: float = 0.05) -> Tensor:
        return torch.randn(*shape, generator=generator) * std

    def norm(prefix: str, width: int) -> dict[str, Tensor]:
        return {f"{prefix}.weight": 1 + rand(width, std=0.2), f"{prefix}.bias": rand(width)}

    def linear(prefix: str, rows: int, cols: int) -> dict[str, Tensor]:
        return {f"{prefix}.weight": rand(rows, cols, std=cols**-0.5), f"{prefix}.bias": rand(rows)}

    def blocks(prefix: str, width: int, layers: int) -> dict[str, Tensor]:
        state = {}
        for i in range(layers):
            p = f"{prefix}.{i}"
            state |= {f"{p}.attn.in_proj_weight": rand(3 * width, width, std=width**-0.5)}
            state |= {f"{p}.attn.in_proj_bias": rand(3 * width), **linear(f"{p}.attn.out_proj", width, width)}
            state |= norm(f"{p}.ln_1", width) | norm(f"{p}.ln_2", width)
            state |= linear(f"{p}.mlp.c_fc", 4 * width, width) | linear(f"{p}.mlp.c_proj", width, 4 * width)
        return state

    state = {
        "base_model.visual.conv1.weight": rand(WIDTH, 3, PATCH, PATCH, std=0.03),
        "base_model.visual.class_embedding": rand(WIDTH, std=0.5),
        "base_model.visual.positional_embedding": rand(1 + GRID, WIDTH, std=0.5),
        **norm("base_model.visual.ln_pre", WIDTH),
        **blocks("base_model.visual.transformer.resblocks", WIDTH, LAYERS),
        **norm("base_model.visual.ln_post", WIDTH),
        "base_model.visual.proj": rand(WIDTH, EMBED, std=WIDTH**-0.5),
        "base_model.token_embedding.weight": rand(vocab, WIDTH, std=0.5),
        "base_model.positional_embedding": rand(CONTEXT, WIDTH, std=0.5),
        **blocks("base_model.transformer.resblocks", WIDTH, LAYERS),
        **norm("base_model.ln_final", WIDTH),
        "base_model.text_projection": rand(WIDTH, EMBED, std=WIDTH**-0.5),
        **linear("classifier", IDS, EMBED),
        "cross_attn.in_proj_weight": rand(3 * EMBED, EMBED, std=EMBED**-0.5),
        "cross_attn.in_proj_bias": rand(3 * EMBED),
        **linear("cross_attn.out_proj", EMBED, EMBED),
        **blocks("cross_modal_transformer.resblocks", EMBED, MLM_LAYERS),
        **norm("ln_pre_t", EMBED) | norm("ln_pre_i", EMBED) | norm("ln_post", EMBED),
        **linear("mlm_head.dense", EMBED, EMBED) | norm("mlm_head.ln", EMBED) | linear("mlm_head.fc", vocab, EMBED),
    }
    # IRRA's convert_weights: convolutions, Linears, attention and projections in fp16; norms and embeddings not
    return {key: value if "ln" in key or "embedding" in key else value.half() for key, value in state.items()}


# --- OpenAI's CLIP and IRRA's heads in plain torch, over the raw tensors ----------------------------------------


def layer_norm(x: Tensor, sd: dict[str, Tensor], prefix: str) -> Tensor:
    return F.layer_norm(x, x.shape[-1:], sd[f"{prefix}.weight"], sd[f"{prefix}.bias"])


def attention(queries: Tensor, keys: Tensor, sd: dict[str, Tensor], prefix: str, causal: bool = False) -> Tensor:
    """`nn.MultiheadAttention` (batch first) from its packed in-projection, width // 64 heads as IRRA builds it."""
    weights, biases = sd[f"{prefix}.in_proj_weight"].chunk(3), sd[f"{prefix}.in_proj_bias"].chunk(3)
    heads = queries.shape[-1] // 64

    def project(x: Tensor, i: int) -> Tensor:
        return F.linear(x, weights[i], biases[i]).unflatten(-1, (heads, -1)).transpose(1, 2)

    out = F.scaled_dot_product_attention(project(queries, 0), project(keys, 1), project(keys, 2), is_causal=causal)
    return F.linear(out.transpose(1, 2).flatten(2), sd[f"{prefix}.out_proj.weight"], sd[f"{prefix}.out_proj.bias"])


def quick_gelu(x: Tensor) -> Tensor:
    return x * torch.sigmoid(1.702 * x)


def block(x: Tensor, sd: dict[str, Tensor], prefix: str, causal: bool = False) -> Tensor:
    """OpenAI's ResidualAttentionBlock (also IRRA's cross-modal transformer's)."""
    h = layer_norm(x, sd, f"{prefix}.ln_1")
    x = x + attention(h, h, sd, f"{prefix}.attn", causal)
    h = F.linear(layer_norm(x, sd, f"{prefix}.ln_2"), sd[f"{prefix}.mlp.c_fc.weight"], sd[f"{prefix}.mlp.c_fc.bias"])
    return x + F.linear(quick_gelu(h), sd[f"{prefix}.mlp.c_proj.weight"], sd[f"{prefix}.mlp.c_proj.bias"])


def image_tokens(sd: dict[str, Tensor], pixels: Tensor) -> Tensor:
    """IRRA's `base_model.encode_image`: every token, after ln_post and the projection."""
    x = F.conv2d(pixels, sd["base_model.visual.conv1.weight"], stride=PATCH).flatten(2).transpose(1, 2)
    x = torch.cat([sd["base_model.visual.class_embedding"].expand(len(x), 1, -1), x], dim=1)
    x = layer_norm(x + sd["base_model.visual.positional_embedding"], sd, "base_model.visual.ln_pre")
    for i in range(LAYERS):
        x = block(x, sd, f"base_model.visual.transformer.resblocks.{i}")
    return layer_norm(x, sd, "base_model.visual.ln_post") @ sd["base_model.visual.proj"]


def text_tokens(sd: dict[str, Tensor], ids: Tensor) -> Tensor:
    """IRRA's `base_model.encode_text` over [B, context] ids: every token, after ln_final and the projection."""
    x = sd["base_model.token_embedding.weight"][ids] + sd["base_model.positional_embedding"]
    for i in range(LAYERS):
        x = block(x, sd, f"base_model.transformer.resblocks.{i}", causal=True)
    return layer_norm(x, sd, "base_model.ln_final") @ sd["base_model.text_projection"]


def mlm_logits(sd: dict[str, Tensor], texts: Tensor, images: Tensor) -> Tensor:
    """IRRA's `cross_former` and `mlm_head` over text and image tokens."""
    image = layer_norm(images, sd, "ln_pre_i")
    x = attention(layer_norm(texts, sd, "ln_pre_t"), image, sd, "cross_attn")
    for i in range(MLM_LAYERS):
        x = block(x, sd, f"cross_modal_transformer.resblocks.{i}")
    x = F.linear(layer_norm(x, sd, "ln_post"), sd["mlm_head.dense.weight"], sd["mlm_head.dense.bias"])
    x = layer_norm(quick_gelu(x), sd, "mlm_head.ln")
    return F.linear(x, sd["mlm_head.fc.weight"], sd["mlm_head.fc.bias"])


def irra_ids(tokenizer: CLIPTokenizer, texts: list[str]) -> Tensor:
    """IRRA's `tokenize`: start, BPE, end, then zeros up to the context length."""
    ids = torch.zeros(len(texts), CONTEXT, dtype=torch.long)
    for row, tokens in enumerate(tokenizer(texts)["input_ids"]):
        ids[row, : len(tokens)] = torch.tensor(tokens)
    return ids


# --- tests -------------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def imported(tokenizer: CLIPTokenizer, clip_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """IRRA's `best.pth` layout (model, optimizer, scheduler, epoch) imported with its heads."""
    folder = tmp_path_factory.mktemp("irra")
    best = folder / "best.pth"
    optimizer = {"state": {}, "param_groups": [{"lr": 1e-5, "betas": (0.9, 0.999), "params": [0, 1]}]}
    torch.save({"model": irra_state(len(tokenizer)), "optimizer": optimizer, "scheduler": {}, "epoch": 3}, best)
    result = import_irra(best, clip_dir, folder / "retriever.ckpt", image_size=IMAGE_HW)
    assert result.unused == () and result.net.settings.losses == "sdm+id+mlm"
    return result.out


def test_imported_features_are_irras(imported: Path, tokenizer: CLIPTokenizer) -> None:
    net = inference.load_retriever(imported)
    sd = {key: value.float() for key, value in irra_state(len(tokenizer)).items()}
    pixels = torch.randn(3, 3, *IMAGE_HW, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        images = image_tokens(sd, pixels)
        assert torch.allclose(net.encode_images(pixels), F.normalize(images[:, 0]), atol=1e-5)
        ids = irra_ids(tokenizer, TEXTS)
        texts = text_tokens(sd, ids)[torch.arange(len(ids)), ids.argmax(-1)]  # at the end token: the largest id
        assert torch.allclose(inference.encode_text(net, TEXTS), F.normalize(texts), atol=1e-5)
        ids_logits = F.linear(images[:, 0], sd["classifier.weight"], sd["classifier.bias"])
        assert torch.allclose(net.classifier(net.features.image_pooled(pixels)), ids_logits, atol=1e-5)


def test_the_mlm_head_and_mask_token_compute_as_irras(imported: Path, tokenizer: CLIPTokenizer) -> None:
    """ireid appends `<|mask|>` to CLIP's vocabulary; IRRA's is id vocab - 3. Full-length texts: IRRA's cross-modal
    blocks attend to padding, ireid's do not."""
    net = inference.load_retriever(imported)
    vocab = len(tokenizer)
    assert net.tokenizer.mask_token_id == vocab and len(net.tokenizer) == vocab + 1
    sd = {key: value.float() for key, value in irra_state(vocab).items()}
    irra = torch.randint(0, vocab - 3, (2, CONTEXT), generator=torch.Generator().manual_seed(2))
    irra[:, 3] = vocab - 3
    ours = torch.where(irra == vocab - 3, vocab, irra)
    pixels = torch.randn(2, 3, *IMAGE_HW, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        expected = mlm_logits(sd, text_tokens(sd, irra), image_tokens(sd, pixels))
        states, _ = net.features.text_tokens(ours, torch.ones_like(ours))
        logits = net.mlm(states, net.features.image_tokens(pixels))
    assert torch.allclose(logits[..., :vocab], expected, atol=1e-4)
    assert torch.equal(logits[..., vocab], logits[..., vocab - 3])  # the mask's row is IRRA's mask's


def test_ddp_prefixes_and_a_bare_state_dict_import_alike(imported: Path, tokenizer, clip_dir, tmp_path) -> None:
    state = irra_state(len(tokenizer))
    torch.save({"model": {f"module.{key}": value for key, value in state.items()}}, tmp_path / "ddp.pth")
    ddp = import_irra(tmp_path / "ddp.pth", clip_dir, tmp_path / "ddp.ckpt", image_size=IMAGE_HW)
    plain = inference.load_retriever(imported).state_dict()
    assert ddp.net.state_dict().keys() == plain.keys()
    assert all(torch.equal(tensor, plain[key]) for key, tensor in ddp.net.state_dict().items())
    torch.save({**state, "base_model.logit_scale": torch.tensor(4.6)}, tmp_path / "bare.pth")  # OpenAI's, unused
    bare = import_irra(tmp_path / "bare.pth", clip_dir, tmp_path / "bare.ckpt", image_size=IMAGE_HW, heads=False)
    net = inference.load_retriever(bare.out)
    assert net.settings.losses == "sdm" and net.classifier is None and net.mlm is None
    assert len(net.tokenizer) == len(tokenizer)  # without the MLM head, no mask token is added
    assert "base_model.logit_scale" in bare.unused and "cross_attn.in_proj_weight" in bare.unused
    assert {key.split(".")[0] for key in bare.unused} == {
        "base_model", "classifier", "cross_attn", "cross_modal_transformer", "ln_pre_t", "ln_pre_i", "ln_post",
        "mlm_head",
    }  # fmt: skip
    with torch.no_grad():
        assert torch.equal(net.encode_text(TEXTS), ddp.net.encode_text(TEXTS))


def test_the_command_writes_a_checkpoint_and_ends_errors_in_one_line(tokenizer, clip_dir, tmp_path, capsys) -> None:
    state = irra_state(len(tokenizer))
    torch.save({"model": state}, tmp_path / "best.pth")

    def command(name: str, *options: str) -> int:
        files = ["--checkpoint", str(tmp_path / f"{name}.pth"), "--out", str(tmp_path / f"{name}.ckpt")]
        return retriever_main(["import-irra", *files, "--clip", str(clip_dir), "--image-size", "64", "32", *options])

    assert command("best", "--no-heads") == 0
    out = capsys.readouterr().out
    assert f"wrote {tmp_path / 'best.ckpt'}" in out and "losses sdm" in out and "mlm_head (6)" in out
    del state["base_model.transformer.resblocks.1.ln_2.bias"]
    torch.save({"model": state}, tmp_path / "broken.pth")
    assert command("broken") == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("error: ")
    assert f"{tmp_path / 'broken.pth'}: missing key 'base_model.transformer.resblocks.1.ln_2.bias'" in err
    assert not (tmp_path / "broken.ckpt").exists()


def test_unknown_keys_other_clips_and_grids_are_refused_naming_them(tokenizer, clip_dir, tmp_path) -> None:
    state = irra_state(len(tokenizer))
    torch.save({"model": {**state, "base_model.visual.extra": torch.zeros(1)}}, tmp_path / "extra.pth")
    with pytest.raises(ValueError, match=r"extra\.pth: unknown key 'base_model\.visual\.extra'"):
        import_irra(tmp_path / "extra.pth", clip_dir, tmp_path / "out.ckpt", image_size=IMAGE_HW)
    torch.save({"model": state}, tmp_path / "best.pth")
    with pytest.raises(ValueError, match=r"best\.pth: 8 visual positions do not fit 384x128 images at patch 16"):
        import_irra(tmp_path / "best.pth", clip_dir, tmp_path / "out.ckpt")  # IRRA's default size
    wider = {**state, "base_model.text_projection": torch.zeros(WIDTH, 2 * EMBED)}
    torch.save({"model": wider}, tmp_path / "wider.pth")
    with pytest.raises(ValueError, match=r"not the CLIP .*wider\.pth was trained from: projection_dim 64 \(IRRA: 1"):
        import_irra(tmp_path / "wider.pth", clip_dir, tmp_path / "out.ckpt", image_size=IMAGE_HW)
    assert not (tmp_path / "out.ckpt").exists()


def test_a_pickle_that_is_not_weights_only_is_refused_without_advice_to_load_it_anyway(tokenizer, tmp_path) -> None:
    path = tmp_path / "unsafe.pth"
    torch.save({"model": irra_state(len(tokenizer)), "args": argparse.Namespace(img_size=(384, 128))}, path)
    with pytest.raises(ValueError, match=r"unsafe\.pth: refused: not a weights-only checkpoint") as error:
        import_irra(path, tmp_path, tmp_path / "out.ckpt")
    assert "weights_only" not in str(error.value) and "False" not in str(error.value)

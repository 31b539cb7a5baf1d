"""IRRA's released checkpoints (`best.pth`) as ireid retriever checkpoints: a published model searches through ireid.

IRRA keeps its own copy of OpenAI's CLIP as `base_model` and saves `{"model": IRRA.state_dict(), "optimizer": ...,
"scheduler": ..., "epoch": ...}`; ireid's retriever is transformers' `CLIPModel` with the same heads. The two name
and lay out the same weights differently:

- OpenAI's attention holds one `in_proj_weight` / `in_proj_bias` for q, k and v: split into `q_proj`, `k_proj`,
  `v_proj` (in that order, along the output dimension);
- OpenAI projects with `x @ proj` (`visual.proj`, `text_projection`), transformers with a Linear: transposed;
- blocks: `ln_1`/`ln_2` → `layer_norm1`/`layer_norm2`, `mlp.c_fc`/`mlp.c_proj` → `mlp.fc1`/`mlp.fc2`; towers:
  `conv1` → the patch embedding, `ln_pre` → `pre_layrnorm`, `ln_post` → `post_layernorm`, `ln_final` →
  `final_layer_norm`; the class embedding and both position tables are copied (the visual table already has the
  person crop's grid, 24×8 at 384×128 and patch 16, which is ireid's layout too);
- the ID classifier is copied; the MLM head's cross-attention, LayerNorms and head keep their names, its blocks
  become `nn.TransformerEncoderLayer`s (`attn` → `self_attn`, `ln_1`/`ln_2` → `norm1`/`norm2`, `c_fc`/`c_proj` →
  `linear1`/`linear2`);
- IRRA saves most weights in fp16 (its `convert_weights`): they are widened to fp32, exactly.

The network is built the way ireid builds a real-weights retriever: from a Hugging Face CLIP directory (or a hub id
in the local cache), whose config and tokenizer are used and whose weights are replaced. The directory must hold the
CLIP IRRA fine-tuned (ViT-B/16 for the released models): the architecture read from the checkpoint is checked
against its config, and its tokenizer must be CLIP's BPE, which IRRA uses. The written checkpoint names the
directory, as any real-weights retriever checkpoint does.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from ireid.core.checkpoints import read_torch_file, save_torch_file
from ireid.retriever.model import RetrieverNet, RetrieverSettings, build_retriever_net

IRRA_IMAGE_SIZE = (384, 128)
"""IRRA's default `--img_size` (height, width); the visual position count alone does not give the grid's shape."""

HEAD_DIM = 64  # OpenAI's CLIP and IRRA's cross-modal transformer use width // 64 attention heads
MASK_FROM_END = 3  # IRRA's tokenizer ends with <|mask|>, <|startoftext|>, <|endoftext|>
LOGIT_SCALE = "base_model.logit_scale"  # not in IRRA's CLIP (it fixes 1/τ), but in OpenAI's: accepted and unused
VOCAB_TABLES = ("features.clip.text_model.embeddings.token_embedding.weight", "mlm.head.fc.weight", "mlm.head.fc.bias")

_VISION_BLOCKS = "base_model.visual.transformer.resblocks"
_TEXT_BLOCKS = "base_model.transformer.resblocks"
_MLM_BLOCKS = "cross_modal_transformer.resblocks"
_HEAD_PREFIXES = (
    "classifier.",
    "cross_attn.",
    "cross_modal_transformer.",
    "ln_pre_t.",
    "ln_pre_i.",
    "ln_post.",
    "mlm_head.",
)


def _weight_and_bias(names: Mapping[str, str]) -> dict[str, str]:
    return {f"{irra}.{part}": f"{ireid}.{part}" for irra, ireid in names.items() for part in ("weight", "bias")}


# One OpenAI residual block's parts besides the attention's in-projection: IRRA name → ireid name, in transformers'
# CLIP layers and in ireid's `nn.TransformerEncoderLayer`s (norm first, QuickGELU) of the MLM head.
_CLIP_BLOCK = {
    "attn.out_proj": "self_attn.out_proj",
    "ln_1": "layer_norm1",
    "mlp.c_fc": "mlp.fc1",
    "mlp.c_proj": "mlp.fc2",
    "ln_2": "layer_norm2",
}
_TORCH_BLOCK = {
    "attn.out_proj": "self_attn.out_proj",
    "ln_1": "norm1",
    "mlp.c_fc": "linear1",
    "mlp.c_proj": "linear2",
    "ln_2": "norm2",
}


@dataclass(frozen=True)
class _Rule:
    """Where one IRRA tensor goes: several targets split it in equal parts along dim 0 (q, k, v); `transpose` turns
    an OpenAI `x @ W` projection into a Linear weight."""

    targets: tuple[str, ...]
    transpose: bool = False


@dataclass(frozen=True)
class IrraArchitecture:
    """The CLIP and heads of an IRRA state dict, read from the tensors' shapes and the blocks' keys.

    Attention heads are not in the weights: OpenAI's CLIP and IRRA use width // 64. `num_ids` and `mlm_layers` are
    None where the checkpoint has no ID classifier or MLM head.
    """

    vision_width: int
    vision_layers: int
    vision_mlp: int
    patch_size: int
    image_positions: int
    text_width: int
    text_layers: int
    text_mlp: int
    vocab_size: int
    context_length: int
    embed_dim: int
    num_ids: int | None
    mlm_layers: int | None

    @classmethod
    def of(cls, state: Mapping[str, Tensor], where: str) -> IrraArchitecture:
        if f"{_VISION_BLOCKS}.0.attn.in_proj_weight" not in state and any(".visual.layer1." in k for k in state):
            raise ValueError(f"{where}: a ResNet image encoder; ireid's retriever is a ViT (IRRA's ViT-B/16 models)")

        def shape(key: str) -> torch.Size:
            if key not in state:
                raise _key_error(where, "missing key", [key])
            return state[key].shape

        classifier = "classifier.weight" in state
        mlm = f"{_MLM_BLOCKS}.0.attn.in_proj_weight" in state
        return cls(
            vision_width=shape("base_model.visual.conv1.weight")[0],
            vision_layers=_count_blocks(state, _VISION_BLOCKS),
            vision_mlp=shape(f"{_VISION_BLOCKS}.0.mlp.c_fc.weight")[0],
            patch_size=shape("base_model.visual.conv1.weight")[-1],
            image_positions=shape("base_model.visual.positional_embedding")[0],
            text_width=shape("base_model.ln_final.weight")[0],
            text_layers=_count_blocks(state, _TEXT_BLOCKS),
            text_mlp=shape(f"{_TEXT_BLOCKS}.0.mlp.c_fc.weight")[0],
            vocab_size=shape("base_model.token_embedding.weight")[0],
            context_length=shape("base_model.positional_embedding")[0],
            embed_dim=shape("base_model.text_projection")[1],
            num_ids=shape("classifier.weight")[0] if classifier else None,
            mlm_layers=_count_blocks(state, _MLM_BLOCKS) if mlm else None,
        )

    def config_values(self) -> dict[str, Any]:
        """The `CLIPConfig` values this CLIP needs, by dotted name."""
        return {
            "vision_config.hidden_size": self.vision_width,
            "vision_config.num_hidden_layers": self.vision_layers,
            "vision_config.num_attention_heads": self.vision_width // HEAD_DIM,
            "vision_config.intermediate_size": self.vision_mlp,
            "vision_config.patch_size": self.patch_size,
            "vision_config.hidden_act": "quick_gelu",
            "text_config.hidden_size": self.text_width,
            "text_config.num_hidden_layers": self.text_layers,
            "text_config.num_attention_heads": self.text_width // HEAD_DIM,
            "text_config.intermediate_size": self.text_mlp,
            "text_config.hidden_act": "quick_gelu",
            "projection_dim": self.embed_dim,
        }

    def check_image_size(self, image_size: tuple[int, int], where: str) -> None:
        """The person grid of `image_size` must have the checkpoint's visual positions (IRRA's stride = patch)."""
        height, width = image_size
        p = self.patch_size
        if height % p or width % p or (height // p) * (width // p) + 1 != self.image_positions:
            raise ValueError(
                f"{where}: {self.image_positions - 1} visual positions do not fit {height}x{width} images at patch "
                f"{p}; give the image size IRRA was trained at (its --img_size; its --stride_size must equal the patch)"
            )


@dataclass(frozen=True)
class IrraImport:
    """What `import_irra` wrote: the checkpoint `out`, the loaded network, the architecture read from the IRRA file,
    and the IRRA keys that ireid's network does not use."""

    out: Path
    net: RetrieverNet
    architecture: IrraArchitecture
    unused: tuple[str, ...]


def read_irra_state(path: str | Path) -> dict[str, Tensor]:
    """IRRA's model state dict from `best.pth` (`{"model": ...}`) or a bare state dict, `module.` (DDP) prefixes
    removed, loaded with `weights_only=True`."""
    contents = read_torch_file(path, "IRRA checkpoint")
    state = contents.get("model", contents) if isinstance(contents, dict) else None
    if not isinstance(state, Mapping) or not state:
        raise ValueError(f"{path}: not an IRRA checkpoint: expected a dict with field 'model' or a state dict")
    for key, value in state.items():
        if not isinstance(value, Tensor):
            raise ValueError(f"{path}: not an IRRA checkpoint: {key!r} is not a tensor")
    if all(key.startswith("module.") for key in state):
        return {key.removeprefix("module."): value for key, value in state.items()}
    return dict(state)


def import_irra(
    checkpoint: str | Path,
    clip: str | Path,
    out: str | Path,
    image_size: tuple[int, int] = IRRA_IMAGE_SIZE,
    heads: bool = True,
) -> IrraImport:
    """Convert IRRA's `checkpoint` into an ireid retriever checkpoint at `out` (loaded by `inference.load_retriever`).

    `clip` is the Hugging Face CLIP directory (or cached hub id) of the CLIP IRRA fine-tuned, for its config and
    tokenizer; `image_size` is IRRA's (H, W). With `heads`, IRRA's ID classifier and MLM head become ireid's `id`
    and `mlm` heads; without, they are reported unused and the checkpoint has the features alone.
    """
    where = str(checkpoint)
    irra = read_irra_state(checkpoint)
    arch = IrraArchitecture.of(irra, where)
    rules = _rules(arch)
    _check_keys(irra, rules, where)
    arch.check_image_size(image_size, where)
    unused = {LOGIT_SCALE} & irra.keys()
    if not heads:
        unused |= {key for key in rules if key.startswith(_HEAD_PREFIXES)}
    net = build_retriever_net(_settings(arch, clip, image_size, heads))
    _check_clip(arch, net, where, str(clip))
    state = _convert(irra, {key: rule for key, rule in rules.items() if key not in unused}, arch, net, where)
    # the directory's: ireid, like IRRA, scales the similarities by a fixed 1/τ instead
    state["features.clip.logit_scale"] = net.features.clip.logit_scale.detach()
    net.load_state_dict(state)
    return IrraImport(_write_checkpoint(net.eval(), out), net, arch, tuple(sorted(unused)))


def _count_blocks(state: Mapping[str, Tensor], prefix: str) -> int:
    """Blocks up to the highest index present, so that a gap shows up as a missing key."""
    pattern = re.compile(rf"{re.escape(prefix)}\.(\d+)\.")
    found = [int(match.group(1)) for key in state if (match := pattern.match(key))]
    return max(found) + 1 if found else 0


def _rules(arch: IrraArchitecture) -> dict[str, _Rule]:
    """Every key of an IRRA state dict of this architecture, with its ireid target."""
    vision, text = "features.clip.vision_model", "features.clip.text_model"
    names = {
        "base_model.visual.conv1.weight": f"{vision}.embeddings.patch_embedding.weight",
        "base_model.visual.class_embedding": f"{vision}.embeddings.class_embedding",
        "base_model.visual.positional_embedding": f"{vision}.embeddings.position_embedding.weight",
        "base_model.token_embedding.weight": f"{text}.embeddings.token_embedding.weight",
        "base_model.positional_embedding": f"{text}.embeddings.position_embedding.weight",
        **_weight_and_bias(
            {
                "base_model.visual.ln_pre": f"{vision}.pre_layrnorm",
                "base_model.visual.ln_post": f"{vision}.post_layernorm",
                "base_model.ln_final": f"{text}.final_layer_norm",
            }
        ),
    }
    if arch.num_ids is not None:
        names |= _weight_and_bias({"classifier": "classifier"})
    if arch.mlm_layers is not None:
        names |= {f"cross_attn.in_proj_{part}": f"mlm.cross_attn.in_proj_{part}" for part in ("weight", "bias")}
        mlm = {name: f"mlm.{name}" for name in ("cross_attn.out_proj", "ln_pre_t", "ln_pre_i", "ln_post")}
        names |= _weight_and_bias(mlm | {f"mlm_head.{name}": f"mlm.head.{name}" for name in ("dense", "ln", "fc")})
    rules = {key: _Rule((target,)) for key, target in names.items()}
    rules["base_model.visual.proj"] = _Rule(("features.clip.visual_projection.weight",), transpose=True)
    rules["base_model.text_projection"] = _Rule(("features.clip.text_projection.weight",), transpose=True)
    rules |= _blocks(_VISION_BLOCKS, f"{vision}.encoder.layers", arch.vision_layers, _CLIP_BLOCK, split_qkv=True)
    rules |= _blocks(_TEXT_BLOCKS, f"{text}.encoder.layers", arch.text_layers, _CLIP_BLOCK, split_qkv=True)
    rules |= _blocks(_MLM_BLOCKS, "mlm.transformer.layers", arch.mlm_layers or 0, _TORCH_BLOCK, split_qkv=False)
    return rules


def _blocks(irra: str, ireid: str, layers: int, parts: Mapping[str, str], split_qkv: bool) -> dict[str, _Rule]:
    """The rules of `layers` residual blocks; `split_qkv` for transformers' CLIP, whose q, k, v are separate."""
    rules = {}
    for i in range(layers):
        source, target = f"{irra}.{i}", f"{ireid}.{i}"
        for part in ("weight", "bias"):
            qkv = (
                [f"{target}.self_attn.{n}_proj.{part}" for n in "qkv"]
                if split_qkv
                else [f"{target}.self_attn.in_proj_{part}"]
            )
            rules[f"{source}.attn.in_proj_{part}"] = _Rule(tuple(qkv))
        rules |= {f"{source}.{a}": _Rule((f"{target}.{b}",)) for a, b in _weight_and_bias(parts).items()}
    return rules


def _check_keys(irra: Mapping[str, Tensor], rules: Mapping[str, _Rule], where: str) -> None:
    """Every key the architecture implies is present, and no other (but OpenAI's logit scale)."""
    for problem, keys in (
        ("missing key", sorted(rules.keys() - irra.keys())),
        ("unknown key", sorted(irra.keys() - rules.keys() - {LOGIT_SCALE})),
    ):
        if keys:
            raise _key_error(where, problem, keys)


def _key_error(where: str, problem: str, keys: list[str]) -> ValueError:
    more = f" (and {len(keys) - 1} more)" if len(keys) > 1 else ""
    return ValueError(f"{where}: {problem} {keys[0]!r}{more} for IRRA's model (a CLIP ViT with ID and MLM heads)")


def _settings(arch: IrraArchitecture, clip: str | Path, image_size: tuple[int, int], heads: bool) -> RetrieverSettings:
    """The settings that rebuild the network: the CLIP directory, the checkpoint's grid, text length and heads."""
    local = Path(clip).expanduser()
    settings = RetrieverSettings(
        data_dir="",  # nothing is read from a data set: the heads' sizes are the checkpoint's
        model=str(local.resolve()) if local.is_dir() else str(clip),
        losses="sdm",
        image_size=tuple(image_size),
        text_length=arch.context_length,
    )
    if heads and arch.num_ids is not None:
        settings = dataclasses.replace(settings, losses=settings.losses + "+id", num_ids=arch.num_ids)
    if heads and arch.mlm_layers is not None:
        settings = dataclasses.replace(settings, losses=settings.losses + "+mlm", mlm_layers=arch.mlm_layers)
    return settings


def _check_clip(arch: IrraArchitecture, net: RetrieverNet, where: str, clip: str) -> None:
    """The CLIP directory has the checkpoint's architecture and CLIP's tokenizer (start and end of text last)."""
    config = net.features.clip.config
    wrong = []
    for name, expected in arch.config_values().items():
        section, _, field = name.rpartition(".")
        found = getattr(getattr(config, section) if section else config, field)
        if found != expected:
            wrong.append(f"{name} {found} (IRRA: {expected})")
    if wrong:
        raise ValueError(f"{clip}: not the CLIP {where} was trained from: {', '.join(wrong)}")
    tokenizer, vocab = net.tokenizer, arch.vocab_size
    if (tokenizer.bos_token_id, tokenizer.eos_token_id) != (vocab - 2, vocab - 1):
        raise ValueError(
            f"{clip}: its tokenizer's start and end of text are ids {tokenizer.bos_token_id} and "
            f"{tokenizer.eos_token_id}, IRRA's CLIP BPE has {vocab - 2} and {vocab - 1}"
        )


def _convert(
    irra: Mapping[str, Tensor], rules: Mapping[str, _Rule], arch: IrraArchitecture, net: RetrieverNet, where: str
) -> dict[str, Tensor]:
    """ireid's state for the ruled IRRA tensors, in fp32, shapes checked against the network."""
    expected = net.state_dict()
    state: dict[str, Tensor] = {}
    for key, rule in rules.items():
        tensor = irra[key].float()
        tensor = tensor.T if rule.transpose else tensor
        for target, part in zip(rule.targets, tensor.chunk(len(rule.targets)), strict=True):
            if target in VOCAB_TABLES:
                part = _with_mask_rows(part, expected[target].shape[0], arch.vocab_size)
            if part.shape != expected[target].shape:
                raise ValueError(
                    f"{where}: {key!r} has shape {list(irra[key].shape)}, which does not fit ireid's {target!r} "
                    f"{list(expected[target].shape)}"
                )
            state[target] = part
    return state


def _with_mask_rows(table: Tensor, rows: int, vocab: int) -> Tensor:
    """A vocabulary table with rows for ids beyond IRRA's vocabulary: ireid appends `<|mask|>` to CLIP's tokenizer
    where IRRA gave it id vocab - 3, so the appended rows take IRRA's mask row."""
    extra = rows - table.shape[0]
    if extra <= 0:
        return table
    return torch.cat([table, table[vocab - MASK_FROM_END].expand(extra, *table.shape[1:])])


def _write_checkpoint(net: RetrieverNet, out: str | Path) -> Path:
    """A retriever checkpoint as `inference.retriever_from_checkpoint` reads it: settings and state dict."""
    hparams = {**dataclasses.asdict(net.settings), "image_size": list(net.settings.image_size)}
    return save_torch_file(out, {"hyper_parameters": hparams, "state_dict": net.state_dict()})

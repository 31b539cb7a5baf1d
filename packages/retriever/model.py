"""The retriever network: CLIP as IRRA uses it, its heads and its tokenizer, built without Lightning.

IRRA resizes CLIP's positional embeddings once, before fine-tuning: the text table linearly (77 → 192
for long descriptions) and the square visual grid bilinearly to the person crop's grid (14×14 → 24×8 for
384×128 at patch 16). The resized tables are then ordinary parameters.

`build_retriever_net` is the one place the network is put together from its settings (the LightningModule's
constructor arguments that shape it): `RetrieverModule` builds it for training and `inference.py` rebuilds it
from a checkpoint, so a trained retriever can be used without its LightningModule. The network's state-dict
keys (`features.*`, `classifier.*`, `mlm.*`, `attribute_heads.*`) are the checkpoint's.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from transformers import CLIPModel, PreTrainedTokenizerBase

from ireid.core.factory import build_model
from ireid.core.loader import load_records
from ireid.core.person_vision import resize_vision_positions
from ireid.core.tokenizer import dataset_tokenizer
from ireid.retriever.attributes_head import AttributeHeads, attribute_vocabulary
from ireid.retriever.losses import make_id_classifier
from ireid.retriever.mlm import CrossModalMLM

EXTRA_LOSSES = ("id", "mlm", "attr")
TEXT_CHUNK = 32  # texts per length bucket of `ClipFeatures.text_pooled` (16 and 32 time alike on 2 cores)


def resize_text_positions(model: CLIPModel, length: int) -> None:
    """Interpolate the text position table linearly to `length` positions."""
    embeddings = model.text_model.embeddings
    old = embeddings.position_embedding.weight.data  # [L, D]
    if old.shape[0] == length:
        return
    new = F.interpolate(old.T.unsqueeze(0), size=length, mode="linear", align_corners=False)[0].T
    embeddings.position_embedding = nn.Embedding(length, old.shape[1]).to(old.device, old.dtype)
    embeddings.position_embedding.weight.data.copy_(new)
    embeddings.register_buffer("position_ids", torch.arange(length, device=old.device)[None], persistent=False)
    model.config.text_config.max_position_embeddings = length


def add_token_rows(model: CLIPModel, vocab_size: int) -> None:
    """Grow the text token table to `vocab_size` rows, the new ones at the mean embedding (a real CLIP's added mask
    token): transformers' `CLIPModel.resize_token_embeddings` is not implemented for CLIP's two towers."""
    embeddings = model.text_model.embeddings
    old = embeddings.token_embedding.weight.data  # [V, D]
    table = torch.cat([old, old.mean(0, keepdim=True).expand(vocab_size - old.shape[0], -1)])
    embeddings.token_embedding = nn.Embedding.from_pretrained(table, freeze=False)
    model.config.text_config.vocab_size = vocab_size


class ClipFeatures(nn.Module):
    """Image CLS and text EOT features (projected), plus every token projected, as IRRA's heads need."""

    def __init__(self, clip: CLIPModel):
        super().__init__()
        self.clip = clip

    @property
    def embed_dim(self) -> int:
        return self.clip.config.projection_dim

    def image_tokens(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """[B, 1 + patches, E]: post-LayerNorm and projection applied to every token; token 0 is CLS."""
        vision = self.clip.vision_model
        hidden = vision(pixel_values=pixel_values).last_hidden_state
        return self.clip.visual_projection(vision.post_layernorm(hidden))

    def text_tokens(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """([B, L, E] every token projected, [B, E] the pooled EOT token projected)."""
        out = self.clip.text_model(input_ids=input_ids, attention_mask=attention_mask)
        return self.clip.text_projection(out.last_hidden_state), self.clip.text_projection(out.pooler_output)

    def text_pooled(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor, chunk: int = TEXT_CHUNK
    ) -> torch.Tensor:
        """[B, E] the pooled EOT token projected, texts encoded in length-sorted chunks, each cut to its longest.

        Under CLIP's causal mask nothing after a text's EOT reaches it, so a right-padded batch gives the same
        features however it is cut, while the padding's work is saved: a batch of partial descriptions (0 to
        every answer) is about half padding. A left-padded batch is encoded whole.
        """
        lengths = attention_mask.sum(1)
        positions = torch.arange(attention_mask.shape[1], device=attention_mask.device)
        if not torch.equal(attention_mask.bool(), positions < lengths[:, None]):
            return self.text_tokens(input_ids, attention_mask)[1]
        order = torch.argsort(lengths, descending=True)
        parts = []
        for rows in order.split(chunk):
            width = int(lengths[rows[0]])
            out = self.clip.text_model(input_ids=input_ids[rows, :width], attention_mask=attention_mask[rows, :width])
            parts.append(out.pooler_output)
        return self.clip.text_projection(torch.cat(parts)[torch.argsort(order)])

    def image_pooled(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """[B, E] the post-LayerNorm CLS token projected: `image_tokens(...)[:, 0]` without the other tokens' work."""
        return self.clip.visual_projection(self.clip.vision_model(pixel_values=pixel_values).pooler_output)

    def encode_images(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """Only the CLS token is normalised and projected: what retrieval needs, without the MLM's token work."""
        return F.normalize(self.image_pooled(pixel_values).float(), dim=-1)

    def encode_text(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.text_pooled(input_ids, attention_mask).float(), dim=-1)


# --- the network and its heads --------------------------------------------------------------------------


def parse_losses(losses: str) -> tuple[str, ...]:
    """`sdm` followed by any of the extra terms, each at most once, joined by `+` (e.g. `sdm+id+attr`)."""
    terms = tuple(losses.split("+"))
    if terms[0] != "sdm" or len(set(terms)) != len(terms) or not set(terms[1:]) <= set(EXTRA_LOSSES):
        raise ValueError(f"losses must be one of 'sdm' followed by any of {EXTRA_LOSSES} joined by '+', got {losses!r}")
    return terms


def count_train_ids(data_dir: str) -> int:
    """Size of the ID classifier: the train split's ids, which must be contiguous from 0."""
    pids = {r.pid for r in load_records(data_dir, "train")}
    if not pids or min(pids) < 0:
        raise ValueError(f"{data_dir}: training ids must be contiguous from 0, got {sorted(pids)[:5]}...")
    return max(pids) + 1


def train_attribute_vocabulary(data_dir: str) -> dict[str, list[str]]:
    """The attribute heads' vocabulary, read from the train split's records."""
    return attribute_vocabulary(load_records(data_dir, "train"), f"{data_dir} (train split)")


@dataclass(frozen=True)
class RetrieverSettings:
    """What shapes the network: the `RetrieverModule` constructor arguments of the same names and defaults.

    Training-only arguments (learning rates, temperature, loss weights) are not here, so a checkpoint's saved
    hyper-parameters rebuild the network through `from_hparams` without knowing about training.
    """

    data_dir: str
    model: str = "tiny"
    vocab_size: int = 2048
    model_overrides: dict[str, Any] | None = None
    losses: str = "sdm+id+mlm"
    num_ids: int | None = None
    image_size: tuple[int, int] = (128, 64)
    text_length: int = 128
    mlm_layers: int = 4
    mlm_heads: int | None = None
    attribute_values: dict[str, list[str]] | None = None
    seed: int = 0

    @classmethod
    def from_hparams(cls, hparams: Mapping[str, Any]) -> RetrieverSettings:
        """The settings among a LightningModule's or a checkpoint's hyper-parameters; other keys are ignored."""
        names = {f.name for f in dataclasses.fields(cls)}
        kwargs = {name: value for name, value in hparams.items() if name in names}
        if "image_size" in kwargs:
            kwargs["image_size"] = tuple(kwargs["image_size"])  # YAML and checkpoints hold a list
        return cls(**kwargs)

    def resolved(self) -> RetrieverSettings:
        """The heads' sizes filled in from the train split where the losses need them and they are not given.

        `RetrieverModule` stores the resolved values with its checkpoints; older checkpoints, which hold None,
        read the train split again here.
        """
        terms = parse_losses(self.losses)
        num_ids, values = self.num_ids, self.attribute_values
        if "id" in terms and num_ids is None:
            num_ids = count_train_ids(self.data_dir)
        if "attr" in terms and values is None:
            values = train_attribute_vocabulary(self.data_dir)
        return dataclasses.replace(self, num_ids=num_ids, attribute_values=values)


class RetrieverEncoding:
    """Tokenising and encoding over `features` and `tokenizer`, shared by `RetrieverNet` and `RetrieverModule`.

    One implementation for both, so that a network loaded for inference encodes exactly as the LightningModule
    that trained it. The class using it provides `features`, `tokenizer`, `text_length` and `device`.
    """

    features: ClipFeatures
    tokenizer: PreTrainedTokenizerBase
    text_length: int
    device: torch.device

    def tokenize(self, texts: list[str]) -> dict[str, torch.Tensor]:
        # Padded lists, then one NumPy array each: the tokenizer's own conversion ("np" or "pt") walks every id
        # through Python checks, half the tokenising time of a batch of dialogue texts
        enc = self.tokenizer(texts, padding=True, truncation=True, max_length=self.text_length)
        return {
            name: torch.from_numpy(np.array(enc[name], dtype=np.int64)).to(self.device)
            for name in ("input_ids", "attention_mask")
        }

    def encode_text(self, texts: list[str]) -> torch.Tensor:
        """[B, E] L2-normalised float32 text embeddings."""
        return self.features.encode_text(**self.tokenize(texts))

    def encode_images(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """[B, E] L2-normalised float32 image embeddings of [B, 3, H, W] normalised crops."""
        return self.features.encode_images(pixel_values)


class RetrieverNet(RetrieverEncoding, nn.Module):
    """CLIP features, the optional heads (ID classifier, cross-modal MLM, attribute heads) and the tokenizer.

    A head the losses do not use is None. `settings` are the resolved settings it was built from.
    """

    def __init__(
        self,
        settings: RetrieverSettings,
        tokenizer: PreTrainedTokenizerBase,
        features: ClipFeatures,
        classifier: nn.Linear | None = None,
        mlm: CrossModalMLM | None = None,
        attribute_heads: AttributeHeads | None = None,
    ):
        super().__init__()
        self.settings = settings
        self.tokenizer = tokenizer
        self.features = features
        self.classifier = classifier
        self.mlm = mlm
        self.attribute_heads = attribute_heads

    @property
    def hparams(self) -> RetrieverSettings:
        """The settings under the LightningModule's name, for code written against `RetrieverModule`."""
        return self.settings

    @property
    def text_length(self) -> int:
        return self.settings.text_length

    @property
    def image_size(self) -> tuple[int, int]:
        return self.settings.image_size

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device


def build_retriever_net(settings: RetrieverSettings) -> RetrieverNet:
    """The network as `RetrieverModule` trains it: CLIP (tiny with the data set's tokenizer, or real weights),
    a mask token where MLM needs one, resized position tables, a fixed logit scale, and the heads the losses use.

    Construction order (and so the random initialisation after the factory's seed) is the module's.
    """
    settings = settings.resolved()
    terms = parse_losses(settings.losses)
    tokenizer = dataset_tokenizer(settings.data_dir, settings.vocab_size) if settings.model == "tiny" else None
    built = build_model(
        "clip", settings.model, tokenizer=tokenizer, overrides=settings.model_overrides, seed=settings.seed
    )
    tokenizer = built.tokenizer
    tokenizer.model_max_length = settings.text_length
    if "mlm" in terms and tokenizer.mask_token is None:  # real CLIP vocabularies have none; IRRA adds one
        tokenizer.add_special_tokens({"mask_token": "<|mask|>"})
        add_token_rows(built.model, len(tokenizer))
    resize_text_positions(built.model, settings.text_length)
    resize_vision_positions(built.model, settings.image_size)
    built.model.logit_scale.requires_grad_(False)  # IRRA fixes the scale at 1/τ
    features = ClipFeatures(built.model.train())  # from_pretrained returns eval mode
    dim = features.embed_dim
    classifier = mlm = heads = None
    if "id" in terms:
        classifier = make_id_classifier(dim, settings.num_ids)
    if "mlm" in terms:
        mlm = CrossModalMLM(dim, len(tokenizer), layers=settings.mlm_layers, heads=settings.mlm_heads)
    if "attr" in terms:
        heads = AttributeHeads(dim, settings.attribute_values)
    return RetrieverNet(settings, tokenizer, features, classifier, mlm, heads)

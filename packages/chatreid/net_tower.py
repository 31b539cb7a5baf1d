"""An attribute net as Qwen2-VL's vision encoder: eyes that name attributes, frozen, read by a merger that learns.

A person tower (`person_tower.py`) gives the decoder features trained to match whole descriptions; ICL's Eq. 2
("can this text describe the image?") asks whether each value a text states is what the image shows. An attribute
net (`ireid.core.attribute_net`, `ireid attribute-net fit`) is trained for exactly that, so `NetTowerVisual`
puts its readings where Qwen2-VL's encoder was:

1. it rebuilds each image from the processor's flat patches (`tower_images.patches_to_images`), so the processor,
   the chat template and the image-token counts stay Qwen2-VL's own; the processor normalises pixels as the net
   was trained;
2. runs the frozen net: per attribute, the probability of each of its values;
3. its `merger` gives each attribute one image token (its values' embeddings weighed by those probabilities, the
   embeddings started at the decoder's own words for the values, plus a learned embedding of the slot), and the
   image's remaining merge windows a learned embedding alone.

The net never trains; the merger trains as Qwen2-VL's merger does (with `merger_in_encoder: false`, also in stage
3, as ICL's SFT uses it). A checkpoint records the net's vocabulary and settings (`person_vision` with kind
`attribute-net`), so restoring needs the checkpoint alone.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn
from transformers.modeling_outputs import BaseModelOutputWithPooling

from ireid.chatreid.tower_images import patches_to_images
from ireid.core.attribute_net import PIXELS, AttributeNet
from ireid.core.vocabulary.attributes import ATTRIBUTES, bare

NET_TOWER = "attribute-net"


def net_architecture(net: AttributeNet) -> dict[str, Any]:
    """What rebuilding the net inside a model needs, weights aside (plain types: checkpoints carry it)."""
    return {
        "kind": NET_TOWER,
        "vocabulary": {name: list(values) for name, values in net.vocabulary.items()},
        "settings": dict(net.settings),
        "image_hw": list(PIXELS.size_hw),
        "mean": list(PIXELS.mean),
        "std": list(PIXELS.std),
    }


class NetTowerMerger(nn.Module):
    """Readings [images, attributes, values] → one decoder embedding per merge window: an attribute's window gets the
    mean of its values' embeddings (`words`) weighed by their probabilities, every window a learned embedding of its
    slot. `speak` starts each value's embedding at the decoder's own embedding of the words texts use for it, so an
    image that shows a blue top gives the token a text saying "blue" has: the decoder compares like with like."""

    def __init__(self, attributes: int, values: int, slots: int, dim: int):
        super().__init__()
        self.words = nn.Parameter(torch.randn(attributes, values, dim) * 0.02)
        self.slot = nn.Parameter(torch.randn(slots, dim) * 0.02)

    def forward(self, readings: Tensor) -> Tensor:
        tokens = torch.einsum("nav,avd->nad", readings, self.words)
        rest = tokens.new_zeros(tokens.shape[0], self.slot.shape[0] - tokens.shape[1], tokens.shape[2])
        return (torch.cat([tokens, rest], dim=1) + self.slot[None]).flatten(0, 1)

    @torch.no_grad()
    def speak(self, vocabulary: dict[str, list[str]], embeddings: Tensor, tokenizer: Any) -> None:
        """Each value's embedding := the mean of `embeddings` over the tokens of its words as a text says them
        mid-sentence (`value_words`), for a tokenizer called as Hugging Face's are."""
        for a, (attribute, values) in enumerate(vocabulary.items()):
            for v, value in enumerate(values):
                ids = tokenizer(" " + value_words(attribute, value), add_special_tokens=False)["input_ids"]
                self.words[a, v] = embeddings[ids].mean(0).to(self.words.dtype)


def value_words(attribute: str, value: str) -> str:
    """How the pedestrian vocabulary's texts say `value` ("T-shirt", "no bag", "blue"), article dropped; a value
    outside it as it is written."""
    spec = ATTRIBUTES.get(attribute)
    return bare(spec.phrase(value)) if spec is not None and value in spec.values else value


class NetTowerVisual(nn.Module):
    """Qwen2-VL's `visual` with a frozen attribute net inside (module docstring)."""

    def __init__(
        self, architecture: dict[str, Any], dim: int, patch_size: int, merge_size: int, temporal_patch_size: int
    ):
        super().__init__()
        self.net = AttributeNet(architecture["vocabulary"], **architecture["settings"])
        self.net.requires_grad_(False)
        self.image_hw = tuple(int(s) for s in architecture["image_hw"])
        self.patch_size, self.spatial_merge_size, self.temporal_patch_size = patch_size, merge_size, temporal_patch_size
        self.grid_hw = (self.image_hw[0] // patch_size, self.image_hw[1] // patch_size)
        slots = (self.grid_hw[0] // merge_size) * (self.grid_hw[1] // merge_size)
        attributes = len(self.net.vocabulary)
        if slots < attributes:
            height, width = self.image_hw
            raise ValueError(f"a {height}x{width} image gives {slots} image tokens, fewer than the net's "
                             f"{attributes} attributes: use a smaller patch_size")  # fmt: skip
        self.values = max(len(v) for v in self.net.vocabulary.values())
        self.merger = NetTowerMerger(attributes, self.values, slots, dim)

    @property
    def dtype(self) -> torch.dtype:
        """What Qwen2-VL casts pixel values to before calling its visual module."""
        return self.merger.words.dtype

    def train(self, mode: bool = True) -> NetTowerVisual:
        """The net stays in eval mode (dropout off, batch-norm statistics fixed): it is frozen whatever the stage."""
        super().train(mode)
        self.net.eval()
        return self

    def readings(self, images: Tensor) -> Tensor:
        """[N, attributes, values]: each attribute's value probabilities, zero past its own values."""
        with torch.no_grad():
            logits = self.net(images.float())
        out = images.new_zeros(len(images), len(logits), self.values, dtype=torch.float32)
        for a, scores in enumerate(logits.values()):
            out[:, a, : scores.shape[1]] = scores.softmax(-1)
        return out

    def forward(self, hidden_states: Tensor, grid_thw: Tensor, **kwargs: Any) -> BaseModelOutputWithPooling:
        images = patches_to_images(hidden_states, grid_thw, self.grid_hw, self.patch_size, self.spatial_merge_size,
                                   self.temporal_patch_size, "the attribute net")  # fmt: skip
        readings = self.readings(images).to(self.dtype)
        return BaseModelOutputWithPooling(last_hidden_state=readings, pooler_output=self.merger(readings))


def install_net_tower(model: nn.Module, architecture: dict[str, Any]) -> NetTowerVisual:
    """Replace a Qwen2-VL model's vision encoder by an attribute-net tower of `architecture` (`net_architecture`);
    the net's weights are loaded separately (or come with a checkpoint)."""
    vision = model.config.vision_config
    reference = model.model.visual.merger.mlp[0].weight
    visual = NetTowerVisual(
        architecture, model.config.text_config.hidden_size, vision.patch_size, vision.spatial_merge_size,
        vision.temporal_patch_size,
    ).to(dtype=reference.dtype)  # fmt: skip
    if reference.device.type != "meta":  # a model restored without initialisation gets its weights assigned
        visual.to(reference.device)
    model.model.visual = visual
    return visual

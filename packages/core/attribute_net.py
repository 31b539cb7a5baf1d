"""Eyes that name attributes: a small convolutional network that reads a person's attributes off the image.

A retriever trained for a few CPU minutes tells people apart by a whole description, yet names any single
attribute of a person poorly (about half the time on the synthetic world), and every rule that weighs candidates
by what the dialogue states needs single attributes. This network is trained for that alone, on a data set's
training images and their annotated `attributes` (training data, never the gallery's), and gives each gallery
image a probability for every value of every attribute. The `expected-gain:reader` strategy reads its candidates'
answers from it instead of from the retriever's scores.

Convolutions rather than a transformer because, from scratch and on a CPU, they learn small local parts (shoes,
glasses, a logo) in minutes; the file travels alone (`save` / `load`, weights-only) with its vocabulary.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch import Tensor, nn

from ireid.core.attribute_labels import IGNORE, attribute_labels
from ireid.core.checkpoints import read_format_file, save_torch_file
from ireid.core.images import ImageStore
from ireid.core.loader import load_records
from ireid.core.pixels import PixelSpec, decode_image, to_pixels
from ireid.core.tiny_configs import PERSON_HW

FORMAT = "ireid.attribute-net/1"
PIXELS = PixelSpec(PERSON_HW, (0.5, 0.5, 0.5), (0.25, 0.25, 0.25))


def _stage(inputs: int, outputs: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(inputs, outputs, 3, padding=1, bias=False), nn.BatchNorm2d(outputs), nn.ReLU(inplace=True),
        nn.Conv2d(outputs, outputs, 3, padding=1, bias=False), nn.BatchNorm2d(outputs), nn.ReLU(inplace=True),
        nn.MaxPool2d(2),
    )  # fmt: skip


class AttributeNet(nn.Module):
    """A strided stem and three conv stages (the crop shrinks 16-fold), a position-keeping flatten (a hat is at the
    top, shoes at the bottom) and one linear classifier per attribute; `vocabulary` maps each attribute to its
    values in head order. Channels-last: 1.3× the training steps a second on a 2-core CPU (`bench_attribute_net.py`)."""

    def __init__(self, vocabulary: Mapping[str, Sequence[str]], width: int = 16, hidden: int = 256) -> None:
        super().__init__()
        if not vocabulary or any(not values for values in vocabulary.values()):
            raise ValueError(f"an attribute net needs at least one attribute with values, got {dict(vocabulary)}")
        self.vocabulary = {name: list(values) for name, values in vocabulary.items()}
        self.settings = {"width": width, "hidden": hidden}
        channels = [width, 2 * width, 3 * width, 4 * width]
        stem = nn.Sequential(nn.Conv2d(3, width, 3, stride=2, padding=1, bias=False), nn.BatchNorm2d(width),
                             nn.ReLU(inplace=True))  # fmt: skip
        self.stages = nn.Sequential(stem, *(_stage(a, b) for a, b in itertools.pairwise(channels)))
        height, width_px = PIXELS.size_hw
        cells = (height // 16) * (width_px // 16) * channels[-1]
        self.trunk = nn.Sequential(nn.Flatten(), nn.Dropout(0.2), nn.Linear(cells, hidden), nn.ReLU(inplace=True))
        self.heads = nn.ModuleDict({name: nn.Linear(hidden, len(v)) for name, v in self.vocabulary.items()})
        self.to(memory_format=torch.channels_last)

    def forward(self, pixels: Tensor) -> dict[str, Tensor]:
        """Logits per attribute [B, V] of normalised crops [B, 3, H, W] (`PIXELS`)."""
        features = self.trunk(self.stages(pixels.contiguous(memory_format=torch.channels_last)))
        return {name: head(features) for name, head in self.heads.items()}

    @torch.no_grad()
    def probabilities(self, images: Sequence[bytes | Image.Image], batch_size: int = 256) -> dict[str, Tensor]:
        """Per attribute, [N, V] probabilities of its values (in `vocabulary` order) for each image."""
        was_training = self.training
        self.eval()
        chunks = [self(to_pixels(images[s : s + batch_size], PIXELS)) for s in range(0, len(images), batch_size)]
        self.train(was_training)
        return {
            name: torch.cat([c[name] for c in chunks]).softmax(-1) if chunks else torch.zeros(0, len(values))
            for name, values in self.vocabulary.items()
        }

    def eyes(self, images: Sequence[bytes | Image.Image], vocabulary: Mapping[str, Sequence[str]]) -> dict[str, Tensor]:
        """`probabilities` in `vocabulary`'s value order, for the attributes both name: a value the net never saw in
        training gets 0, one the vocabulary lacks is dropped, and each row sums to 1 again."""
        read = self.probabilities(images)
        eyes = {}
        for name, values in vocabulary.items():
            if name not in read:
                continue
            known = self.vocabulary[name]
            columns = [read[name][:, known.index(v)] if v in known else torch.zeros(len(images)) for v in values]
            table = torch.stack(columns, dim=1)
            eyes[name] = table / table.sum(dim=1, keepdim=True).clamp_min(1e-12)
        return eyes

    def save(self, path: str | Path, details: Mapping[str, Any] | None = None) -> Path:
        state = {k: v.detach().cpu() for k, v in self.state_dict().items()}
        return save_torch_file(path, {"format": FORMAT, "vocabulary": self.vocabulary, "settings": self.settings,
                                      "state": state, "details": dict(details or {})})  # fmt: skip

    @classmethod
    def load(cls, path: str | Path) -> AttributeNet:
        data = read_format_file(path, "file of `ireid attribute-net fit`", FORMAT, ("vocabulary", "settings", "state"))
        net = cls(data["vocabulary"], **data["settings"])
        try:
            net.load_state_dict(data["state"])
        except RuntimeError as error:
            raise ValueError(f"{path}: field 'state' does not fit the network: {str(error).splitlines()[0]}") from None
        return net.eval()


def annotated_images(data_dir: str | Path, split: str) -> tuple[list[bytes], list[dict[str, str]]]:
    """A shard folder split's images that annotate attributes, and those annotations (what the net learns from)."""
    store = ImageStore.from_shards(data_dir, split)
    records = [r for r in load_records(data_dir, split) if r.attributes]
    if not records:
        raise ValueError(f"{data_dir} ({split}): no record has annotated attributes")
    return [store.encoded(r.key) for r in records], [r.attributes for r in records]


def crops(images: Sequence[bytes | Image.Image]) -> Tensor:
    """uint8 [N, 3, H, W] crops at the net's size: decoded once, kept compact for many training epochs."""
    height, width = PIXELS.size_hw
    arrays = [np.asarray(decode_image(im).resize((width, height), PIXELS.resample), dtype=np.uint8) for im in images]
    return torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2).contiguous()


def normalise(batch: Tensor) -> Tensor:
    mean = torch.tensor(PIXELS.mean).view(1, 3, 1, 1)
    std = torch.tensor(PIXELS.std).view(1, 3, 1, 1)
    return (batch.float() / 255.0 - mean) / std


def accuracy(net: AttributeNet, images: Sequence[bytes | Image.Image], attributes: Sequence[Mapping[str, str]]
             ) -> dict[str, dict[str, float]]:  # fmt: skip
    """Per attribute, the share of annotated images whose most likely value is right, beside always naming the
    commonest annotated value (the majority baseline)."""
    probabilities = net.probabilities(images)
    targets = attribute_labels(net.vocabulary, attributes)
    result = {}
    for a, name in enumerate(net.vocabulary):
        known = targets[:, a] != IGNORE
        if not known.any():
            continue
        truth = targets[known, a]
        right = (probabilities[name][known].argmax(-1) == truth).float().mean().item()
        majority = torch.bincount(truth).max().item() / len(truth)
        result[name] = {"accuracy": right, "majority": majority, "images": int(known.sum())}
    return result


def accuracy_summary(scores: Mapping[str, Mapping[str, float]]) -> dict[str, Any]:
    """`accuracy`'s scores with their means over the attributes (accuracy and majority baseline)."""
    mean = sum(s["accuracy"] for s in scores.values()) / len(scores)
    majority = sum(s["majority"] for s in scores.values()) / len(scores)
    return {"mean_accuracy": mean, "mean_majority": majority, "attributes": dict(scores)}

"""The frozen eyes a tiny ChatReID model can read through in place of its own encoder, told apart in one place.

A vision checkpoint (`model.vision_checkpoint`) is either a person tower file (a trained retriever's image encoder,
`person_tower.py`) or an attribute net (`net_tower.py`), recognised by the file's format. A ChatReID checkpoint
records the one it was built with as its `person_vision` architecture.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from torch import nn

from ireid.chatreid.net_tower import NET_TOWER, NetTowerVisual, install_net_tower, net_architecture
from ireid.chatreid.person_tower import PersonTowerVisual, install_person_tower
from ireid.core.attribute_net import FORMAT as ATTRIBUTE_NET_FORMAT
from ireid.core.attribute_net import AttributeNet
from ireid.core.checkpoints import read_torch_file
from ireid.core.person_vision import VisionTowerFile

Eyes = VisionTowerFile | AttributeNet


def read_eyes(path: str | Path) -> Eyes:
    """A vision checkpoint: an attribute net file, or else a person tower file (whose reader names what is wrong).
    The format is read with the tensors mapped, not loaded, so the file is read in full once."""
    data = read_torch_file(path, "vision checkpoint", mmap=True)
    if isinstance(data, dict) and data.get("format") == ATTRIBUTE_NET_FORMAT:
        return AttributeNet.load(path)
    return VisionTowerFile.load(path)


def eyes_architecture(eyes: Eyes) -> dict[str, Any]:
    """What a checkpoint records to rebuild the eyes (plain types)."""
    return net_architecture(eyes) if isinstance(eyes, AttributeNet) else eyes.architecture()


def install_eyes(model: nn.Module, architecture: dict[str, Any]) -> NetTowerVisual | PersonTowerVisual:
    """Replace a Qwen2-VL model's vision encoder by the eyes `architecture` describes (weights loaded apart)."""
    if architecture.get("kind") == NET_TOWER:
        return install_net_tower(model, architecture)
    return install_person_tower(model, architecture)


def load_eyes(
    model: nn.Module, tokenizer: Any, visual: NetTowerVisual | PersonTowerVisual, eyes: Eyes, where: str
) -> None:
    """The eyes' weights into the module `install_eyes` made of their own architecture (strict: a person tower of
    another architecture is an error naming `where`); a net's merger starts speaking `model`'s words
    (`NetTowerMerger.speak`, with the model's `tokenizer`)."""
    if isinstance(eyes, AttributeNet):
        visual.net.load_state_dict(eyes.state_dict())  # type: ignore[union-attr]
        embeddings = model.get_input_embeddings().weight
        visual.merger.speak(eyes.vocabulary, embeddings, tokenizer)  # type: ignore[union-attr]
    else:
        visual.load_tower(eyes, where)  # type: ignore[union-attr]


def eyes_overrides(overrides: dict[str, Any] | None, architecture: dict[str, Any] | None) -> dict[str, Any] | None:
    """A tiny source's overrides for the eyes: the processor normalises pixels as they were trained, and cuts a
    person tower's own patches."""
    if architecture is None:
        return overrides
    merged = dict(overrides or {})
    if "config" in architecture:  # a person tower: its position grid fixes the patch size
        patch = architecture["config"]["patch_size"]
        merged["vision_config"] = {**merged.get("vision_config", {}), "patch_size": patch}
    merged["processor"] = {
        **merged.get("processor", {}),
        "image_mean": list(architecture["mean"]),
        "image_std": list(architecture["std"]),
    }
    return merged

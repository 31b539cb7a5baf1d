"""A trained selector without Lightning: the `Selector` network of a `SelectorWarmup` checkpoint.

    selector = load_selector("runs/selector/warmup/version_0/checkpoints/last.ckpt")
    picked = selector.select(dialogue, candidates, mask, 4)  # [B, 4] indices, rank-1 first

A checkpoint is read with `weights_only=True`. It holds the network's constructor arguments in
`hyper_parameters.selector_config` and its weights in `state_dict` under `selector.`; checkpoints written before
the network was handed to `SelectorWarmup` hold the arguments flat in `hyper_parameters` and load too. The
LightningModule (`ireid.selector.module`) is not imported, so serving a selector does not pull in Lightning.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from ireid.core.checkpoints import read_checkpoint_file
from ireid.selector.model import Selector

CONFIG_KEY = "selector_config"  # where `SelectorWarmup` records `Selector.config` among its hyper-parameters
SELECTOR_PREFIX = "selector."  # where both `SelectorWarmup` and the joint questioner keep the selector's weights
# The arguments as earlier `SelectorWarmup` checkpoints stored them, flat beside the training settings.
FLAT_ARGS = ("dim", "layers", "heads", "ffn", "dropout", "input_dim", "keep_first", "norm_first")


def selector_config(hyper_parameters: Mapping[str, Any], source: str) -> dict[str, Any]:
    """The `Selector` arguments a warm-up checkpoint's hyper-parameters record; errors name `source`."""
    if CONFIG_KEY in hyper_parameters:
        config = hyper_parameters[CONFIG_KEY]
        if not isinstance(config, Mapping):
            raise ValueError(f"{source}: field 'hyper_parameters.{CONFIG_KEY}' must be a dict, got {config!r}")
        return dict(config)
    missing = [name for name in FLAT_ARGS if name not in hyper_parameters]
    if missing:
        raise ValueError(
            f"{source}: not a selector checkpoint, field 'hyper_parameters' has no '{CONFIG_KEY}' (and lacks {missing})"
        )
    return {name: hyper_parameters[name] for name in FLAT_ARGS}


def selector_weights(state_dict: Mapping[str, Tensor]) -> dict[str, Tensor]:
    """The selector's entries of a Lightning state dict, without their `selector.` prefix."""
    return {k[len(SELECTOR_PREFIX) :]: v for k, v in state_dict.items() if k.startswith(SELECTOR_PREFIX)}


def selector_from_state(config: Mapping[str, Any], state_dict: Mapping[str, Tensor]) -> Selector:
    """A `Selector` built from its arguments, with the `selector.*` weights of a Lightning state dict (strict)."""
    selector = Selector(**config)
    selector.load_state_dict(selector_weights(state_dict))
    return selector


def read_checkpoint(path: str | Path, what: str = "selector checkpoint") -> dict[str, Any]:
    """A checkpoint file as a dict, read with `weights_only=True`; a missing or foreign file is an error naming it."""
    return read_checkpoint_file(path, what)


def read_selector_checkpoint(path: str | Path) -> tuple[dict[str, Any], dict[str, Tensor]]:
    """The `Selector` arguments and weights (names without `selector.`) of a warm-up checkpoint, nothing built.

    Joint questioner training builds the network itself and loads these weights into it.
    """
    checkpoint = read_checkpoint(path)
    config = selector_config(checkpoint.get("hyper_parameters") or {}, str(path))
    weights = selector_weights(checkpoint["state_dict"])
    if not weights:
        raise ValueError(f"{path}: not a selector checkpoint, field 'state_dict' has no '{SELECTOR_PREFIX}*' weights")
    return config, weights


def load_selector(path: str | Path, device: str | torch.device = "cpu") -> Selector:
    """The trained `Selector` of a `SelectorWarmup` checkpoint, on `device`, in eval mode."""
    config, weights = read_selector_checkpoint(path)
    try:
        selector = Selector(**config)
        selector.load_state_dict(weights)
    except (TypeError, RuntimeError) as error:
        raise ValueError(f"{path}: the stored selector arguments and weights do not fit `Selector`: {error}") from error
    return selector.to(device).eval()

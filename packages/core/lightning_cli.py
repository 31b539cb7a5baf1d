"""The LightningCLI every trainable package runs, and config files composed from shared groups.

A config file may start with `defaults:`, a list of other config files (paths relative to it) that are read
first, in order, and merged key by key; the file's own keys win. So an experiment is a small overlay over the
shared groups in `configs/trainer/`, `configs/logger/` and `configs/callbacks/`:

    defaults: [../trainer/cpu.yaml, ../logger/tensorboard.yaml]
    trainer: {max_steps: 500, logger: {init_args: {save_dir: runs/selector, name: synthetic}}}

Mappings merge recursively; any other value (lists included, such as `trainer.callbacks`) replaces the earlier
one. Composition happens before LightningCLI parses, so `--print_config` and the `config.yaml` a run saves show
the whole composed config. Each package's CLI declares the arguments it links (`links`) and calls `run_cli`.
"""

from __future__ import annotations

import atexit
import os
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar

import yaml
from lightning.fabric.plugins import TorchCheckpointIO
from lightning.pytorch import LightningDataModule, LightningModule, Trainer
from lightning.pytorch.cli import LightningArgumentParser, LightningCLI

from ireid.core.callbacks import RandomState
from ireid.core.checkpoints import read_checkpoint_file, refusal, save_torch_file
from ireid.core.user_errors import one_line_errors

DEFAULTS_KEY = "defaults"


class ConfigCompositionError(ValueError):
    """A `defaults:` entry that is missing, not a list of paths, or part of a cycle."""


def merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    """`override` on top of `base`: mappings merge key by key, every other value replaces."""
    merged = dict(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def compose_config(path: str | Path, _seen: tuple[Path, ...] = ()) -> dict[str, Any]:
    """The config at `path` with its `defaults` (recursively) merged underneath."""
    path = Path(path).resolve()
    if path in _seen:
        chain = " -> ".join(str(p) for p in (*_seen, path))
        raise ConfigCompositionError(f"{path}: defaults form a cycle ({chain})")
    try:
        loaded = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except FileNotFoundError:
        where = f" (a default of {_seen[-1]})" if _seen else ""
        raise ConfigCompositionError(f"{path}: config file not found{where}") from None
    if not isinstance(loaded, dict):
        raise ConfigCompositionError(f"{path}: a config file must hold a mapping, not {type(loaded).__name__}")
    defaults = loaded.pop(DEFAULTS_KEY, [])
    if not isinstance(defaults, list) or not all(isinstance(d, str) for d in defaults):
        raise ConfigCompositionError(f"{path}: field '{DEFAULTS_KEY}' must be a list of config file paths")
    composed: dict[str, Any] = {}
    for default in defaults:
        composed = merge(composed, compose_config(path.parent / default, (*_seen, path)))
    return merge(composed, loaded)


def _composed_file(path: str) -> str:
    """A temporary file holding the composed config, or `path` itself when it has no defaults."""
    try:
        has_defaults = DEFAULTS_KEY in (yaml.safe_load(Path(path).read_text(encoding="utf-8")) or {})
    except (OSError, yaml.YAMLError, TypeError):
        return path  # not a readable YAML mapping: LightningCLI reports it
    if not has_defaults:
        return path
    handle, name = tempfile.mkstemp(prefix=f"{Path(path).stem}-", suffix=".yaml")
    with os.fdopen(handle, "w", encoding="utf-8") as out:
        yaml.safe_dump(compose_config(path), out, sort_keys=False)
    atexit.register(Path(name).unlink, missing_ok=True)
    return name


def expand_configs(args: Sequence[str]) -> list[str]:
    """Every `--config FILE` (or `--config=FILE`) replaced by its composed version."""
    expanded: list[str] = []
    items = list(args)
    i = 0
    while i < len(items):
        item = items[i]
        if item == "--config" and i + 1 < len(items):
            expanded += [item, _composed_file(items[i + 1])]
            i += 2
            continue
        if item.startswith("--config="):
            item = "--config=" + _composed_file(item.split("=", 1)[1])
        expanded.append(item)
        i += 1
    return expanded


class AtomicCheckpointIO(TorchCheckpointIO):
    """Lightning's checkpoint IO for every fit: a checkpoint is written beside its name and renamed into place, so a
    kill -9 mid-save leaves the previous `last.ckpt` whole for `--ckpt_path`; it is read weights-only."""

    def save_checkpoint(self, checkpoint: dict[str, Any], path: str | Path, storage_options: Any = None) -> None:
        save_torch_file(path, checkpoint)

    def load_checkpoint(self, path: str | Path, map_location: Any = None, weights_only: bool | None = None) -> Any:
        try:
            return super().load_checkpoint(path, map_location=map_location, weights_only=True)
        except FileNotFoundError:
            raise
        except Exception as error:  # torch.load raises many types for foreign, damaged or code-carrying files
            raise ValueError(f"{path}: {refusal(error)} (expected a Lightning checkpoint)") from error


class IreidCLI(LightningCLI):
    """LightningCLI with the project's settings: omegaconf interpolation, composed configs, declared links.

    `links` are (source, target) pairs passed to `link_arguments`, e.g. ("data.data_dir", "model.data_dir").
    """

    links: ClassVar[tuple[tuple[str, str], ...]] = ()

    def __init__(
        self,
        model_class: type[LightningModule] | None = None,
        datamodule_class: type[LightningDataModule] | None = None,
        *,
        args: Sequence[str] | None = None,
        **kwargs: Any,
    ) -> None:
        kwargs.setdefault("parser_kwargs", {"parser_mode": "omegaconf"})
        kwargs.setdefault("save_config_kwargs", {"overwrite": True})
        if args is None:  # from the command line: compose in place, so LightningCLI reads sys.argv as usual
            sys.argv[1:] = expand_configs(sys.argv[1:])
            super().__init__(model_class, datamodule_class, **kwargs)
        else:
            super().__init__(model_class, datamodule_class, args=expand_configs(args), **kwargs)

    def add_arguments_to_parser(self, parser: LightningArgumentParser) -> None:
        for source, target in self.links:
            parser.link_arguments(source, target)

    def _parse_ckpt_path(self) -> None:
        # `--ckpt_path` resumes the run its config describes. LightningCLI would parse the checkpoint's saved
        # hyper-parameters as model arguments over the command's, which fails for modules that save derived ones
        # (the selector's network config); here the file is only checked, so a damaged or unsafe one is one line.
        subcommand = self.config.get("subcommand")
        path = self.config[subcommand].get("ckpt_path") if subcommand else None
        if path and Path(path).is_file():
            read_checkpoint_file(path, "Lightning checkpoint to resume", mmap=True)  # tensors mapped, not read

    def instantiate_trainer(self, **kwargs: Any) -> Trainer:
        # checkpoints are written atomically, so a kill mid-save leaves the previous one whole to resume from,
        # unless the config names its own plugins
        config = self._get(self.config_init, "trainer", default={})
        if not config.get("plugins") and "plugins" not in kwargs:
            kwargs["plugins"] = [AtomicCheckpointIO()]
        # and they carry the random state, so a resumed run draws what the interrupted one would have drawn
        callbacks = kwargs.get("callbacks", config.get("callbacks")) or []
        callbacks = callbacks if isinstance(callbacks, list) else [callbacks]
        if not any(isinstance(c, RandomState) for c in callbacks):
            kwargs["callbacks"] = [*callbacks, RandomState()]
        return super().instantiate_trainer(**kwargs)


@one_line_errors
def run_cli(
    cli_class: type[IreidCLI],
    model_class: type[LightningModule],
    datamodule_class: type[LightningDataModule],
    args: Sequence[str] | None = None,
    **kwargs: Any,
) -> int:
    """A package's `main`: run its CLI; exit status 0 once LightningCLI returns (it exits itself on argument
    errors; a user's mistake found later ends in one line, status 2)."""
    cli_class(model_class, datamodule_class, args=args, **kwargs)
    return 0

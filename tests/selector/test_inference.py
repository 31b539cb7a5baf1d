"""The selector's inference surface: a `SelectorWarmup` checkpoint rebuilds its `Selector` without Lightning."""

from pathlib import Path

import pytest
import torch

from ireid.selector.data import SyntheticSelectorData, synthetic_batch
from ireid.selector.inference import FLAT_ARGS, load_selector, read_selector_checkpoint
from ireid.selector.model import Selector
from ireid.selector.module import SelectorWarmup
from tests.helpers import quiet_trainer

DIM = 8


@pytest.fixture(scope="module")
def fitted(tmp_path_factory: pytest.TempPathFactory) -> tuple[SelectorWarmup, Path]:
    """A warm-up after two optimiser steps on generated lists, and the checkpoint Lightning wrote of it."""
    torch.manual_seed(0)
    trainer = quiet_trainer(2)
    data = SyntheticSelectorData(num_train=16, num_val=8, num_candidates=6, dim=DIM, batch_size=8)
    module = SelectorWarmup(Selector(dim=16, layers=1, heads=2, input_dim=DIM, dropout=0.1), lr=1e-2)
    trainer.fit(module, datamodule=data)
    path = tmp_path_factory.mktemp("selector") / "warmup.ckpt"
    trainer.save_checkpoint(path)
    return module, path


def batch() -> dict[str, torch.Tensor]:
    return synthetic_batch(5, num_candidates=6, dim=DIM, min_candidates=3, generator=torch.Generator().manual_seed(1))


def test_checkpoint_rebuilds_the_trained_network_and_scores_the_same(fitted) -> None:
    module, path = fitted
    selector = load_selector(path)
    assert isinstance(selector, Selector) and not selector.training
    assert selector.config == module.selector.config == module.hparams.selector_config
    assert selector.config["dropout"] == 0.1 and selector.config["input_dim"] == DIM
    trained = module.selector.eval()
    b = batch()
    assert torch.equal(
        selector(b["dialogue"], b["candidates"], b["mask"]), trained(b["dialogue"], b["candidates"], b["mask"])
    )
    assert torch.equal(
        selector.select(b["dialogue"], b["candidates"], b["mask"], 3),
        trained.select(b["dialogue"], b["candidates"], b["mask"], 3),
    )
    stored = torch.load(path, map_location="cpu", weights_only=True)["hyper_parameters"]
    assert "net" not in stored, "the network is in the state dict, not among the hyper-parameters"


def test_the_config_and_weights_are_read_without_building(fitted) -> None:
    module, path = fitted
    config, weights = read_selector_checkpoint(path)
    assert config == module.selector.config
    own = module.selector.state_dict()
    assert weights.keys() == own.keys() and all(torch.equal(weights[k], own[k]) for k in own)


def test_checkpoints_with_flat_selector_arguments_still_load(fitted, tmp_path: Path) -> None:
    """What `SelectorWarmup` stored before it took the network: its arguments beside the training settings."""
    module, path = fitted
    checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    flat = {**module.selector.config, "num_select": 4, "temperature": 1.0, "lr": 1e-2, "weight_decay": 0.01}
    assert set(FLAT_ARGS) == set(module.selector.config)
    torch.save({"state_dict": checkpoint["state_dict"], "hyper_parameters": flat}, tmp_path / "flat.ckpt")
    b = batch()
    old, new = load_selector(tmp_path / "flat.ckpt"), load_selector(path)
    assert torch.equal(old(b["dialogue"], b["candidates"], b["mask"]), new(b["dialogue"], b["candidates"], b["mask"]))


def test_missing_or_foreign_files_are_errors_naming_them(fitted, tmp_path: Path) -> None:
    _, path = fitted
    with pytest.raises(FileNotFoundError, match=r"nowhere\.ckpt: selector checkpoint not found"):
        load_selector(tmp_path / "nowhere.ckpt")
    (tmp_path / "text.ckpt").write_text("not a checkpoint")
    with pytest.raises(ValueError, match=r"text\.ckpt: not a torch file \(\w+\) \(expected a selector checkpoint\)"):
        load_selector(tmp_path / "text.ckpt")
    torch.save(
        {"state_dict": {"questioner.w": torch.zeros(1)}, "hyper_parameters": {"stage": "warmup"}}, tmp_path / "q.ckpt"
    )
    with pytest.raises(ValueError, match=r"q\.ckpt: not a selector checkpoint.*selector_config"):
        load_selector(tmp_path / "q.ckpt")
    checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    checkpoint["hyper_parameters"]["selector_config"]["dim"] = 32
    torch.save(checkpoint, tmp_path / "resized.ckpt")
    with pytest.raises(ValueError, match=r"resized\.ckpt: the stored selector arguments and weights do not fit"):
        load_selector(tmp_path / "resized.ckpt")

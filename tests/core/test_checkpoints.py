"""Checkpoint reading: weights only, and every refusal names the file."""

from __future__ import annotations

import pytest
import torch

from ireid.core.checkpoints import read_checkpoint_file


class Payload:  # a pickled object that weights_only refuses: loading it could run code
    pass


def test_a_checkpoint_reads_back_and_foreign_files_are_refused_naming_them(tmp_path) -> None:
    good = tmp_path / "good.ckpt"
    torch.save({"state_dict": {"w": torch.ones(2)}, "hyper_parameters": {"a": 1}}, good)
    assert torch.equal(read_checkpoint_file(good, mmap=True)["state_dict"]["w"], torch.ones(2))
    with pytest.raises(FileNotFoundError, match=r"none\.ckpt: selector checkpoint not found"):
        read_checkpoint_file(tmp_path / "none.ckpt", "selector checkpoint")
    (tmp_path / "text.ckpt").write_text("not a checkpoint")
    with pytest.raises(ValueError, match=r"text\.ckpt: not a torch file \(UnpicklingError\) \(expected a checkpoint\)"):
        read_checkpoint_file(tmp_path / "text.ckpt")
    torch.save({"state_dict": Payload()}, tmp_path / "code.ckpt")
    with pytest.raises(
        ValueError, match=r"code\.ckpt: refused: not a weights-only checkpoint \(it holds [\w.]*Payload"
    ):
        read_checkpoint_file(tmp_path / "code.ckpt")
    torch.save({"weights": {}}, tmp_path / "other.ckpt")
    with pytest.raises(ValueError, match=r"other\.ckpt: not a checkpoint, expected a dict with field 'state_dict'"):
        read_checkpoint_file(tmp_path / "other.ckpt")

"""A user's mistake ends a command in one line on stderr, status 2; IREID_TRACEBACK=1 keeps the traceback."""

from __future__ import annotations

import pytest

from ireid.app.cli import main as ireid_main
from ireid.core.user_errors import one_line_errors
from ireid.questioner.lookforward import target_attribute_counts


def test_a_missing_file_is_one_line_and_status_2(tmp_path, capsys) -> None:
    code = ireid_main(["lookforward", "--retriever-ckpt", str(tmp_path / "none.ckpt"), "--data", str(tmp_path),
                       "--out", str(tmp_path / "out")])  # fmt: skip
    err = capsys.readouterr().err.strip()
    assert code == 2 and err.startswith("error: ") and "none.ckpt: retriever checkpoint not found" in err
    assert len(err.splitlines()) == 1


def test_a_file_that_is_not_a_checkpoint_is_one_line(tmp_path, capsys) -> None:
    (tmp_path / "notes.ckpt").write_text("not a checkpoint")
    code = ireid_main(["chatreid", "mine-look-alikes", "--retriever-ckpt", str(tmp_path / "notes.ckpt"),
                       "--data", str(tmp_path), "--out", str(tmp_path / "out.json")])  # fmt: skip
    err = capsys.readouterr().err.strip()
    assert code == 2 and "notes.ckpt: not a retriever checkpoint (torch.load with weights_only=True refused" in err
    assert len(err.splitlines()) == 1


def test_a_folder_that_is_not_a_shard_folder_is_one_line(tmp_path, capsys) -> None:
    """`target-frequency` pointed at a folder that holds no look-forward targets: its missing manifest, named."""

    @one_line_errors
    def count() -> int:
        target_attribute_counts(tmp_path / "none")
        return 0

    assert count() == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "none/train.manifest.json: no manifest" in err
    assert len(err.splitlines()) == 1


def test_traceback_on_request_and_programming_errors_pass_through(monkeypatch) -> None:
    @one_line_errors
    def bad_field() -> int:
        raise ValueError("x.yaml: field 'lr' must be positive")

    @one_line_errors
    def bug() -> int:
        raise KeyError("internal")

    with pytest.raises(KeyError):
        bug()
    monkeypatch.setenv("IREID_TRACEBACK", "1")
    with pytest.raises(ValueError, match="field 'lr'"):
        bad_field()

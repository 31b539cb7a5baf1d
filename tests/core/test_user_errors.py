"""A user's mistake ends a command in one line on stderr, status 2; --debug (or IREID_TRACEBACK=1) keeps the
traceback."""

from __future__ import annotations

import os

import pytest
import torch

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
    assert code == 2 and "notes.ckpt: not a torch file" in err and "expected a retriever checkpoint" in err
    assert len(err.splitlines()) == 1


@pytest.mark.parametrize(
    ("content", "says"),
    [
        ("evil", "refused: not a weights-only checkpoint (it holds posix.system, not only tensors and plain types)"),
        ("truncated", "truncated or damaged: not a complete torch file"),
        ("empty", "truncated or damaged: not a complete torch file"),
    ],
)
def test_unsafe_or_truncated_checkpoints_are_refused_in_one_line_without_advice(tmp_path, capsys, content, says):
    path = tmp_path / "model.ckpt"
    if content == "evil":

        class RunsCode:
            def __reduce__(self):
                return (os.system, ("echo this must never run",))

        torch.save({"state_dict": {}, "payload": RunsCode()}, path)
    elif content == "truncated":
        torch.save({"state_dict": {"w": torch.ones(1000)}}, path)
        path.write_bytes(path.read_bytes()[:2000])
    else:
        path.write_bytes(b"")
    code = ireid_main(["chatreid", "mine-look-alikes", "--retriever-ckpt", str(path),
                       "--data", str(tmp_path), "--out", str(tmp_path / "out.json")])  # fmt: skip
    captured = capsys.readouterr()
    err = captured.err.strip()
    assert code == 2 and says in err and len(err.splitlines()) == 1
    assert "weights_only=False" not in err and "weights_only` set to `False`" not in err
    assert "this must never run" not in captured.out


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


def test_debug_flag_keeps_the_traceback_and_is_not_passed_on(tmp_path, capsys) -> None:
    args = ["lookforward", "--retriever-ckpt", str(tmp_path / "none.ckpt"), "--data", str(tmp_path),
            "--out", str(tmp_path / "out")]  # fmt: skip
    assert ireid_main(args) == 2
    assert "(--debug shows the traceback)" in capsys.readouterr().err
    with pytest.raises(FileNotFoundError, match=r"none\.ckpt"):
        ireid_main([*args, "--debug"])  # the parser never sees --debug: the error is the command's own

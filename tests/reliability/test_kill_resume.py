"""kill -9 in the middle of a long job, then the same command resumed: the output ends byte-identical to an
uninterrupted run's, and no temporary file is left to trip the rerun."""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

IREID = [sys.executable, "-c", "from ireid.app.cli import main; raise SystemExit(main())"]


def digest(folder: Path, pattern: str) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.glob(pattern))}


def kill_when(args: list[str], ready: Callable[[], bool], timeout: float = 120) -> None:
    """Start `ireid args`, SIGKILL it as soon as `ready()` holds (it must not have finished by then)."""
    process = subprocess.Popen([*IREID, *args], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + timeout
    try:
        while not ready():
            if process.poll() is not None:
                pytest.fail(f"ireid {' '.join(args)} ended before it could be killed")
            if time.monotonic() > deadline:
                pytest.fail("the job never reached the point to kill it at")
            time.sleep(0.02)
        os.kill(process.pid, signal.SIGKILL)
    finally:
        process.wait()


def run(args: list[str]) -> None:
    subprocess.run([*IREID, *args], check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def test_synth_killed_then_resumed_is_byte_identical(tmp_path: Path) -> None:
    world = ["--ids-train", "120", "--ids-val", "8", "--ids-test", "12", "--shard-size", "60", "--workers", "1",
             "--quiet"]  # fmt: skip
    run(["data", "synth", "--out", str(tmp_path / "clean"), *world])
    killed = tmp_path / "killed"
    kill_when(["data", "synth", "--out", str(killed), *world], lambda: (killed / "train-000002.tar").exists())
    assert (
        not (killed / "train.manifest.json").exists()
        or '"complete": false' in (killed / "train.manifest.json").read_text()
    )
    run(["data", "synth", "--out", str(killed), *world, "--resume"])
    assert digest(killed, "*.tar") == digest(tmp_path / "clean", "*.tar")
    assert digest(killed, "*.manifest.json") == digest(tmp_path / "clean", "*.manifest.json")
    assert not list(killed.glob("*.tmp"))


def test_an_evaluation_killed_then_rerun_ends_with_the_same_results(
    tiny_world: Path, tower_file: Path, tmp_path: Path
) -> None:
    ckpt = str(tower_file.parent / "retriever.ckpt")
    args = ["eval", "interactive", "--data", str(tiny_world), "--retriever-ckpt", ckpt, "--rounds", "3",
            "--strategies", "initial,random,simirv,expected-gain", "--batch-size", "4"]  # fmt: skip
    run([*args, "--out", str(tmp_path / "clean")])
    killed = tmp_path / "killed"
    kill_when([*args, "--out", str(killed)], lambda: any((killed / "strategies").glob("random/batches/*.json")))
    run([*args, "--out", str(killed)])
    clean = (tmp_path / "clean" / "results.json").read_text()
    assert (killed / "results.json").read_text().replace(str(killed), "") == clean.replace(str(tmp_path / "clean"), "")
    assert not list(killed.rglob("*.tmp"))


def test_lookforward_killed_while_writing_then_rerun_is_byte_identical(
    tiny_world: Path, tower_file: Path, tmp_path: Path
) -> None:
    ckpt = str(tower_file.parent / "retriever.ckpt")
    args = ["lookforward", "--retriever-ckpt", ckpt, "--data", str(tiny_world), "--batch-size", "1"]
    run([*args, "--out", str(tmp_path / "clean")])
    killed = tmp_path / "killed"
    kill_when([*args, "--out", str(killed)], lambda: any(killed.glob("*.tar.tmp")))
    run([*args, "--out", str(killed)])
    assert digest(killed, "*.tar") == digest(tmp_path / "clean", "*.tar")
    assert not list(killed.glob("*.tmp"))


def test_convert_killed_while_writing_then_resumed_is_byte_identical(tmp_path: Path) -> None:
    from PIL import Image

    crops = tmp_path / "crops"
    for split, people in (("train", 60), ("test", 20)):
        for person in range(people):
            folder = crops / split / f"p{person:03d}"
            folder.mkdir(parents=True)
            for view in range(5):
                Image.new("RGB", (16, 32), (person * 4 % 256, view * 40, 90)).save(folder / f"{view}.png")
    args = ["data", "convert", "--format", "folder", "--root", str(crops), "--shard-size", "20", "--quiet"]
    run([*args, "--out", str(tmp_path / "clean")])
    killed = tmp_path / "killed"
    kill_when([*args, "--out", str(killed)], lambda: (killed / "train-000001.tar").exists())
    run([*args, "--out", str(killed), "--resume"])
    assert digest(killed, "*.tar") == digest(tmp_path / "clean", "*.tar")
    assert digest(killed, "*.manifest.json") == digest(tmp_path / "clean", "*.manifest.json")
    assert not list(killed.glob("*.tmp"))

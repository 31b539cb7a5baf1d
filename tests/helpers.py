"""Shared test helpers: tiny records and images."""

from __future__ import annotations

import io
from typing import Any

import lightning as L
from PIL import Image

from ireid.core.records import QA, Record


def jpeg(color: tuple[int, int, int] = (200, 30, 30), size: tuple[int, int] = (16, 32)) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", size, color).save(buf, format="JPEG", quality=90)
    return buf.getvalue()


def png(color: tuple[int, int, int] = (30, 200, 30), size: tuple[int, int] = (16, 32)) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", size, color).save(buf, format="PNG")
    return buf.getvalue()


def make_record(i: int, split: str = "train", **kw) -> Record:
    fields = dict(
        key=f"src/img_{i:04d}",
        pid=i // 2,
        split=split,
        source="test",
        camid=i % 3,
        captions=[f"a person in colour {i}"],
        initial_description=f"I saw someone {i}.",
        fine_description=f"I saw someone {i} wearing item {i}.",
        qas=[QA(question=f"What colour {i}?", answer=f"Colour {i}.", qtype="descriptive", attribute="colour")],
    )
    fields.update(kw)
    return Record(**fields)


def quiet_trainer(max_steps: int, **options: Any) -> L.Trainer:
    """The tests' Lightning runs: CPU, `max_steps`, no logger, checkpoints, bars, summary or sanity validation
    unless `options` ask for them."""
    settings: dict[str, Any] = {
        "accelerator": "cpu",
        "logger": False,
        "enable_checkpointing": False,
        "enable_progress_bar": False,
        "enable_model_summary": False,
        "num_sanity_val_steps": 0,
    }
    return L.Trainer(max_steps=max_steps, **{**settings, **options})


def train_on_two_processes(module: str, args: list[str], cwd) -> str:
    """`python -m <module> <args>` on two CPU processes (gloo), as `--trainer.devices 2 --trainer.strategy ddp` runs
    on two GPUs; its output, after checking that both ranks joined and the run ended cleanly."""
    import os
    import subprocess
    import sys

    ddp = ["--trainer.accelerator", "cpu", "--trainer.devices", "2", "--trainer.strategy", "ddp"]
    env = dict(os.environ, PYTHONWARNINGS="ignore", OMP_NUM_THREADS="1")
    done = subprocess.run([sys.executable, "-m", module, *args, *ddp], capture_output=True, text=True, timeout=600,
                          env=env, cwd=cwd)  # fmt: skip
    output = done.stdout + done.stderr
    assert done.returncode == 0, output[-3000:]
    assert "distributed_backend=gloo" in output and "All distributed processes registered" in output
    return output

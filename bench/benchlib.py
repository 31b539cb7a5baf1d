"""Shared by the benchmarks: machine description and atomic JSON results."""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch

from ireid.core.shards import atomic_write_json

RESULTS = Path(__file__).resolve().parent / "results"


def machine() -> dict[str, Any]:
    info = {
        "platform": platform.platform(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
    }
    if torch.cuda.is_available():
        info["device"] = torch.cuda.get_device_name(0)
    return info


def device_note(device: torch.device) -> str:
    """`cpu`, or the GPU's name: results name the device they were taken on."""
    return torch.cuda.get_device_name(device) if device.type == "cuda" else device.type


def synchronize(device: torch.device) -> None:
    """Wait for queued GPU work, so that a timer around it measures the work and not its launch."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def best_time(fn: Callable[[], Any], repeats: int = 3) -> float:
    """Seconds of the fastest of `repeats` runs (the least disturbed by other load)."""
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def write_result(name: str, payload: dict[str, Any], out: Path | None = None) -> Path:
    path = out or RESULTS / f"{name}.json"
    atomic_write_json(path, {"benchmark": name, "machine": machine(), **payload})
    print(f"wrote {path}")
    return path


def demo_checkpoint(demo: Path, step: str) -> Path:
    """The checkpoint of a finished step of an `ireid demo` folder (`retriever`, `llava-reid/joint`, ...); its path
    is relative to where the demo ran, the folder above `runs/`, when it does not resolve from here."""
    path = Path(json.loads((demo / step / "done.json").read_text())["ckpt"])
    return path if path.is_absolute() or path.exists() else demo.parent.parent / path


def diagnose_demos(
    argv: Sequence[str] | None,
    description: str,
    default_out: Path,
    diagnose: Callable[[Path], dict[str, Any]],
    markdown: Callable[[list[dict[str, Any]]], str],
) -> int:
    """The command line of a diagnosis over demo folders: one row per folder, then the JSON and the printed table; a
    folder that is not a finished demo ends the run with one line naming it (exit status 2)."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("demos", nargs="+", type=Path, help="`ireid demo --out` folders, one per world seed")
    parser.add_argument("--out", type=Path, default=default_out)
    args = parser.parse_args(argv)
    rows = []
    for demo in args.demos:
        try:
            rows.append(diagnose(demo))
        except (OSError, KeyError, ValueError) as error:  # not a finished demo folder: say which, in one line
            print(f"error: {demo}: not a finished `ireid demo` folder ({error})", file=sys.stderr)
            return 2
    table = markdown(rows)
    atomic_write_json(args.out, {"demos": rows, "markdown": table})
    print(table)
    return 0

"""Training steps of a pipeline run through LightningCLI configs, each recorded once finished and resumed if cut.

A finished step leaves `<out>/done.json` naming its checkpoint and its last validation metrics, so a rerun reuses
it; an interrupted one resumes from the newest `last.ckpt` under `<out>`. Used by the demo for the retriever, the
selector and the questioner. An evaluation step's numbers are kept the same way (`kept_result`), with the settings
that made them.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, TypeVar

from ireid.core.lightning_cli import IreidCLI
from ireid.core.shards import atomic_write_json

REPO_CONFIGS = Path(__file__).resolve().parents[2] / "configs"  # the repository's configs/ folder
RESTART_SEED_STEP = 1000  # a run begun again for the k-th time trains with seed + k * 1000, clear of world seeds

T = TypeVar("T")


def kept_result(path: Path, settings: dict[str, Any], key: str, compute: Callable[[], T]) -> T:
    """An evaluation step's result: read back from `path` (under `key`) while the `settings` that made it hold, else
    computed and written there with them; a damaged file is made again, not trusted."""
    if path.is_file():
        try:
            saved = json.loads(path.read_text(encoding="utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError):
            saved = None
        if isinstance(saved, dict) and saved.get("settings") == settings and key in saved:
            return saved[key]
    result = compute()
    atomic_write_json(path, {"settings": settings, key: result})
    return result


def minutes_to_hms(minutes: float) -> str:
    """Lightning's `max_time` format, DD:HH:MM:SS."""
    seconds = round(minutes * 60)
    return f"00:{seconds // 3600:02d}:{seconds % 3600 // 60:02d}:{seconds % 60:02d}"


def restart_runs(out: Path, seed: int, restarts: int) -> Iterator[tuple[Path, int]]:
    """The folder and training seed of a run and of each time it may begin again: `out` with `seed`, then
    `<out>-restart-k` with seed + k * RESTART_SEED_STEP; each keeps its own folder, so each resumes."""
    for k in range(restarts + 1):
        yield (out if k == 0 else out.with_name(f"{out.name}-restart-{k}")), seed + k * RESTART_SEED_STEP


def finished_metrics(out: Path) -> dict[str, float]:
    """A finished step's validation metrics at its end (none for a step recorded before they were kept)."""
    record = out / "done.json"
    return json.loads(record.read_text()).get("metrics", {}) if record.is_file() else {}


def finished_checkpoint(out: Path) -> Path | None:
    """The checkpoint a finished step recorded, if the step finished and the file is still there."""
    record = out / "done.json"
    if not record.is_file():
        return None
    ckpt = Path(json.loads(record.read_text())["ckpt"])
    return ckpt if ckpt.is_file() else None


def fit_step(
    name: str,
    out: Path,
    cli_class: type[IreidCLI],
    model_class: type,
    data_class: type,
    config: Path,
    overrides: Sequence[str] = (),
    minutes: float | None = None,
    checkpoints: Path | None = None,
    **cli_kwargs: Any,
) -> Path:
    """Train with `config` (+ `--key value` overrides) under `out`, or reuse a finished run; returns the best ckpt.

    `minutes` caps the wall time (Lightning's `max_time`); TensorBoard logs and checkpoints go under `out`.
    `checkpoints` redirects a `ModelCheckpoint` whose config fixes its folder (a list item a command-line
    override cannot reach), so runs of one config in several places keep their own checkpoints.
    """
    done = finished_checkpoint(out)
    if done is not None:
        print(f"{name}: reusing {done}")
        return done
    if not config.is_file():
        raise FileNotFoundError(f"{config}: {name} config not found (run from the repository root)")
    resume = sorted(out.glob("**/checkpoints/last.ckpt"), key=lambda p: p.stat().st_mtime)
    args = ["--config", str(config), "--trainer.logger.init_args.save_dir", str(out), *overrides]
    if minutes is not None:
        args += ["--trainer.max_time", minutes_to_hms(minutes)]
    cli = cli_class(
        model_class,
        data_class,
        args=args,
        run=False,
        **cli_kwargs,
    )
    if checkpoints is not None and cli.trainer.checkpoint_callback is not None:
        cli.trainer.checkpoint_callback.dirpath = os.path.realpath(checkpoints)
    start = time.perf_counter()
    print(f"{name}: training under {out}")
    cli.trainer.fit(cli.model, cli.datamodule, ckpt_path=str(resume[-1]) if resume else None)
    if cli.trainer.global_step == 0:
        raise RuntimeError(f"{name}: no optimiser step was taken (is the training data empty?); see {out}")
    callback = cli.trainer.checkpoint_callback
    saved = callback.best_model_path or callback.last_model_path if callback is not None else ""
    if saved:
        ckpt = Path(saved)
    else:  # a run shorter than its validation interval: no checkpoint was taken
        ckpt = out / "final.ckpt"
        cli.trainer.save_checkpoint(ckpt)
    seconds = time.perf_counter() - start
    metrics = {k: float(v) for k, v in cli.trainer.callback_metrics.items() if k.startswith("val/") and v.numel() == 1}
    record = {"ckpt": str(ckpt), "steps": cli.trainer.global_step, "seconds": seconds, "metrics": metrics}
    atomic_write_json(out / "done.json", record)
    return ckpt

"""The questioner warm-up of a finished demo, with and without the frozen tower's state cache, in one run.

The demo's warm-up shows each round's top-4 candidates through the retriever's frozen image encoder; most of them
were shown before (about 2,600 distinct images in 25,600 slots on a default world). Each variant runs
`configs/questioner/warmup-synthetic.yaml` on the demo's look-forward targets and vision tower for the same steps
in a child process (validation off), and the wall time of the whole command is compared.

    python bench/bench_questioner_warmup.py --demo runs/demo [--steps 400]   # writes results/questioner_warmup.json
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
CONFIG = REPO / "configs" / "questioner" / "warmup-synthetic.yaml"


def run_warmup(demo: Path, data: Path, steps: int, cache_mb: int | None, logs: Path) -> float:
    """Wall seconds of one warm-up command (`cache_mb` None: the default cache)."""
    llava = demo / "llava-reid"
    command = [
        sys.executable, "-m", "ireid.questioner", "fit", "--config", str(CONFIG),
        "--data.lookforward", str(llava / "targets"), "--data.data", str(data), "--model.tokenizer", str(data),
        "--model.vision_checkpoint", str(llava / "vision-tower.pt"), "--trainer.max_steps", str(steps),
        "--trainer.limit_val_batches", "0", "--trainer.enable_progress_bar", "false",
        "--trainer.logger.init_args.save_dir", str(logs),
    ]  # fmt: skip
    if cache_mb is not None:
        command += ["--model.tower_cache_mb", str(cache_mb)]
    start = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise SystemExit(f"warm-up failed:\n{done.stderr[-2000:]}")
    return time.perf_counter() - start


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--demo", type=Path, required=True, help="a finished `ireid demo` output folder")
    parser.add_argument("--data", type=Path, help="its data set folder (default: DEMO/data)")
    parser.add_argument("--steps", type=int, default=400, help="warm-up steps (the demo's budget)")
    parser.add_argument("--out", type=Path, help="result file (default: results/questioner_warmup.json)")
    args = parser.parse_args()
    data = args.data or args.demo / "data"
    for needed in (args.demo / "llava-reid" / "targets", args.demo / "llava-reid" / "vision-tower.pt", data):
        if not needed.exists():
            raise SystemExit(f"error: {needed} not found (is --demo a finished demo folder?)")

    from benchlib import write_result

    with tempfile.TemporaryDirectory(prefix="ireid-bench-warmup-") as tmp:
        without = run_warmup(args.demo, data, args.steps, 0, Path(tmp) / "off")
        cached = run_warmup(args.demo, data, args.steps, None, Path(tmp) / "on")
    result = {
        "demo": str(args.demo),
        "steps": args.steps,
        "seconds_without_cache": without,
        "seconds_with_cache": cached,
        "speedup": without / cached,
        "note": "wall time of the whole warm-up command (model and data setup included), validation off",
    }
    write_result("questioner_warmup", result, args.out)
    print(f"{args.steps} warm-up steps: {without:.1f} s without the tower cache, {cached:.1f} s with it "
          f"({without / cached:.2f}x)")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())

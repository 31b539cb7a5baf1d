"""Retriever and selector training steps per second, this tree against a reference commit, in one run.

The retriever is the longest training loop of `make demo` (about half its time). For each retriever config
(`synthetic.yaml`: fine texts; `demo.yaml`: the demo's, with paired partial texts) a child process builds
`RetrieverModule` and `RetrievalDataModule` from the `model` and `data` sections of the config as that tree
composes it, pulls a fixed set of batches from a small synthetic world (data loading is timed apart), then times
forward + backward + Adam steps over them, the best of three passes. The reference commit is checked out with
`git worktree` into a temporary folder and measured by the same child code against its own packages (a folder of
`ireid.<package>` symlinks first on PYTHONPATH), so both figures come from one machine minutes apart. A config
the reference tree lacks is reported as missing there. The selector's warm-up config is timed the same way on
generated lists shaped like the demo's look-forward rounds (ceil(200 / t) candidates at round t = 1..5).

    python bench/bench_train_step.py --ref HEAD~4          # writes results/train_step_cpu.json
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
CONFIGS = ("retriever/synthetic.yaml", "retriever/demo.yaml", "selector/lookforward-synthetic.yaml")


def measure(tree: Path, world: Path, config: str, steps: int) -> dict[str, Any] | None:
    """Child side: steps/s of one config of `tree` (the packages imported are that tree's)."""
    import torch

    from ireid.core.lightning_cli import compose_config
    from ireid.retriever.data import RetrievalDataModule
    from ireid.retriever.module import RetrieverModule

    path = tree / "configs" / config
    if not path.is_file():
        return None
    composed = compose_config(path)
    torch.manual_seed(0)
    if config.startswith("selector/"):
        return measure_selector(composed, world, steps)
    data = RetrievalDataModule(**{**composed["data"], "data_dir": str(world), "num_workers": 0})
    module = RetrieverModule(str(world), **{k: v for k, v in composed["model"].items() if k != "data_dir"})
    module.log = lambda *args, **kwargs: None  # no trainer: logging is not what is timed
    start = time.perf_counter()
    batches = take_batches(data.train_dataloader, steps)
    data_seconds = (time.perf_counter() - start) / steps
    return timed_steps(module, batches, torch.optim.Adam(module.parameters(), lr=1e-4), data_seconds)


def take_batches(make_loader: Any, steps: int) -> list[Any]:
    """`steps` batches, starting a new epoch when one runs out (a config's batch may outgrow the small world)."""
    batches: list[Any] = []
    while len(batches) < steps:
        before = len(batches)
        batches += itertools.islice(make_loader(), steps - len(batches))
        if len(batches) == before:
            raise SystemExit("the benchmark world yields no training batch")
    return batches


def timed_steps(module: Any, batches: list[Any], optimiser: Any, data_seconds: float) -> dict[str, Any]:
    """Forward + backward + optimiser steps over `batches`: the best of three passes after a warm-up pass."""
    module.train()

    def one_pass() -> float:
        begin = time.perf_counter()
        for i, batch in enumerate(batches):
            loss = module.training_step(batch, i)
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
        return time.perf_counter() - begin

    one_pass()  # warm-up: first-call allocations and kernel choices
    seconds = min(one_pass() for _ in range(3)) / len(batches)
    return {"steps_per_s": 1.0 / seconds, "step_s": seconds, "data_s_per_batch_uncached": data_seconds}


def lookforward_lists(world: Path, rows_per_round: int = 240, dim: int = 64) -> tuple[Path, Path]:
    """Selector data files shaped like the demo's look-forward rounds: ceil(200 / t) candidates at round t = 1..5."""
    import torch

    from ireid.selector.data import save_selector_tensors, synthetic_batch

    files = world / "selector-train.pt", world / "selector-val.pt"
    if all(f.is_file() for f in files):
        return files
    generator = torch.Generator().manual_seed(0)
    for path, rows in zip(files, (rows_per_round, rows_per_round // 4), strict=True):
        parts = []
        for t in range(1, 6):
            part = synthetic_batch(rows, 200, dim, generator=generator)
            keep = -(-200 // t)
            part["mask"][:, keep:] = False
            part["candidates"][:, keep:] = 0.0
            parts.append(part)
        save_selector_tensors(path, {k: torch.cat([p[k] for p in parts]) for k in parts[0]})
    return files


def measure_selector(composed: dict[str, Any], world: Path, steps: int) -> dict[str, Any]:
    """Child side: warm-up steps/s of the selector config on look-forward-shaped lists (data loading timed apart)."""
    import torch

    from ireid.selector.data import SelectorTensorData
    from ireid.selector.model import Selector
    from ireid.selector.module import SelectorWarmup

    train, val = lookforward_lists(world)
    data = SelectorTensorData(str(train), str(val), batch_size=composed["data"]["init_args"]["batch_size"])
    model = composed["model"]
    module = SelectorWarmup(Selector(**model["net"]["init_args"]), num_select=model["num_select"], lr=model["lr"])
    module.log = lambda *args, **kwargs: None
    start = time.perf_counter()
    batches = take_batches(data.train_dataloader, steps)
    data_seconds = (time.perf_counter() - start) / steps
    return timed_steps(module, batches, torch.optim.AdamW(module.parameters(), lr=model["lr"]), data_seconds)


def namespace_farm(tree: Path, into: Path) -> Path:
    """A folder whose `ireid/<name>` entries link to `tree`'s packages (ireid is a namespace package)."""
    root = into / "ireid"
    root.mkdir(parents=True)
    for package in (tree / "packages").iterdir():
        if package.is_dir():
            (root / package.name).symlink_to(package)
    return into


def run_child(tree: Path, pythonpath: Path | None, world: Path, steps: int) -> dict[str, Any]:
    env = dict(os.environ)
    if pythonpath is not None:
        env["PYTHONPATH"] = os.pathsep.join([str(pythonpath), env.get("PYTHONPATH", "")])
    command = [sys.executable, __file__, "--child", str(tree), "--world", str(world), "--steps", str(steps)]
    done = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise SystemExit(f"measuring {tree} failed:\n{done.stderr[-2000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ref", default="HEAD~1", help="the reference commit (any git revision)")
    parser.add_argument("--steps", type=int, default=12, help="batches timed per pass")
    parser.add_argument("--out", type=Path, help="result file (default: results/train_step_cpu.json)")
    parser.add_argument("--child", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--world", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child is not None:
        print(json.dumps({config: measure(args.child, args.world, config, args.steps) for config in CONFIGS}))
        return 0

    from benchlib import write_result

    from ireid.core.synthetic.world import build_world

    commit = subprocess.run(["git", "-C", str(REPO), "rev-parse", args.ref], capture_output=True, text=True)
    if commit.returncode != 0:
        raise SystemExit(f"--ref {args.ref}: not a commit of {REPO}")
    ref = commit.stdout.strip()
    with tempfile.TemporaryDirectory(prefix="ireid-bench-step-") as tmp:
        world, tree = Path(tmp) / "world", Path(tmp) / "ref"
        build_world(world, ids_train=200, ids_val=2, ids_test=2, images_per_id=4, seed=0, progress=False)
        subprocess.run(["git", "-C", str(REPO), "worktree", "add", "--detach", str(tree), ref], check=True,
                       capture_output=True)  # fmt: skip
        try:
            reference = run_child(tree, namespace_farm(tree, Path(tmp) / "ns"), world, args.steps)
            current = run_child(REPO, None, world, args.steps)
        finally:
            subprocess.run(["git", "-C", str(REPO), "worktree", "remove", "--force", str(tree)], check=False)
    rows = {}
    for config in CONFIGS:
        now, then = current[config], reference[config]
        ratio = now["steps_per_s"] / then["steps_per_s"] if now and then else None
        rows[config] = {"current": now, "reference": then, "speedup": ratio}
        speeds = [round(row["steps_per_s"], 2) if row else "missing" for row in (now, then)]
        shown = "n/a" if ratio is None else f"{ratio:.2f}x"
        print(f"{config}: {speeds[0]} steps/s, reference {speeds[1]} -> {shown}")
    write_result("train_step_cpu", {"reference_commit": ref, "steps": args.steps, "loops": rows}, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())

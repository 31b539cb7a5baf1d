"""When a retriever run leaves the uniform solution: its SDM loss and validation R@1 by step, from its TensorBoard log.

A tiny CLIP from scratch starts at the uniform solution, where SDM is about 27.8 for a batch of 64 (every text
equally likely for every image). The demo's 4-minute budget ends about 500 steps later, so the step at which a run
leaves that plateau ("takeoff": the first logged `train/sdm` under 25) decides much of its final R@1. This reads
finished runs (LightningCLI log folders holding `events.out.tfevents.*`), writes their curves and takeoff steps to
JSON and plots them side by side.

    python bench/diagnose_retriever_curves.py "lr 3e-4, world 2=runs/rs/base" "lr 8e-4, world 2=runs/rs/lr8" \
        --out bench/results/retriever_curves.json          # and retriever_curves.png beside it
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from benchlib import RESULTS, write_result

TAGS = ("train/sdm", "train/sdm_partial", "train/attr", "val/fine/R1", "val/partial/R1")
TAKEOFF_SDM = 25.0
"""Below this a run has left the uniform solution (about 27.8 for a batch of 64 at τ = 0.07)."""


def read_run(folder: Path) -> dict[str, list[tuple[int, float]]]:
    """The tagged scalars of the newest event file under `folder`, as (step, value) pairs."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    files = sorted(folder.rglob("events.out.tfevents.*"), key=lambda path: path.stat().st_mtime)
    if not files:
        raise FileNotFoundError(f"{folder}: no TensorBoard event file")
    events = EventAccumulator(str(files[-1]), size_guidance={"scalars": 0})
    events.Reload()
    present = set(events.Tags()["scalars"])
    if "train/sdm" not in present:  # not a retriever run, or an unreadable event file
        raise ValueError(f"{files[-1]}: no 'train/sdm' scalars (not a retriever training log?)")
    return {tag: [(e.step, round(e.value, 4)) for e in events.Scalars(tag)] for tag in TAGS if tag in present}


def takeoff(curve: list[tuple[int, float]]) -> int | None:
    """The first logged step with SDM under `TAKEOFF_SDM` (None: the run never left the plateau)."""
    return next((step for step, value in curve if value < TAKEOFF_SDM), None)


def summary(name: str, curves: dict[str, list[tuple[int, float]]]) -> dict[str, Any]:
    last = {tag: values[-1] for tag, values in curves.items() if values}
    return {
        "run": name,
        "takeoff_step": takeoff(curves.get("train/sdm", [])),
        "last_step": max((step for step, _ in last.values()), default=None),
        "val_fine_R1_last": last.get("val/fine/R1", (None, None))[1],
        "val_fine_R1_best": max((value for _, value in curves.get("val/fine/R1", [])), default=None),  # the kept one
        "val_partial_R1_last": last.get("val/partial/R1", (None, None))[1],
        "curves": curves,
    }


def plot(rows: list[dict[str, Any]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, (loss_axis, attr_axis, r1_axis) = plt.subplots(1, 3, figsize=(17, 4.5))
    colours = plt.get_cmap("tab20").colors  # distinct colours for up to 20 runs
    for index, row in enumerate(rows):
        for axis, tag in ((loss_axis, "train/sdm"), (attr_axis, "train/attr"), (r1_axis, "val/fine/R1")):
            points = row["curves"].get(tag, [])
            if points:
                style = {"marker": "o"} if tag.startswith("val") else {"linewidth": 1}
                axis.plot(*zip(*points, strict=True), color=colours[index % 20], label=row["run"], **style)
    loss_axis.axhline(TAKEOFF_SDM, color="grey", linestyle=":", linewidth=1)
    loss_axis.set(xlabel="step", ylabel="train/sdm (fine texts)", title="leaving the uniform solution")
    attr_axis.set(xlabel="step", ylabel="train/attr (mean over attributes)", title="the attribute heads")
    r1_axis.set(xlabel="step", ylabel="validation fine R@1 (%)", title="validation R@1")
    r1_axis.legend(fontsize=7, loc="upper left")
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+", help="NAME=FOLDER: a LightningCLI log folder (or one above it)")
    parser.add_argument("--out", type=Path, default=RESULTS / "retriever_curves.json")
    args = parser.parse_args(argv)
    rows = []
    for spec in args.runs:
        name, sep, folder = spec.rpartition("=")
        if not sep:
            print(f"error: {spec!r}: expected NAME=FOLDER", file=sys.stderr)
            return 2
        try:
            rows.append(summary(name, read_run(Path(folder))))
        except (FileNotFoundError, ValueError) as error:
            print(f"error: {error}", file=sys.stderr)
            return 2
    for row in rows:
        fine = f"val fine R@1 {row['val_fine_R1_last']} (best {row['val_fine_R1_best']})"
        print(f"{row['run']}: takeoff {row['takeoff_step']}, {row['last_step']} steps, {fine}, "
              f"partial {row['val_partial_R1_last']}")  # fmt: skip
    write_result("retriever_curves", {"takeoff_sdm": TAKEOFF_SDM, "runs": rows}, args.out)
    plot(rows, args.out.with_suffix(".png"))
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Synthetic world generation speed: images/s (render + texts + JPEG + shards) in one process and with one rendering
process per core (`build_world`'s default), their ratio, and texts/s.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from benchlib import write_result

from ireid.core.synthetic.world import build_world, plan_identities, world_records


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--ids", type=int, default=50, help="identities (all rendered; 20%% of them test)")
    parser.add_argument("--images-per-id", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    ids_test = max(1, args.ids // 5)
    config = dict(ids_train=args.ids - ids_test, ids_val=0, ids_test=ids_test, images_per_id=args.images_per_id)

    def speed(workers: int | None) -> list[float]:
        runs = []
        for repeat in range(args.repeats):
            with tempfile.TemporaryDirectory() as tmp:
                stats = build_world(Path(tmp) / "world", seed=repeat, progress=False, workers=workers, **config)
            runs.append(stats["rendered_images"] / stats["seconds"])
        return runs

    runs, parallel = speed(1), speed(None)

    start = time.perf_counter()
    records = world_records(0, plan_identities(0, config["ids_train"], 0, ids_test), args.images_per_id)
    text_seconds = time.perf_counter() - start

    write_result(
        "synthetic",
        {
            "config": config | {"image_size": [128, 64], "repeats": args.repeats},
            "images_per_second": max(runs),
            "images_per_second_runs": runs,
            "parallel_images_per_second": max(parallel),
            "parallel_images_per_second_runs": parallel,
            "parallel_speedup": max(parallel) / max(runs),
            "texts_per_second": len(records) / text_seconds,
            "note": "one process, then one rendering process per core; best of the repeats; images include texts, "
            "JPEG encoding and shard writing",
        },
        args.out,
    )
    print(
        f"{max(runs):.0f} images/s in one process, {max(parallel):.0f} with one per core "
        f"({max(parallel) / max(runs):.2f}x); {len(records) / text_seconds:.0f} texts/s"
    )


if __name__ == "__main__":
    main()

"""Converter throughput (images/s) on a generated CUHK-PEDES-style tree.

Reference in the same run: copying the same images into shards with no parsing, decoding or checks,
so the ratio shows what validation costs.
"""

from __future__ import annotations

import argparse
import io
import json
import random
import shutil
import tempfile
from pathlib import Path

from benchlib import best_time, write_result
from PIL import Image

from ireid.core.converters.cli import convert
from ireid.core.records import Record, make_key
from ireid.core.shards import ShardWriter


def build_tree(root: Path, n: int, size: tuple[int, int] = (64, 128)) -> None:
    rng = random.Random(0)
    entries = []
    for i in range(n):
        rel = f"train_query/p{i // 4}/{i}.jpg"
        path = root / "imgs" / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        im = Image.effect_noise(size, 40).convert("RGB")
        buf = io.BytesIO()
        im.save(buf, format="JPEG", quality=90)
        path.write_bytes(buf.getvalue())
        split = "train" if i < n * 0.8 else "test"
        entries.append(
            {
                "split": split,
                "file_path": rel,
                "id": i // 4 + 1,
                "captions": [f"A person wearing item {rng.randrange(1000)} and walking."] * 2,
            }
        )
    (root / "reid_raw.json").write_text(json.dumps(entries))


def copy_only(root: Path, out: Path) -> None:
    with ShardWriter(out, "train", max_samples=1000) as writer:
        for i, path in enumerate(sorted((root / "imgs").rglob("*.jpg"))):
            record = Record(key=make_key("ref", str(i)), pid=i // 4, split="train", source="ref", captions=["x"])
            writer.write(record, path.read_bytes())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--images", type=int, default=4000)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "src"
        build_tree(root, args.images)

        def run_convert() -> None:
            shutil.rmtree(Path(tmp) / "out", ignore_errors=True)
            convert("cuhk-pedes", root, Path(tmp) / "out", progress=False)

        def run_copy() -> None:
            shutil.rmtree(Path(tmp) / "ref", ignore_errors=True)
            copy_only(root, Path(tmp) / "ref")

        convert_s, copy_s = best_time(run_convert), best_time(run_copy)
    result = {
        "images": args.images,
        "image_size_wh": [64, 128],
        "convert_images_per_s": args.images / convert_s,
        "reference_copy_images_per_s": args.images / copy_s,
        "ratio_convert_to_copy": copy_s / convert_s,
    }
    print(json.dumps(result, indent=1))
    write_result("converters", result, args.out)


if __name__ == "__main__":
    main()

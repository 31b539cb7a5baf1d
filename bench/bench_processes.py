"""Work shared among processes: look-forward target building and gallery indexing, items/s with `--processes` forked
processes of one thread each, against one process with every thread (the default), on a finished demo's retriever
and training split. The outputs of the two runs are compared too (equal bytes when the one process also runs on one
thread; with more threads the last bits of a score may differ, and with them a tie)."""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from benchlib import write_result

from ireid.core.gallery import encode_split
from ireid.core.loader import SkipCounter, load_records
from ireid.interactive.config import load_config
from ireid.questioner.lookforward import build_targets
from ireid.retriever.gallery_processes import encoded_batches, shard_loader
from ireid.retriever.index import GalleryIndex
from ireid.retriever.inference import ModuleRetriever, image_embedder


def timed(retriever, gallery, records, out: Path, processes: int, batch_size: int) -> float:
    start = time.perf_counter()
    build_targets(retriever, gallery, records, out, batch_size=batch_size, processes=processes, gallery_ids=200)
    return time.perf_counter() - start


def timed_index(retriever: ModuleRetriever, data_dir: str, out: Path, processes: int) -> tuple[float, np.ndarray]:
    start = time.perf_counter()
    load, count = shard_loader(Path(data_dir), "train", SkipCounter())
    batches = encoded_batches(image_embedder(retriever.module), load, count, 128, processes)
    index = GalleryIndex.from_encoded(batches, out, total=count, backend="torch", progress=False)
    return time.perf_counter() - start, np.asarray(index.embeddings)


def rate(count: int, seconds: float, processes: int, threads: int) -> dict[str, float]:
    return {"processes": processes, "threads_each": threads, "seconds": round(seconds, 1),
            "items_per_s": round(count / seconds, 1)}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--demo", type=Path, default=Path("runs/demo"), help="a finished `ireid demo` run")
    parser.add_argument("--records", type=int, default=384, help="training records looked forward")
    parser.add_argument("--processes", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    config = load_config(args.demo / "eval" / "config.json")
    retriever = ModuleRetriever.from_checkpoint(config.retriever_ckpt)
    gallery = encode_split(retriever, config.data_dir, "train")
    records = load_records(config.data_dir, "train")[: args.records]
    threads = torch.get_num_threads()
    with tempfile.TemporaryDirectory() as folder:
        one = timed(retriever, gallery, records, Path(folder) / "one", 1, args.batch_size)
        many = timed(retriever, gallery, records, Path(folder) / "many", args.processes, args.batch_size)
        same = [p.read_bytes() for p in sorted((Path(folder) / "one").glob("train-*.tar"))] == [
            p.read_bytes() for p in sorted((Path(folder) / "many").glob("train-*.tar"))
        ]
        index_one, rows_one = timed_index(retriever, config.data_dir, Path(folder) / "ix1", 1)
        index_many, rows_many = timed_index(retriever, config.data_dir, Path(folder) / "ix2", args.processes)
    result = {
        "demo": str(args.demo),
        "lookforward": {
            "records": len(records),
            "reference": rate(len(records), one, 1, threads),
            "shared": rate(len(records), many, args.processes, 1),
            "speedup": round(one / many, 2),
            "same_bytes": same,
        },
        "gallery_index": {
            "images": len(rows_one),
            "reference": rate(len(rows_one), index_one, 1, threads),
            "shared": rate(len(rows_one), index_many, args.processes, 1),
            "speedup": round(index_one / index_many, 2),
            "same_bytes": bool(np.array_equal(rows_one, rows_many)),
        },
    }
    print(result)
    write_result("processes", result, args.out)


if __name__ == "__main__":
    main()

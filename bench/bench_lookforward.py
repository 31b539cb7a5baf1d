"""Look-forward target building with its batches shared among processes: records/s with `--processes` forked
processes of one thread each, against one process with every thread (the default), on a finished demo's retriever
and training split. The targets of the two runs are compared too (equal bytes when the one process also ran on one
thread; with more threads the last bits of a score may differ, and with them a tie)."""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import torch
from benchlib import write_result

from ireid.core.gallery import encode_split
from ireid.core.loader import load_records
from ireid.interactive.config import load_config
from ireid.questioner.lookforward import build_targets
from ireid.retriever.inference import ModuleRetriever


def timed(retriever, gallery, records, out: Path, processes: int, batch_size: int) -> float:
    start = time.perf_counter()
    build_targets(retriever, gallery, records, out, batch_size=batch_size, processes=processes, gallery_ids=200)
    return time.perf_counter() - start


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
    with tempfile.TemporaryDirectory() as folder:
        one = timed(retriever, gallery, records, Path(folder) / "one", 1, args.batch_size)
        many = timed(retriever, gallery, records, Path(folder) / "many", args.processes, args.batch_size)
        same = [p.read_bytes() for p in sorted((Path(folder) / "one").glob("train-*.tar"))] == [
            p.read_bytes() for p in sorted((Path(folder) / "many").glob("train-*.tar"))
        ]
    result = {
        "demo": str(args.demo),
        "records": len(records),
        "one_process": {
            "threads": torch.get_num_threads(),
            "seconds": round(one, 1),
            "records_per_s": round(len(records) / one, 2),
        },
        "processes": {
            "count": args.processes,
            "threads_each": 1,
            "seconds": round(many, 1),
            "records_per_s": round(len(records) / many, 2),
        },
        "speedup": round(one / many, 2),
        "same_bytes": same,
    }
    print(result)
    write_result("lookforward_processes", result, args.out)


if __name__ == "__main__":
    main()

"""Top-k gallery search latency: FAISS flat vs torch matmul + top-k (and IVF-Flat at the largest size).

Galleries of clustered, L2-normalised 512-d vectors stored as fp16, searched through `GalleryIndex` (so the
figures include query normalisation and result ordering) with a batch of 64 queries and with one query.
Each backend's build time (float32 copy, IVF training and list assignment) is reported separately.
The machine may be shared: the load average before and after is recorded next to the figures.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import faiss
import numpy as np
import torch
from benchlib import best_time, write_result

from ireid.retriever.index import CHUNK_ROWS, GalleryIndex


def clustered_gallery(n: int, dim: int, seed: int = 0) -> np.ndarray:
    """fp16 [n, dim] normalised rows around 1000 centres (noise rows drawn from a 64k table: fast for 10^6)."""
    g = torch.Generator().manual_seed(seed)
    centres = torch.randn(1000, dim, generator=g)
    noise = 0.6 * torch.randn(65536, dim, generator=g)
    out = np.empty((n, dim), dtype=np.float16)
    for start in range(0, n, CHUNK_ROWS):
        rows = min(n, start + CHUNK_ROWS) - start
        x = centres[torch.randint(1000, (rows,), generator=g)] + noise[torch.randint(65536, (rows,), generator=g)]
        out[start : start + rows] = torch.nn.functional.normalize(x, dim=1).numpy()
    return out


def measure(index: GalleryIndex, queries: np.ndarray, k: int, repeats: int) -> dict[str, float]:
    start = time.perf_counter()
    index.search(queries[:1], k)  # builds the backend
    build_s = time.perf_counter() - start
    batch_s = best_time(lambda: index.search(queries, k), repeats)
    single_s = best_time(lambda: index.search(queries[:1], k), max(repeats, 5))
    return {"build_s": build_s, f"batch{len(queries)}_ms": 1e3 * batch_s, "single_ms": 1e3 * single_s}


def recall(exact: torch.Tensor, approx: torch.Tensor) -> float:
    rows = zip(exact.tolist(), approx.tolist(), strict=True)
    return float(np.mean([len(set(e) & set(a)) / exact.shape[1] for e, a in rows]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000, 1_000_000])
    parser.add_argument("--dim", type=int, default=512)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--ivf-nlist", type=int, default=1000, help="IVF lists at the largest size (≈ √N here)")
    parser.add_argument("--ivf-nprobe", type=int, default=32)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()

    load_before = os.getloadavg()
    queries = clustered_gallery(args.batch, args.dim, seed=1).astype(np.float32)
    rows, ratios = [], []
    for n in args.sizes:
        gallery = clustered_gallery(n, args.dim)
        keys = [str(i) for i in range(n)]
        found = {}
        for backend in ("faiss", "torch"):
            index = GalleryIndex(gallery, keys, backend=backend)
            row = {"gallery": n, "backend": backend, **measure(index, queries, args.k, args.repeats)}
            found[backend] = index.search(queries, args.k)[1]
            rows.append(row)
            print(json.dumps(row))
            del index
        faiss_row, torch_row = rows[-2], rows[-1]
        batch_key = f"batch{args.batch}_ms"
        ratios.append(
            {
                "gallery": n,
                f"torch_over_faiss_batch{args.batch}": torch_row[batch_key] / faiss_row[batch_key],
                "torch_over_faiss_single": torch_row["single_ms"] / faiss_row["single_ms"],
                "same_indices": bool(torch.equal(found["faiss"], found["torch"])),
            }
        )
        if n == max(args.sizes):
            index = GalleryIndex(gallery, keys, backend="faiss-ivf", nlist=args.ivf_nlist, nprobe=args.ivf_nprobe)
            row = {"gallery": n, "backend": "faiss-ivf", **measure(index, queries, args.k, args.repeats)}
            row.update(nlist=args.ivf_nlist, nprobe=args.ivf_nprobe)
            row["recall_at_k_vs_flat"] = recall(found["faiss"], index.search(queries, args.k)[1])
            rows.append(row)
            print(json.dumps(row))
            del index
    result = {
        "dim": args.dim,
        "k": args.k,
        "storage": "float16 rows, float32 scores",
        "query_batch": args.batch,
        "repeats": args.repeats,
        "timing": "best of `repeats` (single query: best of max(repeats, 5)); build_s = first search",
        "faiss_omp_threads": faiss.omp_get_max_threads(),
        "load_average_before_after": [list(load_before), list(os.getloadavg())],
        "results": rows,
        "ratios": ratios,
    }
    print(json.dumps(ratios, indent=1))
    write_result("search", result, args.out)


if __name__ == "__main__":
    main()

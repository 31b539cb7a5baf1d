"""Cost of the interactive harness per round: seconds per 1,000 queries on CPU, per question strategy.

A tiny retriever of the synthetic config (random init: encoding costs the same as a trained one) searches a
gallery of 1,000 images (250 identities × 4) with every test image as a query, the rule-based witness
answering. One dialogue round per strategy is timed after round 0 (the initial encoding), which is reported
apart. `chatir` runs SmolLM2-135M-Instruct (when installed) on a subset and is scaled to 1,000 queries.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import torch
from benchlib import write_result

from ireid.answerer import build_witness
from ireid.app.strategies import build_strategy
from ireid.core.factory import ModelNotAvailableError
from ireid.core.gallery import encode_split
from ireid.core.loader import load_records
from ireid.core.synthetic.world import build_world
from ireid.interactive.config import EvalConfig
from ireid.interactive.session import run_batch
from ireid.retriever.inference import ModuleRetriever
from ireid.retriever.module import RetrieverModule

TINY = {"vision_config": {"patch_size": 8}}


def timed_round(strategy, queries, gallery, retriever, witness, batch_size: int) -> tuple[float, float]:
    """Seconds for round 0 alone and for rounds 0–1, summed over batches."""
    initial = both = 0.0
    for start in range(0, len(queries), batch_size):
        batch = queries[start : start + batch_size]
        t0 = time.perf_counter()
        run_batch(strategy, batch, gallery, retriever, witness, 0, lambda d: d.retrieval_text())
        t1 = time.perf_counter()
        run_batch(strategy, batch, gallery, retriever, witness, 1, lambda d: d.retrieval_text())
        t2 = time.perf_counter()
        initial += t1 - t0
        both += t2 - t1
    return initial, both


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--ids", type=int, default=250)
    parser.add_argument("--batch-size", type=int, default=100)
    parser.add_argument("--chatir-queries", type=int, default=32)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    torch.manual_seed(0)
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "world"
        build_world(data, ids_train=50, ids_val=0, ids_test=args.ids, images_per_id=4, seed=0, progress=False)
        module = RetrieverModule(str(data), losses="sdm", temperature=0.07, model_overrides=TINY, num_ids=50)
        retriever = ModuleRetriever(module)
        t0 = time.perf_counter()
        gallery = encode_split(retriever, data, "test")
        encode_s = time.perf_counter() - t0
        queries = load_records(data, "test")
        witness = build_witness("rule")
        config = EvalConfig(data_dir=str(data))
        per_strategy = {}
        for name in ("initial", "random", "oracle-lookforward", "simirv", "plugir", "chatir"):
            try:
                strategy = build_strategy(name, config)
            except ModelNotAvailableError as error:  # chatir without SmolLM2 installed: reported, not fatal
                per_strategy[name] = {"skipped": str(error)}
                continue
            subset = queries[: args.chatir_queries] if name == "chatir" else queries
            initial_s, round_s = timed_round(strategy, subset, gallery, retriever, witness, args.batch_size)
            scale = 1000 / len(subset)
            per_strategy[name] = {
                "queries": len(subset),
                "round0_s_per_1000_queries": round(initial_s * scale, 3),
                "round_s_per_1000_queries": round((round_s - initial_s) * scale, 3),
            }
            print(name, per_strategy[name], flush=True)
    write_result(
        "interactive_harness",
        {
            "gallery_images": len(gallery),
            "gallery_encoding_s": round(encode_s, 2),
            "batch_size": args.batch_size,
            "strategies": per_strategy,
            "note": "one dialogue round, excluding round 0 (initial encoding); tiny retriever; rule-based witness",
        },
        args.out,
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

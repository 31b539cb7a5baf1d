"""The investigator app under load: one round's latency at 10^4 and 10^5 gallery images, and many sessions at once.

1. **Round latency.** A finished demo's retriever and questioner (`--demo`) over galleries of 10^4 and 10^5 images:
   the demo's test embeddings tiled with noise, each key showing one of the test images. p50/p95 of one answer
   (the text encoded, the gallery scored and ranked, the next question asked, the view built), per strategy,
   against `initial` (no question asked: the retrieval alone) in the same run.
2. **Concurrent sessions.** The app served by uvicorn on 127.0.0.1, `--clients` threads (20) for `--seconds` (120),
   each running whole sessions (describe, answer, mark one "not them", export) with answers of its own; any error
   status, or a session whose history holds an answer it was not given, is counted.
"""

from __future__ import annotations

import argparse
import random
import statistics
import threading
import time
from collections.abc import Sequence
from pathlib import Path

import httpx
import torch
from benchlib import write_result
from PIL import Image

from ireid.app.investigator.gallery import SearchGallery, split_gallery
from ireid.app.investigator.server import serving
from ireid.app.investigator.session import Investigator, InvestigatorSettings
from ireid.app.strategies import build_strategy
from ireid.core.gallery import Gallery
from ireid.core.images import ImageStore
from ireid.core.records import Record
from ireid.interactive.config import load_config
from ireid.retriever.inference import ModuleRetriever

DESCRIPTIONS = ["I saw a woman in a red top.", "A man with a black backpack.", "A young man in blue jeans."]
ANSWERS = ["She wore white sneakers.", "He had short black hair.", "The top was plain.", "He carried nothing."]


class TiledImages:
    """Key i of a tiled gallery shows test image i mod n."""

    def __init__(self, store: ImageStore, keys: Sequence[str], tiled: Sequence[str]):
        self.store, self.source = store, {k: keys[i % len(keys)] for i, k in enumerate(tiled)}

    def encoded(self, key: str) -> bytes:
        return self.store.encoded(self.source[key])

    def load(self, keys: Sequence[str]) -> list[Image.Image]:
        return self.store.load([self.source[k] for k in keys])


def tiled_gallery(base: SearchGallery, size: int, seed: int = 0) -> SearchGallery:
    generator = torch.Generator().manual_seed(seed)
    rows = torch.arange(size) % len(base)
    noise = 0.05 * torch.randn(size, base.gallery.embeddings.shape[1], generator=generator)
    embeddings = torch.nn.functional.normalize(base.gallery.embeddings[rows] + noise, dim=1)
    keys = [f"tiled/{i:07d}" for i in range(size)]
    records = [Record(key=k, pid=-1, split="test", source="bench") for k in keys]
    gallery = Gallery(keys, torch.full((size,), -1, dtype=torch.long), embeddings, records)
    assert isinstance(base.images, ImageStore)
    return SearchGallery(gallery, TiledImages(base.images, base.gallery.keys, keys), f"tiled x{size}")


def round_latency(investigator: Investigator, rounds: int, seed: int = 0) -> dict[str, float]:
    rng, times = random.Random(seed), []
    for i in range(rounds):
        inv = investigator.start(DESCRIPTIONS[i % len(DESCRIPTIONS)])
        start = time.perf_counter()
        investigator.answer(inv, "text", rng.choice(ANSWERS))
        investigator.view(inv)
        times.append(time.perf_counter() - start)
    times.sort()
    return {"p50_ms": 1e3 * times[len(times) // 2], "p95_ms": 1e3 * times[int(0.95 * (len(times) - 1))]}


def client_loop(url: str, seconds: float, index: int, stats: dict[str, list], lock: threading.Lock) -> None:
    rng = random.Random(index)
    deadline = time.monotonic() + seconds
    with httpx.Client(base_url=url, timeout=60) as client:
        while time.monotonic() < deadline:
            own = [f"{rng.choice(ANSWERS)[:-1]}, client {index} answer {n}." for n in range(3)]
            view: dict = {}
            try:
                for step in range(6):
                    start = time.perf_counter()
                    if step == 0:
                        response = client.post("/api/sessions", json={"description": DESCRIPTIONS[index % 3]})
                    elif step <= 3:
                        response = client.post(f"/api/sessions/{view['session']}/answer",
                                               json={"kind": "text", "text": own[step - 1]})  # fmt: skip
                    elif step == 4:
                        response = client.post(f"/api/sessions/{view['session']}/reject",
                                               json={"key": view["candidates"][0]["key"]})  # fmt: skip
                    else:
                        response = client.get(f"/api/sessions/{view['session']}/export")
                    elapsed = time.perf_counter() - start
                    with lock:
                        stats["latency"].append(elapsed)
                    if response.status_code != 200:
                        with lock:
                            stats["errors"].append(f"step {step}: HTTP {response.status_code} {response.text[:200]}")
                        break
                    view = response.json()
                else:
                    answers = [turn["answer"] for turn in view["history"]]
                    with lock:
                        stats["sessions"].append(index)
                        if answers != own:
                            stats["mixed"].append(index)
            except httpx.HTTPError as error:
                with lock:
                    stats["errors"].append(f"{type(error).__name__}: {error}")


def concurrent_sessions(investigator: Investigator, clients: int, seconds: float) -> dict[str, float]:
    stats: dict[str, list] = {"latency": [], "errors": [], "sessions": [], "mixed": []}
    lock = threading.Lock()
    with serving(investigator) as url:
        workers = [threading.Thread(target=client_loop, args=(url, seconds, i, stats, lock)) for i in range(clients)]
        start = time.perf_counter()
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join()
        wall = time.perf_counter() - start
    latency = sorted(stats["latency"])
    return {
        "clients": clients,
        "seconds": round(wall, 1),
        "requests": len(latency),
        "requests_per_s": round(len(latency) / wall, 2),
        "sessions_completed": len(stats["sessions"]),
        "errors": len(stats["errors"]),
        "error_examples": stats["errors"][:5],
        "sessions_with_another_sessions_answers": len(stats["mixed"]),
        "p50_ms": round(1e3 * statistics.median(latency), 1) if latency else None,
        "p95_ms": round(1e3 * latency[int(0.95 * (len(latency) - 1))], 1) if latency else None,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--demo", type=Path, default=Path("runs/demo"), help="a finished `ireid demo` run")
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000])
    parser.add_argument("--strategies", nargs="+", default=["initial", "expected-gain", "llava-reid"])
    parser.add_argument("--rounds", type=int, default=30, help="timed answers per strategy and size")
    parser.add_argument("--clients", type=int, default=20)
    parser.add_argument("--seconds", type=float, default=120)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    torch.set_num_threads(max(1, torch.get_num_threads()))
    config = load_config(args.demo / "eval" / "config.json")
    retriever = ModuleRetriever.from_checkpoint(config.retriever_ckpt)
    base = split_gallery(config.data_dir, config.split, retriever)
    latency: dict[str, dict[str, dict[str, float]]] = {}
    for size in args.sizes:
        gallery = tiled_gallery(base, size)
        for name in args.strategies:
            strategy = build_strategy(name, config, gallery.images)
            investigator = Investigator(gallery, retriever, strategy, InvestigatorSettings())
            latency.setdefault(str(size), {})[name] = round_latency(investigator, args.rounds)
            print(size, name, latency[str(size)][name])
        reference = latency[str(size)]["initial"]["p50_ms"]
        for figures in latency[str(size)].values():
            figures["p50_vs_initial"] = round(figures["p50_ms"] / reference, 2)
    load_strategy = "llava-reid" if "llava-reid" in args.strategies else args.strategies[-1]
    investigator = Investigator(base, retriever, build_strategy(load_strategy, config, base.images))
    concurrency = concurrent_sessions(investigator, args.clients, args.seconds)
    print(concurrency)
    write_result("investigator", {"demo": str(args.demo), "round_latency": latency,
                                  "concurrent": {"strategy": load_strategy, "gallery": len(base), **concurrency}},
                 args.out)  # fmt: skip


if __name__ == "__main__":
    main()

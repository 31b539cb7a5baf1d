"""One training step of a ViT-B/16-sized random-init retriever: step time and peak memory, bf16-mixed vs fp32.

The module is the real `RetrieverModule` with the real-weights config's shape (ViT-B/16 vision at 384×128,
12-layer 512-wide text tower with CLIP's 49,408-token vocabulary and 192 positions, `sdm+id+mlm`, Adam),
so the figure is what `configs/retriever/real-clip-interactive-pedes.yaml` costs per step before any data
loading. bf16-mixed is autocast over fp32 weights, as Lightning's `bf16-mixed` precision; the fp32 step in
the same run is the reference. Texts are the synthetic world's fine descriptions, padded to the full 192
positions, as IRRA pads its captions.

    python bench/bench_retriever_step.py --device cuda          # writes retriever_step_cuda.json
"""

from __future__ import annotations

import argparse
import contextlib
import json
import statistics
import tempfile
import time
from pathlib import Path

import torch
from benchlib import device_note, synchronize, write_result

from ireid.core.loader import load_records
from ireid.core.synthetic.world import build_world
from ireid.retriever.module import RetrieverModule

VIT_B16 = {
    "text_config": {"hidden_size": 512, "intermediate_size": 2048, "num_hidden_layers": 12,
                    "num_attention_heads": 8, "vocab_size": 49408},
    "vision_config": {"hidden_size": 768, "intermediate_size": 3072, "num_hidden_layers": 12,
                      "num_attention_heads": 12, "image_size": 224, "patch_size": 16},
    "projection_dim": 512,
}  # fmt: skip
IMAGE_HW = (384, 128)
TEXT_LENGTH = 192


def build(data_dir: Path, num_ids: int, device: torch.device) -> RetrieverModule:
    module = RetrieverModule(
        str(data_dir), model="tiny", model_overrides=VIT_B16, losses="sdm+id+mlm", num_ids=num_ids,
        image_size=IMAGE_HW, text_length=TEXT_LENGTH, lr=1e-5, adam_eps=1e-3,
    )  # fmt: skip
    return module.to(device).train()


def pad_texts_to_full_length(module: RetrieverModule) -> None:
    """IRRA pads every caption to the full text length: make the module's tokenizer call do the same."""
    tokenize = module.tokenize
    pad_id = module.tokenizer.pad_token_id or 0

    def padded(texts: list[str]) -> dict[str, torch.Tensor]:
        encoded = tokenize(texts)
        missing = TEXT_LENGTH - encoded["input_ids"].shape[1]
        return {
            "input_ids": torch.nn.functional.pad(encoded["input_ids"], (0, missing), value=pad_id),
            "attention_mask": torch.nn.functional.pad(encoded["attention_mask"], (0, missing), value=0),
        }

    module.tokenize = padded


def make_batch(module: RetrieverModule, texts: list[str], batch: int, device: torch.device) -> dict:
    generator = torch.Generator().manual_seed(0)
    return {
        "images": torch.randn(batch, 3, *IMAGE_HW, generator=generator).to(device),
        "texts": [texts[i % len(texts)] for i in range(batch)],
        "pids": torch.arange(batch, device=device) % 64,
    }


def time_steps(module: RetrieverModule, batch: dict, dtype: torch.dtype | None, steps: int) -> dict:
    """Mean and spread of `steps` full steps (forward, backward, Adam) after two warm-up steps."""
    device = batch["images"].device
    optimizer = torch.optim.Adam(module.parameters(), lr=1e-5, eps=1e-3)
    autocast = torch.autocast(device.type, dtype=dtype) if dtype is not None else contextlib.nullcontext()
    module.log = lambda *args, **kwargs: None  # no trainer attached: logging is not what is measured
    times = []
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    for step in range(steps + 2):
        synchronize(device)
        start = time.perf_counter()
        with autocast:
            loss = module.training_step(batch, step)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        synchronize(device)
        if step >= 2:
            times.append(time.perf_counter() - start)
    row = {"step_s_mean": statistics.mean(times), "step_s_stdev": statistics.pstdev(times), "steps": steps}
    if device.type == "cuda":
        row["peak_memory_gib"] = torch.cuda.max_memory_allocated(device) / 2**30
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--batch", type=int, default=128, help="the real config's batch (default 128)")
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    device = torch.device(args.device)
    with tempfile.TemporaryDirectory() as tmp:
        build_world(tmp, ids_train=64, ids_val=2, ids_test=2, images_per_id=2, seed=0, progress=False)
        texts = [r.fine_description for r in load_records(tmp, "train")]
        rows = []
        for label, dtype in (("fp32", None), ("bf16-mixed", torch.bfloat16)):
            module = build(Path(tmp), 64, device)
            pad_texts_to_full_length(module)
            batch = make_batch(module, texts, args.batch, device)
            row = {"precision": label, "batch": args.batch, **time_steps(module, batch, dtype, args.steps)}
            row["parameters_m"] = sum(p.numel() for p in module.parameters()) / 1e6
            rows.append(row)
            print(json.dumps(row))
            del module
            if device.type == "cuda":
                torch.cuda.empty_cache()
    fp32, bf16 = rows
    payload = {"device": device_note(device), "rows": rows, "bf16_speedup": fp32["step_s_mean"] / bf16["step_s_mean"]}
    name = "retriever_step" if device.type == "cpu" else f"retriever_step_{device.type}"
    write_result(name, payload, args.out)


if __name__ == "__main__":
    main()

"""Gallery encoding throughput (images/s): the retriever's encoder against plain `CLIPModel.get_image_features`.

Same random-init model, batch and dtype. The reference is what a user would call on a stock CLIP for
person crops: `get_image_features(..., interpolate_pos_encoding=True)`, which resizes the square position
grid on every forward. The retriever resizes the grid once (IRRA) and runs under `torch.inference_mode`.
Two sizes: the tiny config of the synthetic demo, and a ViT-B/16-sized CLIP at 384×128 (real-model scale).
`--device cuda --dtypes float32 bfloat16` measures on a GPU with larger batches (written to
`retriever_encoding_cuda.json`).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch
from benchlib import best_time, device_note, synchronize, write_result
from transformers import CLIPConfig, CLIPModel

from ireid.core.person_vision import resize_vision_positions
from ireid.retriever.model import ClipFeatures

SIZES = {
    "tiny-128x64": {
        "config": {"vision_config": {"hidden_size": 128, "intermediate_size": 256, "num_hidden_layers": 2,
                                     "num_attention_heads": 2, "image_size": 128, "patch_size": 16},
                   "projection_dim": 64},
        "hw": (128, 64), "batch": 256, "batches": 8, "gpu_batch_factor": 4,
    },
    "vit-b16-384x128": {
        "config": {"vision_config": {"hidden_size": 768, "intermediate_size": 3072, "num_hidden_layers": 12,
                                     "num_attention_heads": 12, "image_size": 224, "patch_size": 16},
                   "projection_dim": 512},
        "hw": (384, 128), "batch": 16, "batches": 2, "gpu_batch_factor": 16,
    },
}  # fmt: skip


def measure(name: str, spec: dict, dtype: torch.dtype, device: torch.device, repeats: int) -> dict:
    torch.manual_seed(0)
    reference = CLIPModel(CLIPConfig(**spec["config"])).eval().to(device, dtype)
    ours = CLIPModel(CLIPConfig(**spec["config"])).eval().to(device, dtype)
    ours.load_state_dict(reference.state_dict())
    resize_vision_positions(ours, spec["hw"])
    features = ClipFeatures(ours).eval()
    batch = spec["batch"] * (spec["gpu_batch_factor"] if device.type == "cuda" else 1)
    images = torch.randn(batch, 3, *spec["hw"], dtype=dtype, device=device)

    def run_reference() -> None:
        with torch.no_grad():
            for _ in range(spec["batches"]):
                reference.get_image_features(pixel_values=images, interpolate_pos_encoding=True)
        synchronize(device)

    def run_ours() -> None:
        with torch.inference_mode():
            for _ in range(spec["batches"]):
                features.encode_images(images)
        synchronize(device)

    run_reference(), run_ours()  # warm-up
    n = batch * spec["batches"]
    ref_s, ours_s = best_time(run_reference, repeats), best_time(run_ours, repeats)
    return {
        "size": name, "device": device.type, "dtype": str(dtype).removeprefix("torch."), "batch": batch, "images": n,
        "reference_images_per_s": n / ref_s, "retriever_images_per_s": n / ours_s, "ratio": ref_s / ours_s,
    }  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--device", default="cpu", help="cpu or cuda")
    parser.add_argument("--dtypes", nargs="+", default=["float32"], choices=["float32", "bfloat16"])
    args = parser.parse_args()
    device = torch.device(args.device)
    rows = [
        measure(name, spec, getattr(torch, dtype), device, args.repeats)
        for dtype in args.dtypes
        for name, spec in SIZES.items()
    ]
    for row in rows:
        print(json.dumps(row))
    name = "retriever_encoding" if device.type == "cpu" else f"retriever_encoding_{device.type}"
    write_result(name, {"device": device_note(device), "rows": rows}, args.out)


if __name__ == "__main__":
    main()

"""QLoRA training steps of the questioner on a GPU: 4-bit NF4 base + LoRA against the same model unquantised (bf16).

The questioner is a small LLaVA-OneVision (the real architecture, random init, a 4-layer 512-wide Qwen2
language model) built through `build_questioner_model`, the path the real 7B config takes. Both variants
train LoRA adapters on one fixed batch (a dialogue, four candidate images, a target question) with AdamW;
the run records step time, peak GPU memory, the loss before and after (the adapters must fit the batch),
and that the base weights are `Linear4bit` NF4 tensors on the GPU.

    python bench/bench_qlora_step.py          # needs CUDA and bitsandbytes; writes qlora_step_cuda.json
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

import torch
from benchlib import device_note, synchronize, write_result
from PIL import Image

from ireid.core.lora import LoraSettings
from ireid.core.protocols import Dialogue
from ireid.core.synthetic.world import build_world
from ireid.questioner.model import QuestionerModel, build_questioner_model
from ireid.questioner.tokenizer import questioner_tokenizer

MODEL = {
    "text_config": {"hidden_size": 512, "intermediate_size": 1408, "num_hidden_layers": 4,
                    "num_attention_heads": 8, "num_key_value_heads": 2},
    "vision_config": {"hidden_size": 128, "intermediate_size": 256, "num_hidden_layers": 2},
}  # fmt: skip
LORA = LoraSettings(r=16, alpha=32, dropout=0.0)


def batch() -> tuple[list[Dialogue], list[list[Image.Image]], list[str], list[int]]:
    colours = [(200, 30, 30), (30, 200, 30), (30, 30, 200), (200, 200, 30)]
    images = [[Image.new("RGB", (32, 64), colour) for colour in colours]] * 4
    dialogues = [Dialogue("I saw a man with a backpack.")] * 4
    return dialogues, images, ["Was he wearing a red cap?"] * 4, [0] * 4


def run(tokenizer, quantization: str | None, steps: int) -> dict:
    dtype = "bfloat16"
    built = build_questioner_model("tiny", tokenizer, MODEL, quantization, dtype=dtype, lora=LORA)
    model = QuestionerModel(built, pool=2).cuda()
    if quantization is None:
        model.to(torch.bfloat16)
    four_bit = [m for m in model.modules() if type(m).__name__ == "Linear4bit"]
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=2e-3)
    dialogues, images, targets, variants = batch()
    torch.cuda.reset_peak_memory_stats()
    losses, times = [], []
    for _ in range(steps):
        synchronize(torch.device("cuda"))
        start = time.perf_counter()
        with torch.autocast("cuda", dtype=torch.bfloat16):
            loss, _ = model.nll(dialogues, images, targets, variants)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        synchronize(torch.device("cuda"))
        times.append(time.perf_counter() - start)
        losses.append(float(loss))
    row = {
        "variant": "nf4 + LoRA (QLoRA)" if quantization else "bf16 + LoRA",
        "linear4bit_layers": len(four_bit),
        "base_on_gpu_nf4": bool(four_bit)
        and all(m.weight.device.type == "cuda" and m.weight.quant_state.quant_type == "nf4" for m in four_bit),
        "trainable_parameters_m": sum(p.numel() for p in params) / 1e6,
        "step_s_mean": statistics.mean(times[2:]),
        "peak_memory_mib": torch.cuda.max_memory_allocated() / 2**20,
        "loss_first": losses[0],
        "loss_last": losses[-1],
        "steps": steps,
    }
    del model, optimizer
    torch.cuda.empty_cache()
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    if not torch.cuda.is_available():
        raise SystemExit("bench_qlora_step.py needs a CUDA GPU")
    with tempfile.TemporaryDirectory() as tmp:
        build_world(tmp, ids_train=32, ids_val=2, ids_test=2, images_per_id=2, seed=0, progress=False)
        tokenizer = questioner_tokenizer(tmp, vocab_size=1024)
        rows = [run(tokenizer, quantization, args.steps) for quantization in ("nf4", None)]
    for row in rows:
        print(json.dumps(row))
    qlora, plain = rows
    payload = {
        "device": device_note(torch.device("cuda")),
        "rows": rows,
        "memory_ratio_plain_over_qlora": plain["peak_memory_mib"] / qlora["peak_memory_mib"],
    }
    write_result("qlora_step_cuda", payload, args.out)


if __name__ == "__main__":
    main()

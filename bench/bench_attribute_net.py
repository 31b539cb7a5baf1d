"""The attribute net's training step and its reading of a gallery: batches/s and images/s of the net as it runs
(channels-last), against the same network in the default contiguous layout (the reference), on random crops of the
net's input size. The two layouts compute the same logits (the largest difference is printed)."""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch
from benchlib import write_result

from ireid.core.attribute_net import PIXELS, AttributeNet
from ireid.core.attribute_net_training import AttributeNetModule
from ireid.core.vocabulary.attributes import ATTRIBUTES


def contiguous_forward(net: AttributeNet):
    """The net's forward without its move to channels-last."""

    def forward(pixels: torch.Tensor) -> dict[str, torch.Tensor]:
        features = net.trunk(net.stages(pixels))
        return {name: head(features) for name, head in net.heads.items()}

    return forward


def seconds_per_step(module: AttributeNetModule, batch: torch.Tensor, targets: torch.Tensor, steps: int) -> float:
    optimiser = torch.optim.AdamW(module.parameters(), lr=1e-3)
    for index in range(steps + 3):  # three warm-up steps
        if index == 3:
            start = time.perf_counter()
        loss, _ = module.losses(batch, targets)
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
    return (time.perf_counter() - start) / steps


@torch.no_grad()
def images_per_second(net: AttributeNet, images: torch.Tensor, repeats: int) -> float:
    net.eval()
    net(images[:8])
    start = time.perf_counter()
    for _ in range(repeats):
        net(images)
    return repeats * len(images) / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--read-batch", type=int, default=256)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    vocabulary = {name: spec.values for name, spec in ATTRIBUTES.items()}
    torch.manual_seed(0)
    height, width = PIXELS.size_hw
    batch = torch.randn(args.batch_size, 3, height, width)
    targets = torch.stack([torch.randint(0, len(v), (args.batch_size,)) for v in vocabulary.values()], dim=1)
    gallery = torch.randn(args.read_batch, 3, height, width)
    runs = {}
    for layout, memory_format in (("contiguous", torch.contiguous_format), ("channels_last", torch.channels_last)):
        torch.manual_seed(0)
        module = AttributeNetModule(vocabulary)
        net = module.net.to(memory_format=memory_format)
        if layout == "contiguous":  # the net moves its input to channels-last; the reference keeps it as it comes
            net.forward = contiguous_forward(net)  # type: ignore[method-assign]
        with torch.no_grad():
            logits = net.eval()(gallery[:16])["gender"]  # before any training step changes the weights
        net.train()
        runs[layout] = {
            "train_step_s": round(seconds_per_step(module, batch, targets, args.steps), 4),
            "read_images_per_s": round(images_per_second(net, gallery, 3), 1),
            "logits": logits,
        }
    difference = (runs["contiguous"].pop("logits") - runs["channels_last"].pop("logits")).abs().max().item()
    result = {
        "batch_size": args.batch_size,
        "threads": torch.get_num_threads(),
        "reference": runs["contiguous"],
        "channels_last": runs["channels_last"],
        "train_speedup": round(runs["contiguous"]["train_step_s"] / runs["channels_last"]["train_step_s"], 2),
        "read_speedup": round(runs["channels_last"]["read_images_per_s"] / runs["contiguous"]["read_images_per_s"], 2),
        "max_logit_difference": difference,
    }
    print(result)
    write_result("attribute_net", result, args.out)


if __name__ == "__main__":
    main()

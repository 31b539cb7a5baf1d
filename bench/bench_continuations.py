"""Shared-prefix text encoding (texts/s): `encode_continuations` against `encode_text` of the joined texts.

The texts are the expected-gain rule's: for each of 64 dialogues (8 for the large tower) of a small synthetic
world (0 to 4 answered turns), the dialogue so far followed by each value statement of every attribute it has not
covered, some 50 per dialogue. The reference encodes the joined texts as any retriever would; the shared-prefix
encoder runs each dialogue once (`ireid.retriever.continuations`). Same random-init network, same texts, same
batch size. Two text towers: the demo's tiny one (2 layers, 128 wide) and CLIP ViT-B/16's (12 layers, 512 wide).

    python bench/bench_continuations.py          # writes continuations.json
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import torch
from benchlib import best_time, device_note, synchronize, write_result

from ireid.core.expected_gain import value_statements
from ireid.core.loader import load_records
from ireid.core.protocols import Dialogue
from ireid.core.rounds import retrieval_text_reader
from ireid.core.synthetic.world import build_world
from ireid.core.vocabulary.asking import gender_of, uncovered_attributes
from ireid.retriever.continuations import encode_continuations
from ireid.retriever.inference import encode_text
from ireid.retriever.model import RetrieverNet, RetrieverSettings, build_retriever_net

TOWERS = {  # name: (model overrides, dialogues)
    "tiny": (None, 64),
    "clip-b16-text": ({"text_config": {"hidden_size": 512, "intermediate_size": 2048, "num_hidden_layers": 12,
                                       "num_attention_heads": 8}, "projection_dim": 512}, 8),
}  # fmt: skip


def dialogues(data_dir: Path, count: int) -> tuple[list[str], list[list[str]]]:
    """The expected-gain rule's prefixes and endings for `count` training records."""
    text_of = retrieval_text_reader()
    prefixes, endings = [], []
    for k, record in enumerate(load_records(data_dir, "train")[:count]):
        dialogue = Dialogue(record.initial_description)
        for qa in record.qas[: k % 5]:
            dialogue.ask(qa.question, qa.answer)
        current = text_of(dialogue)
        prefixes.append(current)
        todo = uncovered_attributes(dialogue, current)
        endings.append([s for a in todo for s in value_statements(a, gender_of(dialogue))])
    return prefixes, endings


def measure(name: str, net: RetrieverNet, prefixes: list[str], endings: list[list[str]], repeats: int) -> dict:
    texts = [f"{p} {e}" for p, group in zip(prefixes, endings, strict=True) for e in group]
    device = net.device

    def run_reference() -> torch.Tensor:
        out = encode_text(net, texts, batch_size=256)
        synchronize(device)
        return out

    def run_shared() -> torch.Tensor:
        out = encode_continuations(net, prefixes, endings, batch_size=256)
        synchronize(device)
        return out

    difference = (run_reference() - run_shared()).abs().max().item()  # also the warm-up
    ref_s, ours_s = best_time(run_reference, repeats), best_time(run_shared, repeats)
    return {
        "tower": name, "device": device_note(device), "dialogues": len(prefixes), "texts": len(texts),
        "reference_texts_per_s": len(texts) / ref_s, "continuations_texts_per_s": len(texts) / ours_s,
        "ratio": ref_s / ours_s, "max_abs_difference": difference,
    }  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--device", default="cpu", help="cpu or cuda")
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        build_world(tmp, ids_train=64, ids_val=2, ids_test=2, images_per_id=1, seed=0, progress=False)
        for name, (overrides, count) in TOWERS.items():
            prefixes, endings = dialogues(Path(tmp), count)
            torch.manual_seed(0)
            settings = RetrieverSettings(tmp, losses="sdm", model_overrides=overrides)
            net = build_retriever_net(settings).eval().to(args.device)
            rows.append(measure(name, net, prefixes, endings, args.repeats))
            print(rows[-1])
    suffix = "" if args.device == "cpu" else f"_{args.device}"
    write_result(f"continuations{suffix}", {"device": args.device, "rows": rows}, args.out)


if __name__ == "__main__":
    main()

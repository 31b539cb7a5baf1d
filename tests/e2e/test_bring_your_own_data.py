"""From a folder of crops to Interactive-PEDES-style shards to look-forward targets: the path a user with their own
footage takes (the root README's "Bring your own data"), with scripted models in place of the VLM and the LLM."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import pytest
from PIL import Image, ImageStat

from ireid.app import build_interactive_cli
from ireid.app.cli import main
from ireid.core.loader import load_records, undecoded_samples
from tests.core.test_interactive_pedes import ScriptedLLM

COLOURS = {"red": (200, 40, 40), "green": (40, 160, 60), "blue": (40, 60, 200), "grey": (128, 128, 128)}


class ColourVLM:
    """Names the colour nearest the image's upper half: descriptions that differ from person to person."""

    def judge(self, prompts: Sequence[str], images: Sequence[Image.Image]) -> list[bool | None]:
        raise AssertionError("not asked")

    def reply(self, prompts: Sequence[str], images: Sequence[Image.Image | None], max_new_tokens: int) -> list[str]:
        out = []
        for prompt, image in zip(prompts, images, strict=True):
            assert image is not None
            top = image.convert("RGB").crop((0, 0, image.width, image.height // 2))
            mean = ImageStat.Stat(top).mean
            colour = min(COLOURS, key=lambda c: sum((a - b) ** 2 for a, b in zip(COLOURS[c], mean, strict=True)))
            initial = f"I saw a man in a {colour} top."
            fine = f"{initial} He wore blue jeans. He carried a black backpack."
            out.append(fine if "definitive statements" in prompt else initial)
        return out


def test_a_folder_of_crops_becomes_dialogue_data_and_lookforward_targets(
    tiny_world: Path, tower_file: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    crops = tmp_path / "crops"
    for split in ("train", "test"):
        for sample in undecoded_samples(tiny_world, split):
            person = crops / split / f"person-{sample.record.pid:03d}"
            person.mkdir(parents=True, exist_ok=True)
            (person / f"{sample.key.replace('/', '-')}.png").write_bytes(sample.image)  # type: ignore[arg-type]
    assert main(["data", "convert", "--format", "folder", "--root", str(crops), "--out", str(tmp_path / "shards"),
                 "--quiet"]) == 0  # fmt: skip

    monkeypatch.setattr(build_interactive_cli, "load_chat_llm", lambda source, **_: ScriptedLLM())
    monkeypatch.setattr(build_interactive_cli, "vision_model", lambda source, server=None: ColourVLM())
    built = tmp_path / "built"
    assert main(["data", "build-interactive", "--data", str(tmp_path / "shards"), "--out", str(built),
                 "--vlm", "openai:http://127.0.0.1:9/v1#scripted", "--quiet"]) == 0  # fmt: skip
    summary = json.loads((built / "build.json").read_text())
    assert summary["complete"] and summary["records_written"] == {"test": 12, "train": 24}
    train = load_records(built, "train")
    assert all(r.initial_description and r.fine_description and r.qas for r in train)

    ckpt = tower_file.parent / "retriever.ckpt"
    targets = tmp_path / "targets"
    args = ["lookforward", "--retriever-ckpt", str(ckpt), "--data", str(built), "--out", str(targets),
            "--max-records", "6", "--max-rounds", "2"]  # fmt: skip
    assert main(args) == 0
    looked = json.loads((targets / "train.lookforward.json").read_text())
    assert looked["records"] == 6

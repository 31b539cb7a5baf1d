"""The ChatReID model as ICL's MLLM: Yes/No judgements and free answers about one image, and `ireid icl rerank`."""

from __future__ import annotations

import json
from pathlib import Path

import torch

from ireid.app.cli import main
from ireid.chatreid.inference import ChatReID
from ireid.core.images import ImageStore
from ireid.core.loader import load_records


def test_judge_is_p_yes_above_one_half_and_replies_batch_like_one_by_one(stages, tiny_world: Path) -> None:
    records = load_records(tiny_world, "test")[:4]
    images = ImageStore.from_shards(tiny_world, "test").load([r.key for r in records])
    prompts = [f"Can this text accurately describe the image? Text: {r.captions[0]}" for r in records]
    one = ChatReID.from_checkpoint(stages.ckpts[3], batch_size=1)
    four = ChatReID.from_checkpoint(stages.ckpts[3], batch_size=4)
    verdicts = four.judge(prompts, images)
    assert len(verdicts) == 4 and all(isinstance(v, bool) for v in verdicts)
    assert verdicts == one.judge(prompts, images)

    questions = ["What is the person wearing?", "Is the person wearing a hat?", "Merge these details.", "Where?"]
    shown = [images[0], images[1], None, images[3]]  # a text-only prompt (the merge) batches with image prompts
    replies = four.reply(questions, shown, max_new_tokens=6)
    assert len(replies) == 4 and all(isinstance(r, str) for r in replies)
    assert replies == one.reply(questions, shown, max_new_tokens=6)


def test_icl_rerank_with_a_chatreid_model_writes_the_report(stages, tiny_world: Path, tower_file: Path, tmp_path):
    out = tmp_path / "icl"
    ckpt = tower_file.parent / "retriever.ckpt"
    status = main([
        "icl", "rerank", "--data", str(tiny_world), "--retriever-ckpt", str(ckpt), "--mllm",
        f"chatreid:{stages.ckpts[3]}", "--aggregation", "mllm", "--xi", "1.0", "--out", str(out),
    ])  # fmt: skip
    assert status == 0
    report = json.loads((out / "thi.json").read_text())
    counts = report["counts"]
    queries = len(load_records(tiny_world, "test"))
    assert counts["queries"] == queries and report["uses_ground_truth"] is False
    # ξ = 1: every top-1 is "dissimilar", so each query is asked about its candidates until the first Yes.
    assert queries <= counts["locate_calls"] <= 5 * queries
    assert counts["aggregation_calls"] == counts["anchored"]
    fallbacks = counts["empty_merged_queries"] + counts["overlong_merged_queries"]
    assert counts["interacted"] + fallbacks == counts["anchored"]
    assert set(report["retriever"]) == set(report["thi"]) == {"R1", "R5", "R10", "mAP", "mINP"}
    assert (out / "thi_sweep.png").stat().st_size > 0 and "THI★ (chatreid)" in (out / "thi.md").read_text()
    assert torch.isfinite(torch.tensor(report["thi"]["mAP"]))

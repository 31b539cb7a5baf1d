"""ICL's RDA generation: reply parsing, the decomposition and rewriting steps with their fallbacks, the reply cache
that makes a run resumable, and `ireid icl rda` on the tiny world."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

from ireid.app.cli import main
from ireid.core.loader import load_records
from ireid.core.reply_cache import ReplyCache
from ireid.core.reply_text import reply_lines
from ireid.icl.rda import RDAGenerator, RDASettings, consistency
from tests.helpers import make_record


def test_reply_lines_strip_markers_split_paragraphs_and_drop_what_is_unusable() -> None:
    assert reply_lines("1. He wore a hat\n2) His shoes were red.\n- Was it red?", 30) == [
        "He wore a hat.", "His shoes were red.",
    ]  # fmt: skip
    assert reply_lines("He wore a hat. He wore a hat. His top was red. He carri", 30) == [
        "He wore a hat.", "His top was red.",
    ]  # fmt: skip
    assert reply_lines("A sentence of far too many words for the limit.", 4) == []
    assert reply_lines("", 30) == []


class Scripted:
    """A ChatLLM: decomposition requests get `split`, rewriting requests two rewrites (or an echo); counts calls."""

    def __init__(self, split: str = "He wore a hat.\nHis top was red."):
        self.split = split
        self.calls = 0

    def chat(self, conversations: Sequence[Sequence[dict[str, str]]], max_new_tokens: int) -> list[str]:
        self.calls += len(conversations)
        replies = []
        for conversation in conversations:
            prompt = conversation[-1]["content"]
            if prompt.startswith("Split"):
                replies.append(self.split)
            else:
                sentence = prompt.rsplit("Sentence: ", 1)[1]
                replies.append(sentence if "hat" in sentence else f"1. {sentence}\n2. In other words, {sentence}")
        return replies


def test_groups_hold_each_sub_sentence_with_its_rewrites_and_count_fallbacks(tmp_path: Path) -> None:
    llm = Scripted()
    records = [make_record(0, captions=["He wore a hat. His top was red."])]
    generator = RDAGenerator(llm, ReplyCache(tmp_path / "cache.jsonl", "scripted"), RDASettings(rewrites=2))
    (groups,) = generator.groups(records)
    assert groups == [
        ["He wore a hat."],  # the rewrite only echoed the sentence: no rewrite kept
        ["His top was red.", "In other words, His top was red."],  # the echo among the rewrites is dropped
    ]
    assert generator.counts["sentences_without_rewrites"] == 1 and generator.counts["rewrites"] == 1

    fallback = RDAGenerator(Scripted(split="???"), ReplyCache(tmp_path / "other.jsonl", "x"), RDASettings(rewrites=0))
    assert fallback.groups(records) == [[["He wore a hat."], ["His top was red."]]]
    assert fallback.counts["decomposition_fallbacks"] == 1


def test_the_reply_cache_resumes_without_asking_again_and_skips_a_cut_line(tmp_path: Path) -> None:
    records = [make_record(i, captions=[f"He wore a hat {i}. His top was red."]) for i in range(3)]
    first = Scripted()
    RDAGenerator(first, ReplyCache(tmp_path / "c.jsonl", "m"), RDASettings(rewrites=2)).groups(records)
    with (tmp_path / "c.jsonl").open("a") as file:
        file.write('{"key": "cut sho')  # a kill in the middle of a line
    again = Scripted()
    cache = ReplyCache(tmp_path / "c.jsonl", "m")
    groups = RDAGenerator(again, cache, RDASettings(rewrites=2)).groups(records)
    assert again.calls == 0 and cache.asked == 0 and len(groups) == 3
    assert ReplyCache(tmp_path / "c.jsonl", "another model").key("x") != cache.key("x")


def test_consistency_counts_sentences_that_state_only_true_values() -> None:
    truth = {"gender": "man", "upper_colour": "red", "hat": "none"}
    counts = consistency([["His top was red.", "His top was blue."], ["He wore no hat.", "Nice weather."]], truth)
    assert counts["sub_sentences"] == 2 and counts["sub_sentences_true"] == 2
    assert counts["rewrites"] == 2 and counts["rewrites_stating"] == 1 and counts["rewrites_true"] == 0


def test_rda_command_writes_a_data_set_copy_and_resumes(tiny_world: Path, tmp_path: Path) -> None:
    out = tmp_path / "rda"
    args = ["icl", "rda", "--data", str(tiny_world), "--out", str(out), "--llm", "tiny", "--mllm", "annotated",
            "--max-records", "4", "--batch-size", "2", "--rewrites", "1"]  # fmt: skip
    assert main(args) == 0
    before = load_records(tiny_world, "train")
    after = load_records(out, "train")
    assert [r.key for r in after] == [r.key for r in before]
    assert all(r.rda_groups and all(g for g in r.rda_groups) for r in after[:4])
    assert [r.rda_groups for r in after[4:]] == [r.rda_groups for r in before[4:]]
    assert [r.key for r in load_records(out, "test")] == [r.key for r in load_records(tiny_world, "test")]
    summary = json.loads((out / "rda.summary.json").read_text())
    assert summary["records_with_new_groups"] == 4 and summary["model_calls"] > 0
    assert summary["counts"]["described_images"] == 4 and "consistency" in summary
    assert main(args) == 0  # everything written: nothing is asked again
    assert json.loads((out / "rda.summary.json").read_text())["model_calls"] == 0

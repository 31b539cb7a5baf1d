"""Interactive-PEDES construction (LLaVA-ReID §3.2) with scripted models: the steps, the checks, retries, skips,
resumption through the caches, the question mix, and the `ireid data build-interactive` command."""

from __future__ import annotations

import json
import random
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

import pytest
from PIL import Image

from ireid.app import build_interactive_cli
from ireid.app.cli import main
from ireid.core.interactive_pedes.construction import (
    RETRY_NOTE,
    ConstructionSettings,
    InteractivePedesBuilder,
    consistency,
    parse_qa,
    subject_of,
)
from ireid.core.loader import load_records
from ireid.core.records import QA, Record
from ireid.core.reply_cache import ReplyCache

FINE = "I saw a man in a red t-shirt. He wore blue jeans. He carried a black backpack."


class ScriptedVLM:
    """Answers Table 5 with a short description and Table 6 with one that begins with it."""

    def __init__(self) -> None:
        self.prompts: list[str] = []

    def judge(self, prompts: Sequence[str], images: Sequence[Image.Image]) -> list[bool | None]:
        raise AssertionError("construction never asks for a judgement")

    def reply(self, prompts: Sequence[str], images: Sequence[Image.Image | None], max_new_tokens: int) -> list[str]:
        assert all(isinstance(im, Image.Image) for im in images)
        self.prompts += prompts
        return [
            FINE if "Begin with" in p and "definitive statements" in p else "I saw a man in a red t-shirt."
            for p in prompts
        ]


def scripted_reply(prompt: str) -> str:
    """What a model that follows every instruction would write for the synthetic man above."""
    if prompt.startswith("Here are two descriptions"):
        return "He wore blue jeans. He carried a black backpack."
    if prompt.startswith("Given a person's description"):
        return "1. He wore blue jeans.\n2. He carried a black backpack."
    if "Answer: Yes," in prompt:
        return "Question: Is he wearing blue jeans?\nAnswer: Yes, he wore blue jeans."
    if "Answer: No," in prompt:
        return "Question: Is he wearing black jeans?\nAnswer: No, he wore blue jeans."
    if "multiple-choice" in prompt:
        return (
            "Question: What colour were his jeans?\nA) blue\nB) black\nC) grey\nD) navy\nAnswer: His jeans were blue."
        )
    return "Question: What colour were his jeans?\nAnswer: He wore blue jeans."


class ScriptedLLM:
    def __init__(self, reply=scripted_reply) -> None:
        self.reply, self.prompts = reply, []

    def chat(self, conversations, max_new_tokens: int) -> list[str]:
        prompts = [c[-1]["content"] for c in conversations]
        self.prompts += prompts
        return [self.reply(p) for p in prompts]


def record(key: str = "w-0", **fields) -> Record:
    return Record(key=key, pid=0, split="train", source="synthetic", **fields)


def builder(tmp_path: Path, llm, vlm=None, **settings) -> InteractivePedesBuilder:
    return InteractivePedesBuilder(
        llm,
        ReplyCache(tmp_path / "llm.jsonl", "scripted"),
        vlm,
        ReplyCache(tmp_path / "vlm.jsonl", "scripted-vlm") if vlm else None,
        ConstructionSettings(**settings),
    )


def test_parse_qa_keeps_only_replies_in_table_8_form() -> None:
    yes = parse_qa("Sure!\nQuestion: Is she wearing a hat?\nAnswer: Yes, a red hat.", "yes", 40)
    assert yes is not None and (yes.question, yes.answer, yes.qtype) == (
        "Is she wearing a hat?",
        "Yes, a red hat.",
        "yes_no",
    )
    choice = parse_qa(
        "Question: Which bag?\nA) red\nB) blue\nC) green\nD) black\nAnswer: She carried a red bag.", "choice", 40
    )
    assert choice is not None and choice.options == ("red", "blue", "green", "black")
    assert parse_qa("Question: Is she wearing a hat?\nAnswer: Yes, a red hat.", "no", 40) is None  # wrong polarity
    assert parse_qa("Question: Which bag?\nA) red\nB) blue\nAnswer: A red bag.", "choice", 40) is None  # two options
    bullets = "Question: Which bag?\n\nOptions:\n- A) red\n- B) blue\n- C) green\n- D) {}\nAnswer: A red bag."
    listed = parse_qa(bullets.format("black"), "choice", 40)
    assert listed is not None and listed.question == "Which bag?" and listed.options[-1] == "black"
    assert parse_qa(bullets.format("red"), "choice", 40) is None  # the same option twice
    assert parse_qa("Question: Tell me about her bag.\nAnswer: Red.", "descriptive", 40) is None  # not a question
    assert parse_qa("The question should be: what bag?", "descriptive", 40) is None  # no Question:/Answer:
    assert parse_qa("Question: What bag?\nAnswer: " + "red " * 50, "descriptive", 40) is None  # overlong


def test_subject_from_the_description() -> None:
    assert subject_of("A young woman in a coat.") == "woman"
    assert subject_of("She carried a bag.") == "woman"
    assert subject_of("I saw a man in a red t-shirt.") == "man"


def test_three_steps_build_a_dialogue_record_from_the_image(tmp_path: Path) -> None:
    vlm, llm = ScriptedVLM(), ScriptedLLM()
    build = builder(tmp_path, llm, vlm)
    [out] = build.build([record(attributes={"lower_colour": "blue"})], [Image.new("RGB", (8, 16))])
    assert out is not None
    assert out.initial_description == "I saw a man in a red t-shirt." and out.fine_description == FINE
    assert out.sub_captions == ["He wore blue jeans.", "He carried a black backpack."]
    assert len(out.qas) == 2 and all(qa.question.endswith("?") for qa in out.qas)
    # Table 5's instruction drawn for this record, Table 6 with the initial description as its opening
    assert vlm.prompts[0] in build.coarse and 'Begin with "I saw a man in a red t-shirt."' in vlm.prompts[1]
    # Table 8 names the subject and carries the sub-caption
    qa_prompts = [p for p in llm.prompts if p.startswith("You are given a [sentence]")]
    assert len(qa_prompts) == 2 and all("image of a man" in p for p in qa_prompts)
    assert {p.rsplit("[sentence]: ", 1)[1] for p in qa_prompts} == set(out.sub_captions)
    assert build.counts["records_built"] == 1 and not build.skipped


def test_a_malformed_reply_is_asked_again_then_skipped_and_counted(tmp_path: Path) -> None:
    def stubborn(prompt: str) -> str:  # a usable Q&A only once reminded of the format
        if prompt.startswith("You are given") and RETRY_NOTE not in prompt:
            return "The question should be about jeans."
        return scripted_reply(prompt)

    fixed = builder(tmp_path / "a", ScriptedLLM(stubborn))
    [out] = fixed.build([record(initial_description="A man.", fine_description=FINE)], [None])
    assert out is not None and len(out.qas) == 2 and fixed.counts["qa_retries"] == 2

    def hopeless(prompt: str) -> str:
        return "no idea" if prompt.startswith("You are given") else scripted_reply(prompt)

    failed = builder(tmp_path / "b", ScriptedLLM(hopeless), attempts=3)
    good, bad = failed.build(
        [record("w-1", initial_description="A man.", fine_description=FINE), record("w-2")], [None, None]
    )
    assert good is None and bad is None  # no Q&A pair usable; no annotated description
    assert failed.counts["qa_retries"] == 4 and failed.counts["qa_skipped"] == 2
    steps = [(s["key"], s["step"]) for s in failed.skipped]
    assert ("w-2", "captioning") in steps and ("w-1", "qa") in steps and ("w-1", "dialogue") in steps


def test_a_rerun_asks_nothing_again_and_draws_the_same(tmp_path: Path) -> None:
    records = [record(f"w-{i}", initial_description="A man.", fine_description=FINE) for i in range(4)]
    first_llm = ScriptedLLM()
    first = builder(tmp_path, first_llm).build(records, [None] * 4)
    again_llm = ScriptedLLM()
    again = builder(tmp_path, again_llm).build(records, [None] * 4)
    assert first_llm.prompts and not again_llm.prompts
    assert [r.qas for r in first] == [r.qas for r in again]  # type: ignore[union-attr]


def test_question_types_follow_the_papers_mix() -> None:
    build = InteractivePedesBuilder(ScriptedLLM(), ReplyCache("/nonexistent/never-written.jsonl", "x"))
    rng = random.Random(0)
    kinds = Counter(build.question_kind(rng) for _ in range(20000))
    share = {k: v / 20000 for k, v in kinds.items()}
    assert share["descriptive"] + share["wh"] == pytest.approx(0.5, abs=0.015)
    assert share["yes"] + share["no"] == pytest.approx(0.4, abs=0.015)
    assert share["yes"] == pytest.approx(share["no"], abs=0.015)  # right and wrong assumptions alike
    assert share["choice"] == pytest.approx(0.1, abs=0.01)
    with pytest.raises(ValueError, match="sum to 1"):
        ConstructionSettings(descriptive_share=0.6)


def test_consistency_against_the_synthetic_truth() -> None:
    built = record(
        attributes={"lower_colour": "blue", "lower_type": "trousers", "gender": "man"},
        sub_captions=["He wore blue jeans.", "He wore black jeans.", "The weather was warm."],
        qas=[
            QA("Is he wearing black jeans?", "No, he wore blue jeans.", "yes_no"),  # wrong assumption, denied
            QA("Is he wearing blue jeans?", "No, he wore black jeans.", "yes_no"),  # right assumption, denied
        ],
    )
    counts = consistency(built)
    assert (counts["sub_captions"], counts["sub_captions_stating"], counts["sub_captions_true"]) == (3, 2, 1)
    assert (counts["answers_stating"], counts["answers_true"]) == (2, 1)
    assert (counts["yes_no_assuming"], counts["yes_no_as_answered"]) == (2, 1)


def test_build_interactive_command_writes_a_complete_data_set_and_resumes(
    tiny_world: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    llm = ScriptedLLM()
    monkeypatch.setattr(build_interactive_cli, "load_chat_llm", lambda source, **_: llm)
    out = tmp_path / "built"
    args = ["data", "build-interactive", "--data", str(tiny_world), "--out", str(out), "--vlm", "annotated",
            "--splits", "test", "--max-records", "5", "--batch-size", "2", "--quiet"]  # fmt: skip
    assert main(args) == 0
    summary = json.loads((out / "build.json").read_text())
    assert summary["complete"] and summary["records_written"] == {"test": 5}
    built = load_records(out, "test")
    assert len(built) == 5 and all(r.qas and r.sub_captions for r in built)
    assert summary["qas_per_record"] == 2.0 and "consistency_percent" in summary
    calls = len(llm.prompts)
    assert main(args) == 0 and len(llm.prompts) == calls  # everything written: nothing asked again


def test_build_interactive_names_a_missing_split(tiny_world: Path, tmp_path: Path, capsys) -> None:
    code = main(["data", "build-interactive", "--data", str(tiny_world), "--out", str(tmp_path / "o"),
                 "--vlm", "annotated", "--llm", "tiny", "--splits", "nope"])  # fmt: skip
    assert code != 0 and "no split ['nope']" in capsys.readouterr().err


def test_a_split_where_every_record_is_skipped_still_ends_complete_with_the_skips(
    tiny_world: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    class SaysNo:  # what a model tuned only for Yes/No answers replies to a captioning instruction
        def judge(self, prompts, images):
            raise AssertionError("not asked")

        def reply(self, prompts, images, max_new_tokens):
            return ["No"] * len(prompts)

    monkeypatch.setattr(build_interactive_cli, "load_chat_llm", lambda source, **_: ScriptedLLM())
    monkeypatch.setattr(build_interactive_cli, "vision_model", lambda source, server=None: SaysNo())
    out = tmp_path / "built"
    args = ["data", "build-interactive", "--data", str(tiny_world), "--out", str(out), "--vlm", "chatreid:x",
            "--splits", "test", "--max-records", "3", "--quiet"]  # fmt: skip
    assert main(args) == 0
    summary = json.loads((out / "build.json").read_text())
    assert summary["complete"] and summary["records_written"] == {"test": 0}
    assert [s["step"] for s in summary["skipped"]] == ["captioning"] * 3
    assert summary["counts"]["initial_retries"] == 3  # "No" is no description: asked again, then skipped

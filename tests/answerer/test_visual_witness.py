"""The visual witness: its prompt, the answerer's rules around the model, the factory, and its SFT data."""

from __future__ import annotations

from collections.abc import Sequence

import pytest
from PIL import Image

from ireid.answerer import VisualWitness, build_witness, is_visual
from ireid.answerer.visual_sft import TASK, shown_answer, visual_witness_conversations
from ireid.answerer.visual_witness import PROMPT_FILE, visual_prompt
from ireid.chatreid.conversations import check_conversation
from ireid.core.records import QA
from tests.helpers import make_record


class ScriptedVLM:
    """Replies with a fixed text per call and remembers what it was shown."""

    def __init__(self, reply: str = "Answer: She wore a red coat.\nAnything else?") -> None:
        self.reply_text = reply
        self.calls: list[tuple[list[str], list[Image.Image | None]]] = []

    def judge(self, prompts: Sequence[str], images: Sequence[Image.Image]) -> list[bool | None]:
        raise AssertionError("a witness never asks for a Yes/No judgement")

    def reply(self, prompts: Sequence[str], images: Sequence[Image.Image | None], max_new_tokens: int) -> list[str]:
        self.calls.append((list(prompts), list(images)))
        return [self.reply_text] * len(prompts)


def test_the_prompt_names_its_source_and_takes_the_question() -> None:
    from importlib import resources

    first = resources.files("ireid.answerer").joinpath("prompts", PROMPT_FILE).read_text().splitlines()[0]
    assert first.startswith("# Adapted from LLaVA-ReID") and "Table 10" in first
    prompt = visual_prompt("  What colour was her coat?  ")
    assert prompt.endswith("Question: What colour was her coat?\n\nAnswer:")
    assert "I don't know." in prompt and "# " not in prompt
    with pytest.raises(ValueError, match="<question>"):
        VisualWitness(ScriptedVLM(), prompt="no slot here")


def test_the_image_goes_with_its_question_and_the_answerers_rules_hold() -> None:
    vlm = ScriptedVLM()
    witness = VisualWitness(vlm)
    red, blue = Image.new("RGB", (8, 16), "red"), Image.new("RGB", (8, 16), "blue")
    answers = witness.answer(["Hat?", "What colour was the coat she wore?"], [red, blue])
    assert answers == ["I don't know.", "She wore a red coat."]  # short question: no model call; first line only
    [(prompts, images)] = vlm.calls
    assert images == [blue] and prompts[0].endswith("Question: What colour was the coat she wore?\n\nAnswer:")
    assert VisualWitness(ScriptedVLM("")).answer(["What colour was her coat?"], [red]) == ["I don't know."]
    with pytest.raises(ValueError, match="1 questions but 2 images"):
        witness.answer(["What colour was her coat?"], [red, blue])


def test_the_factory_builds_it_from_a_vision_model_by_name() -> None:
    built: list[str] = []

    def vision_model(source: str) -> ScriptedVLM:
        built.append(source)
        return ScriptedVLM()

    witness = build_witness("visual:chatreid:runs/x.ckpt", vision_model=vision_model, max_new_tokens=12)
    assert isinstance(witness, VisualWitness) and witness.max_new_tokens == 12 and witness.memory == "image"
    assert built == ["chatreid:runs/x.ckpt"] and is_visual("visual:openai:http://h/v1#m") and not is_visual("rule")
    with pytest.raises(ValueError, match="no vision-model factory"):
        build_witness("visual:chatreid:runs/x.ckpt")


def test_sft_samples_ask_the_persons_questions_about_each_image_and_admit_what_it_hides() -> None:
    coat = QA(question="What colour was her coat?", answer="Her coat was red.", qtype="descriptive",
              attribute="upper_colour")  # fmt: skip
    hat = QA(question="Was she wearing a hat at all?", answer="Yes, she wore a cap.", qtype="yes_no", attribute="hat")
    front = make_record(0, qas=[coat, hat], attributes={"upper_colour": "red", "hat": "cap"})
    back = make_record(1, qas=[coat], attributes={"upper_colour": "red"})  # the same person: the cap is not shown
    other = make_record(2, qas=[QA(question="Hi?", answer="Hello.", qtype="descriptive", attribute="hat")])
    assert shown_answer(back, hat) == "I don't know." and shown_answer(front, hat) == hat.answer
    samples = list(visual_witness_conversations([front, back, other], 60, seed=3))
    assert samples == list(visual_witness_conversations([front, back, other], 60, seed=3))
    seen = set()
    for key, sample in samples:
        check_conversation(sample, key, "test")
        assert key.startswith(f"{TASK}-") and sample["stage"] == 3 and sample["task"] == TASK
        [image] = sample["images"]
        question = sample["messages"][0]["content"][1]["text"].rsplit("Question: ", 1)[1].split("\n")[0]
        answer = sample["messages"][1]["content"][0]["text"]
        seen.add((image, question, answer))
    assert seen == {
        (front.key, coat.question, coat.answer), (front.key, hat.question, hat.answer),
        (back.key, coat.question, coat.answer), (back.key, hat.question, "I don't know."),  # never `other`: too short
    }  # fmt: skip
    with pytest.raises(ValueError, match="no record holds a Q&A pair"):
        next(visual_witness_conversations([other], 1))

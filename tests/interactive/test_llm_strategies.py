"""`simirv-llm` and `plugir-llm` with scripted models: what they ask, what they ask the models, and their fallbacks."""

from __future__ import annotations

import dataclasses
import io
import json
import re
from collections.abc import Callable, Sequence
from pathlib import Path

import pytest
import torch
from PIL import Image

from ireid.answerer.rule_based import RuleBasedWitness
from ireid.core.gallery import Gallery
from ireid.core.images import ImageStore
from ireid.core.loader import load_records
from ireid.core.protocols import Dialogue
from ireid.core.rounds import RoundContext, retrieval_text_reader
from ireid.interactive.harness import evaluate_strategy
from ireid.interactive.strategies.plugir_llm import (
    OPEN_QUESTION,
    AnnotatedCaptioner,
    PlugIRLLM,
    VisionCaptioner,
    answered_by_dialogue,
)
from ireid.interactive.strategies.simirv_llm import OBJECT_QUESTION, SimIRVLLM, parse_objects
from tests.helpers import make_record

N = 12
_OBJECT = re.compile(r"colour or pattern of the person's (.+?) that")
_FILTERED = re.compile(r"^Question: (.+)$", re.MULTILINE)


class ScriptedLLM:
    """Replies with `respond(prompt)`; keeps every prompt and counts the calls."""

    def __init__(self, respond: Callable[[str], str]) -> None:
        self.respond, self.prompts, self.calls = respond, [], 0

    def chat(self, conversations: Sequence[Sequence[dict[str, str]]], max_new_tokens: int) -> list[str]:
        self.calls += 1
        prompts = [c[-1]["content"] for c in conversations]
        self.prompts += prompts
        return [self.respond(p) for p in prompts]

    def asked(self, marker: str) -> list[str]:
        return [p for p in self.prompts if marker in p]


class GreyCaptions:
    """A vision model that captions an image by its grey level (the gallery index × 10) and keeps what it saw."""

    def __init__(self, empty: int | None = None) -> None:
        self.seen: list[int] = []
        self.empty = empty

    def judge(self, prompts: Sequence[str], images: Sequence[Image.Image]) -> list[bool | None]:
        raise AssertionError("captions need free replies only")

    def reply(self, prompts: Sequence[str], images: Sequence[Image.Image | None], max_new_tokens: int) -> list[str]:
        levels = [image.getpixel((0, 0))[0] // 10 for image in images]  # type: ignore[union-attr]
        self.seen += levels
        return ["" if level == self.empty else f"  person\n{level} in grey " for level in levels]


def grey(level: int) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (8, 16), (level, level, level)).save(buffer, format="PNG")
    return buffer.getvalue()


def context(dialogues: list[Dialogue], gallery: Gallery | None = None, t: int = 1) -> RoundContext:
    if gallery is None:
        gallery = Gallery([], torch.zeros(0, dtype=torch.long), torch.zeros(0, 2), [])
    queries = [make_record(100 + i, split="test") for i in range(len(dialogues))]
    scores = torch.linspace(1, 0, len(gallery)).expand(len(dialogues), -1)
    return RoundContext(t, queries, dialogues, scores, gallery, retriever=None, text_of=retrieval_text_reader())  # type: ignore[arg-type]


# ------------------------------------------------------------------------------------------------------ simirv-llm


def simirv_reply(prompt: str) -> str:
    if prompt.startswith("A witness described"):
        return "1. A jacket\n- shoes, the HAT.\nnone"
    written = {"jacket": "Question: What kind of jacket was it? And its colour?", "shoes": "You: What shoes were they?"}
    return written.get(_OBJECT.search(prompt).group(1), "I would ask about that.")  # type: ignore[union-attr]


def test_object_extraction_reads_lists_commas_and_drops_chatter() -> None:
    assert parse_objects("1. A jacket\n- shoes, the HAT.\nnone", 4) == ["jacket", "shoes", "hat"]
    assert parse_objects("Jacket\njacket\nShoes", 1) == ["jacket"]
    assert parse_objects("The description does not name anything the person wears.", 4) == []
    assert parse_objects("None.", 4) == [] == parse_objects("A young man.", 4)


def test_simirv_llm_asks_each_object_once_in_order_then_the_extra_objects() -> None:
    llm = ScriptedLLM(simirv_reply)
    strategy = SimIRVLLM(llm, extra_objects=["hair", "shoes"], max_objects=2)
    assert strategy.uses_ground_truth is False
    dialogues = [Dialogue("I saw a man in a jacket."), Dialogue("I saw a man in a jacket.")]
    asked = []
    for t in range(1, 5):
        questions = strategy.ask(context(dialogues, t=t))
        assert questions[0] == questions[1]  # same description, same dialogue so far
        asked.append(questions[0])
        for dialogue, question in zip(dialogues, questions, strict=True):
            if question:
                dialogue.ask(question, "I don't know.")
    # jacket, shoes (the extraction's first two), then the extra hair; the extra shoes was asked already.
    hair = OBJECT_QUESTION.format(object="hair")
    assert asked == ["What kind of jacket was it?", "What shoes were they?", hair, None]
    assert len(llm.asked("A witness described")) == 1  # one extraction for the description, kept across rounds
    assert "Witness: I saw a man in a jacket." in llm.asked("person's shoes")[0]
    assert strategy.counts == {"extractions": 1, "question_fallbacks": 2}  # hair, for each of the two dialogues


def test_simirv_llm_never_repeats_a_question_and_falls_back_to_the_template() -> None:
    llm = ScriptedLLM(lambda p: "Jacket\nShoes" if p.startswith("A witness") else "What kind of jacket was it?")
    strategy = SimIRVLLM(llm)
    dialogue = Dialogue("I saw a man in a jacket.")
    first = strategy.ask(context([dialogue]))[0]
    dialogue.ask(first, "A red jacket.")  # type: ignore[arg-type]
    second = strategy.ask(context([dialogue], t=2))[0]
    assert (first, second) == ("What kind of jacket was it?", OBJECT_QUESTION.format(object="shoes"))
    assert strategy.counts["question_fallbacks"] == 1


def test_simirv_llm_extraction_fallback_and_template_mode() -> None:
    llm = ScriptedLLM(lambda p: "none")
    strategy = SimIRVLLM(llm, extra_objects=["bag"], write_questions=False)
    assert strategy.ask(context([Dialogue("I saw someone.")])) == [OBJECT_QUESTION.format(object="bag")]
    assert llm.calls == 1 and strategy.counts == {"extractions": 1, "extraction_fallbacks": 1}
    assert SimIRVLLM(ScriptedLLM(lambda p: "none")).ask(context([Dialogue("I saw someone.")])) == [None]


# ------------------------------------------------------------------------------------------------------ plugir-llm


@pytest.fixture
def gallery_and_images() -> tuple[Gallery, ImageStore]:
    records = [make_record(i, split="test", fine_description=f"Annotated person {i}.") for i in range(N)]
    embeddings = torch.nn.functional.normalize(torch.randn(N, 3, generator=torch.Generator().manual_seed(0)), dim=1)
    gallery = Gallery([r.key for r in records], torch.tensor([r.pid for r in records]), embeddings, records)
    return gallery, ImageStore({r.key: grey(10 * i) for i, r in enumerate(records)})


def plugir_reply(answerable: Sequence[str] = ("Was he wearing a hat?",), filter_reply: str = "Uncertain."):
    def respond(prompt: str) -> str:
        if "tell these people apart" in prompt:
            return "1. Was he wearing a hat?\n2. What colour were his shoes? 3) Did he carry a bag?\nThanks!"
        question = _FILTERED.search(prompt).group(1)  # type: ignore[union-attr]
        return "No, he wore no hat." if question in answerable else filter_reply

    return respond


def test_filter_drops_a_question_the_dialogue_answers(gallery_and_images) -> None:
    gallery, images = gallery_and_images
    llm, vision = ScriptedLLM(plugir_reply()), GreyCaptions()
    strategy = PlugIRLLM(llm, VisionCaptioner(vision, images), top_n=N, clusters=3, method="top-k", questions=2)
    assert strategy.uses_ground_truth is False
    dialogue = Dialogue("I saw a man with no hat.")
    assert strategy.ask(context([dialogue], gallery)) == ["What colour were his shoes?"]
    prompt = llm.asked("tell these people apart")[0]
    assert "Witness: I saw a man with no hat." in prompt and "1. person 0 in grey\n2. person 1 in grey" in prompt
    assert [re.search(r"Question: (.+)", p).group(1) for p in llm.asked("Uncertain")] == [  # type: ignore[union-attr]
        "Was he wearing a hat?",
        "What colour were his shoes?",
    ]
    assert strategy.counts == {"captioned_images": 3, "redundant_questions": 1}


def test_each_representative_is_captioned_once_per_run(gallery_and_images) -> None:
    gallery, images = gallery_and_images
    vision = GreyCaptions(empty=1)
    strategy = PlugIRLLM(ScriptedLLM(plugir_reply(())), VisionCaptioner(vision, images), 6, 4, "top-k")
    dialogues = [Dialogue("I saw a man."), Dialogue("I saw a woman.")]
    strategy.ask(context(dialogues, gallery))
    strategy.ask(context(dialogues, gallery, t=2))
    assert sorted(vision.seen) == [0, 1, 2, 3]  # the same top four for both dialogues and both rounds
    assert strategy.counts["captioned_images"] == 4 and strategy.counts["empty_captions"] == 1
    assert strategy.captions(gallery, [1, 2]) == ["", "person 2 in grey"]


def test_filter_and_generation_fallbacks_are_counted(gallery_and_images) -> None:
    gallery, _ = gallery_and_images
    every = ("Was he wearing a hat?", "What colour were his shoes?", "Did he carry a bag?")
    strategy = PlugIRLLM(ScriptedLLM(plugir_reply(every)), AnnotatedCaptioner(), 6, 2, "top-k", questions=3)
    assert strategy.ask(context([Dialogue("I saw a man.")], gallery)) == ["Was he wearing a hat?"]
    assert strategy.counts["filter_fallbacks"] == 1 and strategy.counts["redundant_questions"] == 3

    unreadable = PlugIRLLM(ScriptedLLM(plugir_reply((), filter_reply="")), AnnotatedCaptioner(), 6, 2, "top-k")
    dialogue = Dialogue("I saw a man.")
    dialogue.ask("Was he wearing a hat?", "No.")
    assert unreadable.ask(context([dialogue], gallery)) == ["What colour were his shoes?"]  # asked ones are out
    assert unreadable.counts["unreadable_filter_replies"] == 1

    llm = ScriptedLLM(lambda p: "I cannot help with that.")
    silent = PlugIRLLM(llm, AnnotatedCaptioner(), 6, 2, "top-k")
    dialogue = Dialogue("I saw a man.")
    assert silent.ask(context([dialogue], gallery)) == [OPEN_QUESTION]
    dialogue.ask(OPEN_QUESTION, "Nothing else.")
    assert silent.ask(context([dialogue], gallery, t=2)) == [None]
    assert silent.counts["question_fallbacks"] == 2 and not llm.asked("Uncertain")  # nothing to filter
    assert answered_by_dialogue("  ") is None and answered_by_dialogue("The conversation doesn't say.") is False


def test_annotated_captions_are_the_fine_descriptions_and_use_ground_truth(gallery_and_images) -> None:
    gallery, _ = gallery_and_images
    llm = ScriptedLLM(plugir_reply(()))
    strategy = PlugIRLLM(llm, AnnotatedCaptioner(), 6, 2, "top-k")
    assert strategy.uses_ground_truth is True
    strategy.ask(context([Dialogue("I saw a man.")], gallery))
    assert "1. Annotated person 0.\n2. Annotated person 1." in llm.asked("tell these people apart")[0]
    with pytest.raises(ValueError, match="unknown candidate method"):
        PlugIRLLM(llm, AnnotatedCaptioner(), method="best")  # type: ignore[arg-type]


# ------------------------------------------------------------------------------------------------ through the app


class WordHashRetriever:
    """Texts as normalised bags of hashed words; the gallery is given, images are never encoded."""

    def encode_text(self, texts: Sequence[str]) -> torch.Tensor:
        rows = torch.zeros(len(texts), 8)
        for row, text in zip(rows, texts, strict=True):
            for word in re.findall(r"[a-z]+", text.lower()):
                row[sum(map(ord, word)) % 8] += 1
        return torch.nn.functional.normalize(rows + 1e-3, dim=1)

    def encode_images(self, images: Sequence[Image.Image]) -> torch.Tensor:
        raise AssertionError("the gallery is encoded already")


def any_reply(prompt: str) -> str:
    if prompt.startswith("A witness described"):
        return "coat\nshoes"
    if match := _OBJECT.search(prompt):
        return f"What did the person's {match.group(1)} look like?"
    if "tell these people apart" in prompt:
        return "What colour were the person's shoes?\nWhat was the person carrying?"
    return "Uncertain"


def test_both_run_through_the_harness_as_the_app_builds_them(tiny_world: Path, tmp_path: Path, monkeypatch) -> None:
    import ireid.app.strategies as app
    from ireid.interactive.config import EvalConfig

    llm = ScriptedLLM(any_reply)
    monkeypatch.setattr(app, "_chat_llm", lambda source, tokenizer_dir, batch_size, server: llm)
    config = EvalConfig(data_dir=str(tiny_world))
    config.plugir_llm = dataclasses.replace(config.plugir_llm, top_n=8, clusters=3)
    records = load_records(tiny_world, "test")
    embeddings = WordHashRetriever().encode_text([r.fine_description for r in records])
    gallery = Gallery([r.key for r in records], torch.tensor([r.pid for r in records]), embeddings, records)
    for name, ground_truth in (("simirv-llm", False), ("plugir-llm", True)):
        strategy = app.build_strategy(name, config)
        assert strategy.name == name and strategy.uses_ground_truth is ground_truth
        result = evaluate_strategy(
            strategy,
            records[:4],
            gallery,
            WordHashRetriever(),
            RuleBasedWitness(),
            tmp_path / name,
            rounds=2,
            batch_size=3,
            text_of=retrieval_text_reader(),
            settings=app.strategy_settings(name, config),
        )
        assert len(result.rounds) == 3 and result.uses_ground_truth is ground_truth
        logs = [json.loads(line) for line in (tmp_path / name / "conversations.jsonl").read_text().splitlines()]
        questions = [[turn["question"] for turn in log["turns"]] for log in logs]
        assert all(len(q) == 2 == len(set(q)) for q in questions)
    assert questions[0][0] == "What colour were the person's shoes?"
    assert app.strategy_settings("plugir-llm", config)["plugir_llm"]["vision"] == "annotated"

    config.plugir_llm = dataclasses.replace(config.plugir_llm, vision="openai:http://localhost:1/v1#vlm")
    seeing = app.build_strategy("plugir-llm", config)
    assert seeing.uses_ground_truth is False and isinstance(seeing.captioner, VisionCaptioner)  # type: ignore[attr-defined]

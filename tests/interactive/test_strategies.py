"""Question strategies: what each asks, on synthetic records whose answers are known."""

from __future__ import annotations

import dataclasses
import random
from collections.abc import Sequence

import pytest
import torch

from ireid.core.expected_gain import ExpectedGainRule, annotated_values, one_hot_answers
from ireid.core.gallery import Gallery
from ireid.core.protocols import Dialogue
from ireid.core.records import Record
from ireid.core.rounds import RoundContext, pool_size, retrieval_text_reader
from ireid.core.synthetic.world import Identity, make_record
from ireid.core.vocabulary.asking import ASKABLE
from ireid.core.vocabulary.attributes import ATTRIBUTES
from ireid.core.vocabulary.parse import parse_description, parse_question
from ireid.interactive.candidates import select_candidates, spherical_kmeans
from ireid.interactive.strategies.chatir import ChatIR, dialogue_lines, example_dialogues, first_question
from ireid.interactive.strategies.expected_gain import ExpectedGain
from ireid.interactive.strategies.heuristic import PlugIR, SimIRV, value_entropy
from ireid.interactive.strategies.target_frequency import TargetFrequency

BASE = {
    "gender": "man", "age": "young", "hair_colour": "black", "hair_length": "short", "upper_type": "jacket",
    "upper_colour": "red", "upper_pattern": "plain", "upper_logo": "no", "lower_type": "trousers",
    "lower_colour": "blue", "shoes_type": "sneakers", "shoes_colour": "white", "bag": "none", "hat": "none",
    "glasses": "none", "held_item": "none", "scene": "street",
}  # fmt: skip


def person(index: int, mentioned: tuple[str, ...] = ("gender", "upper_colour"), **changes: str) -> Record:
    identity = Identity(index, "test", index, {**BASE, **changes}, mentioned)
    return make_record(identity, 0, 0, seed=0)


def context(
    queries: list[Record], gallery: Gallery, dialogues: list[Dialogue] | None = None, t: int = 1
) -> RoundContext:
    dialogues = dialogues or [Dialogue(q.initial_description) for q in queries]
    scores = torch.linspace(1, 0, len(gallery)).expand(len(queries), -1)
    return RoundContext(t, queries, dialogues, scores, gallery, retriever=None, text_of=retrieval_text_reader())  # type: ignore[arg-type]


def test_simirv_asks_about_the_named_object_first_then_moves_on() -> None:
    query = person(0)  # the initial description names the red top
    dialogue = Dialogue(query.initial_description)
    ctx = context([query], Gallery([], torch.zeros(0, dtype=torch.long), torch.zeros(0, 2), []), [dialogue])
    first = SimIRV().ask(ctx)[0]
    assert first is not None and parse_question(first).attribute == "upper_type"
    assert " he " in f" {first} " or " his " in f" {first} "
    dialogue.ask(first, "He wore a jacket.")
    second = SimIRV().ask(ctx)[0]
    assert parse_question(second).attribute == "upper_pattern"
    assert SimIRV().order(query.initial_description)[:4] == [
        "upper_type",
        "upper_colour",
        "upper_pattern",
        "upper_logo",
    ]


def test_simirv_stops_when_everything_is_covered() -> None:
    query = person(0)
    ctx = context([query], Gallery([], torch.zeros(0, dtype=torch.long), torch.zeros(0, 2), []))
    ctx.dialogues[0] = Dialogue(query.fine_description)
    assert SimIRV().ask(ctx) == [None]


def test_plugir_asks_about_the_attribute_that_splits_the_candidates() -> None:
    hats = ("none", "cap", "beanie", "sun hat")
    gallery_records = [person(i + 1, hat=hats[i % 4], glasses="none" if i < 7 else "sunglasses") for i in range(8)]
    gallery = Gallery(
        [r.key for r in gallery_records],
        torch.arange(8),
        torch.nn.functional.normalize(torch.randn(8, 4, generator=torch.Generator().manual_seed(0)), dim=1),
        gallery_records,
    )
    query = person(0)
    strategy = PlugIR(top_n=8, clusters=8, method="top-k")
    question = strategy.ask(context([query], gallery))[0]
    assert parse_question(question).attribute == "hat"  # 4 even values beat glasses (7:1) and the shared rest
    assert value_entropy(["a", "b", "a", "b"]) == pytest.approx(0.6931471805599453)


def test_candidate_selection_methods() -> None:
    scores = torch.tensor([0.1, 0.9, 0.5, 0.7, 0.3, 0.8])
    embeddings = torch.eye(6)
    assert select_candidates("top-k", scores, embeddings, 3, 4, random.Random(0)) == [1, 5, 3]
    uniform = select_candidates("uniform", scores, embeddings, 2, 4, random.Random(0))
    assert len(set(uniform)) == 2 and set(uniform) <= {1, 5, 3, 2}
    # Two tight groups of points: k-means with 2 clusters returns one member of each, best-ranked first.
    points = torch.nn.functional.normalize(torch.tensor([[1, 0.1], [1, 0.0], [0.0, 1], [0.1, 1]]), dim=1)
    picks = select_candidates("k-means", torch.tensor([0.9, 0.8, 0.7, 0.6]), points, 2, 4, random.Random(0))
    assert len(picks) == 2 and {picks[0] // 2, picks[1] // 2} == {0, 1}
    assignment, _ = spherical_kmeans(points, 2, random.Random(1))
    assert assignment[0] == assignment[1] != assignment[2] == assignment[3]
    assert [pool_size(t) for t in (1, 2, 3)] == [200, 100, 67]
    with pytest.raises(ValueError, match="unknown candidate method"):
        select_candidates("best", scores, embeddings, 1, 2, random.Random(0))  # type: ignore[arg-type]


class ScriptedLLM:
    def __init__(self, reply: str) -> None:
        self.reply, self.prompts = reply, []

    def chat(self, conversations: Sequence[Sequence[dict[str, str]]], max_new_tokens: int) -> list[str]:
        self.prompts += [c[-1]["content"] for c in conversations]
        return [self.reply] * len(conversations)


def test_chatir_prompts_with_examples_and_the_dialogue_and_keeps_one_question() -> None:
    train = [person(i, upper_colour="green") for i in range(3)]
    examples = example_dialogues(train, count=2)
    assert examples.count("Witness: I saw") == 2 and "You: " in examples
    llm = ScriptedLLM("Question: What colour were his shoes?\nAnd another line")
    query = person(9)
    dialogue = Dialogue(query.initial_description)
    dialogue.ask("Was he wearing a hat?", "No, he wore no hat.")
    questions = ChatIR(llm, examples).ask(
        context([query], Gallery([], torch.zeros(0, dtype=torch.long), torch.zeros(0, 2), []), [dialogue])
    )
    assert questions == ["What colour were his shoes?"]
    assert dialogue_lines(dialogue) in llm.prompts[0] and examples in llm.prompts[0]
    assert first_question("\n  You: Where was he? Maybe outside.") == "Where was he?" and first_question("  ") == ""
    assert first_question("Witness: I saw a man.\nYou: Was he tall?") == "Was he tall?"
    assert first_question("Ask about the shoes") == "Ask about the shoes"


def test_askable_attributes_leave_out_gender_only() -> None:
    assert "gender" not in ASKABLE and len(ASKABLE) == len(BASE) - 1


class AttributeEncoder:
    """A stand-in retriever whose text and image embeddings are the attribute values they state or show."""

    def __init__(self) -> None:
        self.slots = {(a, v): i for i, (a, v) in enumerate((a, v) for a in ASKABLE for v in ATTRIBUTES[a].values)}

    def embed(self, attributes: dict[str, str]) -> torch.Tensor:
        vector = torch.zeros(len(self.slots))
        for a, v in attributes.items():
            if (a, v) in self.slots:
                vector[self.slots[a, v]] = 1.0
        return torch.nn.functional.normalize(vector + 1e-3, dim=0)

    def encode_text(self, texts: Sequence[str]) -> torch.Tensor:
        return torch.stack([self.embed(parse_description(t)) for t in texts])


HATS = ("none", "cap", "beanie", "sun hat")
SHOWN = [{**BASE, "hat": HATS[i % 4], "glasses": "none" if i < 7 else "sunglasses"} for i in range(8)]


def hat_round(records: list[Record]) -> RoundContext:
    """Round 1 of one query over eight gallery images that show `SHOWN` (four hats, one pair of sunglasses), whose
    gallery records are `records`."""
    encoder = AttributeEncoder()
    images = torch.stack([encoder.embed(a) for a in SHOWN])
    query = person(0)
    dialogue = Dialogue(query.fine_description.split(".")[0] + ".")
    gallery = Gallery([r.key for r in records], torch.arange(8), images, records)
    scores = gallery.scores(encoder.encode_text([dialogue.initial]))
    return RoundContext(1, [query], [dialogue], scores, gallery, encoder, retrieval_text_reader())  # type: ignore[arg-type]


def test_expected_gain_asks_what_splits_the_candidate_images_without_reading_their_records() -> None:
    blank = [person(i + 1) for i in range(8)]  # the records all say the same: only the images differ
    question = ExpectedGain(ExpectedGainRule(pool=8)).ask(hat_round(blank))[0]
    assert parse_question(question).attribute == "hat"  # four even values beat glasses (7:1) and the shared rest
    assert ExpectedGain.uses_ground_truth is False and PlugIR.uses_ground_truth is True


def test_annotated_expected_gain_reads_the_candidates_records_and_says_so() -> None:
    """The same rule with the gallery's annotations as the candidates' answers: on the same images, records that
    agree with them lead to the hat, records on which every candidate wears no hat lead elsewhere."""
    strategy = ExpectedGain(ExpectedGainRule(pool=8, annotated=True))
    assert strategy.uses_ground_truth and strategy.name == "expected-gain:annotated"

    def asked(records: list[Record]) -> str:
        return parse_question(strategy.ask(hat_round(records))[0]).attribute

    assert asked([person(i + 1, hat=a["hat"], glasses=a["glasses"]) for i, a in enumerate(SHOWN)]) == "hat"
    assert asked([person(i + 1, hat="none", glasses=a["glasses"]) for i, a in enumerate(SHOWN)]) != "hat"
    records = [person(i + 1, hat=HATS[i % 4]) for i in range(2)]
    unannotated = dataclasses.replace(person(9), attributes={k: v for k, v in BASE.items() if k != "hat"})
    values = ATTRIBUTES["hat"].values
    answers = one_hot_answers(annotated_values([*records, unannotated], "hat"), len(values))
    assert answers[:, 0].tolist() == [float(v == "none") for v in values]
    assert torch.allclose(answers[:, 2], torch.full((len(values),), 1 / len(values))), "not annotated: uniform"


def test_expected_gain_with_eyes_asks_from_what_they_read_off_the_images() -> None:
    """`choose(ctx, eyes)` takes each candidate's answers from the eyes, not from the records: eyes that read what
    the annotated rule reads ask what it asks, on records that say nothing; eyes that see no hat lead elsewhere."""

    def eyes(records: list[Record]) -> dict[str, torch.Tensor]:
        return {a: one_hot_answers(annotated_values(records, a), len(s.values)).T for a, s in ATTRIBUTES.items()}

    seen = [person(i + 1, hat=a["hat"], glasses=a["glasses"]) for i, a in enumerate(SHOWN)]
    hatless = [person(i + 1, hat="none", glasses=a["glasses"]) for i, a in enumerate(SHOWN)]
    blank = [person(i + 1, hat="none", glasses="none") for i in range(8)]
    rule = ExpectedGainRule(pool=8, temperature=0.2, answer_temperature=0.02, contradiction=0.2)
    perfect = dataclasses.replace(rule, annotated=True)
    assert rule.choose(hat_round(blank), eyes(seen)) == perfect.choose(hat_round(seen)) == ["hat"]
    assert rule.choose(hat_round(blank), eyes(hatless)) == perfect.choose(hat_round(hatless)) != ["hat"]


def test_expected_gain_reader_reads_each_gallery_once(tmp_path) -> None:
    """`expected-gain:reader` reads the gallery's images with its net at the first question, and again only for a
    gallery of other images."""
    from PIL import Image

    from ireid.core.attribute_net import AttributeNet

    loaded: list[int] = []

    class Images:
        def load(self, keys: Sequence[str]) -> list[Image.Image]:
            loaded.append(len(keys))
            return [Image.new("RGB", (64, 128), (30 * i, 0, 0)) for i in range(len(keys))]

        def encoded(self, key: str) -> bytes:
            raise AssertionError("the strategy decodes through load")

    net = AttributeNet({"hat": list(HATS)}).save(tmp_path / "net.pt")
    strategy = ExpectedGain(ExpectedGainRule(pool=8), str(net), Images())
    assert strategy.name == "expected-gain:reader" and not strategy.uses_ground_truth
    blank = [person(i + 1) for i in range(8)]
    first = hat_round(blank)
    assert parse_question(strategy.ask(first)[0]).attribute in ATTRIBUTES
    strategy.ask(first)
    strategy.ask(hat_round(blank))  # the same images in another gallery object
    assert loaded == [8]
    strategy.ask(hat_round([person(i + 20) for i in range(8)]))
    assert loaded == [8, 8]


def test_expected_gain_reader_needs_its_attribute_net_file() -> None:
    from ireid.app.strategies import build_strategy
    from ireid.interactive.config import EvalConfig

    with pytest.raises(ValueError, match=r"expected_gain\.reader"):
        build_strategy("expected-gain:reader", EvalConfig())
    with pytest.raises(ValueError, match="without annotations and given images"):
        ExpectedGain(ExpectedGainRule(annotated=True), "net.pt")


def test_target_frequency_asks_the_uncovered_attribute_most_often_the_target_at_that_round() -> None:
    query = person(0)  # the initial description states gender and the top's colour
    counts = {1: {"upper_colour": 50, "scene": 30, "hat": 5}, 2: {"scene": 9, "bag": 12}}
    strategy = TargetFrequency(counts)
    dialogue = Dialogue(query.initial_description)
    empty = Gallery([], torch.zeros(0, dtype=torch.long), torch.zeros(0, 2), [])
    first = strategy.ask(context([query], empty, [dialogue], t=1))[0]
    assert parse_question(first).attribute == "scene", "the stated top colour is skipped"
    assert " he " in f" {first} " or " his " in f" {first} " or "him" in first
    dialogue.ask(first, "I saw him on a street.")
    assert parse_question(strategy.ask(context([query], empty, [dialogue], t=2))[0]).attribute == "bag"
    dialogue.ask("What kind of bag did he have?", "He had no bag.")
    later = strategy.ask(context([query], empty, [dialogue], t=7))[0]  # past the counted rounds: the last one's counts
    assert parse_question(later).attribute == "age", "no count left: the first uncovered attribute of the vocabulary"
    assert strategy.uses_ground_truth is False
    with pytest.raises(ValueError, match="at least one round"):
        TargetFrequency({})

"""The dialogue loop and evaluation harness on a keyword retriever whose ranks can be worked out by hand."""

from __future__ import annotations

import json
import math
import re
from collections.abc import Sequence
from pathlib import Path

import pytest
import torch
from PIL import Image

from ireid.core.gallery import Gallery
from ireid.core.protocols import Dialogue
from ireid.core.records import QA, Record
from ireid.core.rounds import RoundContext, retrieval_text_reader
from ireid.interactive.harness import evaluate_strategy
from ireid.interactive.reference import REFERENCE_TEXTS, every_answer, retriever_reference
from ireid.interactive.report import markdown_report, table_rounds, write_report
from ireid.interactive.session import BaseModelAveraging
from ireid.interactive.strategies.annotated import RandomQuestions
from ireid.interactive.strategies.initial import InitialOnly
from ireid.questioner.lookforward import OracleLookForward
from tests.helpers import make_record

COLOURS = ("red", "blue", "green")


class KeywordRetriever:
    """A text is [1, 1, 1] plus 1 for each colour word it contains (normalised); images are not used."""

    def encode_text(self, texts: Sequence[str]) -> torch.Tensor:
        words = [re.findall(r"[a-z]+", text.lower()) for text in texts]
        rows = [[1.0 + w.count(c) for c in COLOURS] for w in words]
        return torch.nn.functional.normalize(torch.tensor(rows), dim=1)

    def encode_images(self, images: Sequence[Image.Image]) -> torch.Tensor:
        raise AssertionError("the harness must not re-encode the gallery")


class MemoryWitness:
    """Answers a colour question with the colour its memory names."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, str]] = []

    def answer(self, questions: Sequence[str], memories: Sequence[str]) -> list[str]:
        self.calls += list(zip(questions, memories, strict=True))
        return [f"Yes, it was {next(c for c in COLOURS if c in m)}." for m in memories]


def _person(pid: int, colour: str, split: str = "test") -> Record:
    return make_record(
        pid,
        split=split,
        pid=pid,
        key=f"p/{colour}",
        initial_description="I saw a person.",
        fine_description=f"The person wore {colour}.",
        qas=[
            QA("Which colour did the person wear?", f"The person wore {colour}.", "descriptive", attribute="colour"),
            QA("Was the person tall or short?", "I don't know.", "descriptive", attribute="height"),
        ],
    )


@pytest.fixture
def world() -> tuple[list[Record], Gallery]:
    people = [_person(i, c) for i, c in enumerate(COLOURS)]
    embeddings = torch.eye(3)
    gallery = Gallery([p.key for p in people], torch.arange(3), embeddings, people)
    return people, gallery


def test_oracle_round_ranks_and_bri_match_a_hand_computation(world, tmp_path: Path) -> None:
    people, gallery = world
    # Initial text scores [1, 1, 1]: every image ties, so gallery order decides: red 1st, blue 2nd, green 3rd.
    # After one answer naming the colour the target is first. Ranks per round: red [1, 1, 1], green [3, 1, 1].
    queries = [people[0], people[2]]
    result = evaluate_strategy(
        OracleLookForward(),
        queries,
        gallery,
        KeywordRetriever(),
        MemoryWitness(),
        tmp_path,
        rounds=2,
        batch_size=1,
        text_of=retrieval_text_reader(),
    )
    # BRI per query: mean over rounds of the trapezoid (ln m_i + ln m_{i+1}) / 2 on m = running best rank.
    red = 0.0
    green = ((math.log(3) + math.log(1)) / 2 + (math.log(1) + math.log(1)) / 2) / 2
    assert result.bri == pytest.approx((red + green) / 2)
    assert [r["R1"] for r in result.rounds] == [50.0, 100.0, 100.0]
    assert result.rounds[0]["mAP"] == pytest.approx(100 * (1 + 1 / 3) / 2)
    lines = (tmp_path / "conversations.jsonl").read_text().splitlines()
    green_log = json.loads(lines[1])
    assert green_log["ranks"] == [3, 1, 1]
    # Round 1 asks the colour (the only answer that helps); round 2 has no unused answer that cleans to text.
    assert [t["question"] for t in green_log["turns"]] == ["Which colour did the person wear?"]


def test_initial_only_keeps_round_zero_everywhere(world, tmp_path: Path) -> None:
    people, gallery = world
    witness = MemoryWitness()
    result = evaluate_strategy(
        InitialOnly(),
        people,
        gallery,
        KeywordRetriever(),
        witness,
        tmp_path,
        rounds=3,
        batch_size=2,
        text_of=retrieval_text_reader(),
    )
    assert witness.calls == []
    assert all(r == result.rounds[0] for r in result.rounds)
    assert result.bri == pytest.approx((0 + math.log(2) + math.log(3)) / 3)


def test_resume_reuses_finished_batches_and_redoes_changed_ones(world, tmp_path: Path) -> None:
    people, gallery = world
    args = dict(rounds=2, batch_size=2, text_of=retrieval_text_reader())
    first = evaluate_strategy(
        OracleLookForward(), people, gallery, KeywordRetriever(), MemoryWitness(), tmp_path, **args
    )
    witness = MemoryWitness()
    again = evaluate_strategy(OracleLookForward(), people, gallery, KeywordRetriever(), witness, tmp_path, **args)
    assert witness.calls == [] and again == first
    # Batch 1 now holds other queries (a different query list): it is recomputed, batch 0 is reused.
    witness = MemoryWitness()
    evaluate_strategy(
        OracleLookForward(), [*people[:2], people[0]], gallery, KeywordRetriever(), witness, tmp_path, **args
    )
    assert [m for _, m in witness.calls] == ["The person wore red."]
    # Other settings (another checkpoint, say): every batch is redone, then reused under the new settings.
    witness = MemoryWitness()
    changed = {**args, "settings": {"questioner_ckpt": "retrained.ckpt"}}
    evaluate_strategy(OracleLookForward(), people, gallery, KeywordRetriever(), witness, tmp_path, **changed)
    assert len(witness.calls) == len(people)
    witness = MemoryWitness()
    evaluate_strategy(OracleLookForward(), people, gallery, KeywordRetriever(), witness, tmp_path, **changed)
    assert witness.calls == []


def test_random_asks_only_unused_questions_and_is_reproducible(world) -> None:
    people, gallery = world
    dialogue = Dialogue("I saw a person.")
    dialogue.ask("Which colour did the person wear?", "Red.")
    ctx = RoundContext(
        1, [people[0]], [dialogue], torch.zeros(1, 3), gallery, KeywordRetriever(), retrieval_text_reader()
    )
    assert RandomQuestions().ask(ctx) == ["Was the person tall or short?"]
    dialogue.ask("Was the person tall or short?", "I don't know.")
    assert RandomQuestions().ask(ctx) == [None]


def test_reranker_averages_base_and_dialogue_scores() -> None:
    base = torch.tensor([[1.0, 0.0]])
    averaged = BaseModelAveraging(base, 0.5)(torch.tensor([[0.0, 0.5]]), ["a dialogue"])
    assert torch.equal(averaged, torch.tensor([[0.5, 0.25]]))


def test_report_files_and_table_shape(world, tmp_path: Path) -> None:
    people, gallery = world
    results = [
        evaluate_strategy(
            s,
            people,
            gallery,
            KeywordRetriever(),
            MemoryWitness(),
            tmp_path / s.name,
            rounds=5,
            batch_size=3,
            text_of=retrieval_text_reader(),
        )
        for s in (InitialOnly(), OracleLookForward())
    ]
    paths = write_report(results, tmp_path, {"data": "three people"})
    table = paths["markdown"].read_text()
    assert "| oracle-lookforward (uses ground truth) | 100.00 |" in table
    assert "R3 R@1" in table and "R5 mAP" in table
    assert paths["plot"].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    saved = json.loads(paths["json"].read_text())
    assert [s["name"] for s in saved["strategies"]] == ["initial", "oracle-lookforward"]
    assert table_rounds(5) == [3, 5] and table_rounds(2) == [2]
    assert markdown_report(results, {}).count("\n| ") >= 4


def test_retriever_reference_ranks_each_text_by_hand(world) -> None:
    people, gallery = world
    # Initial "I saw a person." ties everywhere: gallery order puts red first, so only the red query is a hit.
    # Every answer and the fine description name the colour: each query's own image is first.
    reference = retriever_reference(KeywordRetriever(), gallery, people, retrieval_text_reader())
    assert reference == pytest.approx(
        {REFERENCE_TEXTS[0]: 100 / 3, REFERENCE_TEXTS[1]: 100.0, REFERENCE_TEXTS[2]: 100.0}
    )
    assert every_answer(people[1], retrieval_text_reader()) == "I saw a person. The person wore blue."
    blank = [make_record(9, pid=1, key="p/none", initial_description="I saw a person.", fine_description="")]
    assert retriever_reference(KeywordRetriever(), gallery, blank, retrieval_text_reader())[REFERENCE_TEXTS[2]] == 0.0

"""§4.1 evaluation: the retriever's filter, ranking by the model's confidence, metrics, and the four tasks."""

from __future__ import annotations

import math
from collections.abc import Sequence

import pytest
import torch

from ireid.chatreid.eval_tasks import Query, TaskData, TaskDataError, build_task
from ireid.chatreid.evaluation import evaluate_task, filter_gallery, format_table, model_order, retriever_order
from ireid.core.records import Record


class Keyed:
    """Stands in for a decoded image: the evaluation only passes images between the source and the scorers."""

    def __init__(self, key: str):
        self.key = key


class Source:
    def load(self, keys: Sequence[str]) -> list[Keyed]:
        return [Keyed(k) for k in keys]


class StubRetriever:
    """Query texts embed to e0; gallery image i to (s_i, sqrt(1 - s_i²)), so its cosine to the query is s_i."""

    def __init__(self, similarity: dict[str, float]):
        self.similarity = similarity

    def encode_text(self, texts: Sequence[str]) -> torch.Tensor:
        return torch.tensor([[1.0, 0.0]] * len(texts))

    def encode_images(self, images: Sequence[Keyed]) -> torch.Tensor:
        return torch.tensor([[s, math.sqrt(1 - s * s)] for s in (self.similarity[i.key] for i in images)])


class StubScorer:
    """Known yes-probabilities per (query text, candidate key); records what it was asked."""

    def __init__(self, confidence: dict[tuple[str, str], float]):
        self.confidence = confidence
        self.asked: list[tuple[str, list[str]]] = []

    def match_confidence(self, task: str, query, candidates: Sequence[Keyed]) -> torch.Tensor:
        self.asked.append((query, [c.key for c in candidates]))
        return torch.tensor([self.confidence[(query, c.key)] for c in candidates])


def record(key: str, pid: int, camid: int = 0, split: str = "test", **extra) -> Record:
    r = Record(key=key, pid=pid, split=split, source="t", camid=camid, fine_description=f"person {pid}")
    for name, value in extra.items():
        setattr(r, name, value)  # after validation, so aliases the schema refuses ("IR") reach the task readers
    return r


def test_filter_keeps_counted_images_above_tau_most_similar_first_up_to_the_cap():
    similarity = torch.tensor([0.9, 0.5, 0.6, 0.95, 0.2, 0.7])
    counted = torch.tensor([True, True, True, False, True, True])
    assert filter_gallery(similarity, counted, 0.5, 10).tolist() == [0, 5, 2]  # 0.5 itself is not above τ
    assert filter_gallery(similarity, counted, 0.5, 2).tolist() == [0, 5]
    assert filter_gallery(similarity, counted, 0.95, 10).tolist() == []
    assert filter_gallery(similarity, counted, -1.0, 10).tolist() == [0, 5, 2, 1, 4]


def test_model_order_ranks_candidates_by_confidence_then_the_rest_by_similarity():
    similarity = torch.tensor([0.9, 0.8, 0.3, 0.7, -0.5])
    counted = torch.ones(5, dtype=torch.bool)
    candidates = torch.tensor([0, 1, 3])
    assert model_order(similarity, counted, candidates, torch.tensor([0.2, 0.9, 0.1])).tolist() == [1, 0, 3, 2, 4]
    assert model_order(similarity, counted, candidates, torch.tensor([0.5, 0.5, 0.9])).tolist() == [3, 0, 1, 2, 4]
    assert retriever_order(similarity, counted).tolist() == [0, 1, 3, 2, 4]


def test_confidence_ranking_gives_the_hand_computed_metrics():
    """Gallery pids [1, 2, 1, 3, 2]; τ = 0.5 keeps images 0, 1, 3 (image 2, a match of person 1, is dropped).

    Query "a" (person 1): the model ranks 1, 0, 3 then 2, 4 → pids 2 1 3 1 2: AP (1/2 + 2/4)/2 = 0.5, rank 2;
    the retriever ranks 0, 1, 3, 2, 4 → pids 1 2 3 1 2: AP (1 + 2/4)/2 = 0.75, rank 1.
    Query "b" (person 2): the model ranks 1 first → AP (1 + 2/5)/2 = 0.7, rank 1; the retriever 0, 1, 3, 2, 4 →
    pids 1 2 3 1 2: AP (1/2 + 2/5)/2 = 0.45, rank 2.
    """
    gallery = [record(f"g{i}", pid) for i, pid in enumerate([1, 2, 1, 3, 2])]
    similarity = dict(zip([r.key for r in gallery], [0.9, 0.8, 0.3, 0.7, -0.5], strict=True))
    queries = [Query("qa", 1, 0, text="a"), Query("qb", 2, 0, text="b")]
    confidence = {("a", "g0"): 0.2, ("a", "g1"): 0.9, ("a", "g3"): 0.1}
    confidence |= {("b", "g0"): 0.3, ("b", "g1"): 0.8, ("b", "g3"): 0.4}
    scorer = StubScorer(confidence)
    result = evaluate_task(
        TaskData("text-to-image", queries, gallery), Source(), StubRetriever(similarity), scorer, tau=0.5
    )
    assert scorer.asked == [("a", ["g0", "g1", "g3"]), ("b", ["g0", "g1", "g3"])], "each kept image asked once"
    assert result.model["mAP"] == pytest.approx(100 * (0.5 + 0.7) / 2)
    assert result.model["R1"] == pytest.approx(50.0) and result.model["R5"] == pytest.approx(100.0)
    assert result.baseline["mAP"] == pytest.approx(100 * (0.75 + 0.45) / 2)
    assert result.baseline["R1"] == pytest.approx(50.0)
    assert result.mean_candidates == 3 and result.filter_recall == 100.0
    table = format_table(result)
    assert "ChatReID" in table and "60.0" in table and "retriever only (filter)" in table


def test_image_tasks_choose_queries_and_count_gallery_images_by_camera_outfit_and_modality():
    records = [
        record("a0", 0, 0, clothes_id=0), record("a1", 0, 1, clothes_id=0), record("a2", 0, 2, clothes_id=1),
        record("a3", 0, 0, clothes_id=1), record("b0", 1, 0, clothes_id=0), record("b1", 1, 1, clothes_id=0),
        record("a4", 0, 3, modality="infrared"), record("b2", 1, 4, modality="IR"),
    ]  # fmt: skip
    standard = build_task("standard", records)
    assert [q.key for q in standard.queries] == ["a0", "b0"]
    assert [r.key for r in standard.gallery] == ["a1", "a2", "a3", "b1"], "visible images only"
    assert standard.counted(standard.queries[0]).tolist() == [True, True, False, True], "a3: same camera"

    changing = build_task("cloth-changing", records)
    assert [q.key for q in changing.queries] == ["a0"] and changing.dropped_queries == 1, "b has one outfit"
    assert changing.counted(changing.queries[0]).tolist() == [False, True, False, True]

    infrared = build_task("visible-infrared", records)
    assert [r.key for r in infrared.gallery] == ["a4", "b2"] and [q.key for q in infrared.queries] == ["a0", "b0"]
    reverse = build_task("visible-infrared", records, direction="infrared-to-visible")
    assert [q.key for q in reverse.queries] == ["a4", "b2"] and len(reverse.gallery) == 6

    text = build_task("text-to-image", records, max_queries=3)
    assert [q.text for q in text.queries] == ["person 0", "person 0", "person 1"] and len(text.gallery) == 6


def test_tasks_explain_which_field_the_data_lacks():
    plain = [record("a0", 0, 0), record("a1", 0, 1)]
    with pytest.raises(TaskDataError, match=r"more than one outfit.*clothes_id.*--outfits-per-id"):
        build_task("cloth-changing", plain, where="shards/x (test split)")
    with pytest.raises(TaskDataError, match=r"'modality'.*2 visible and 0 infrared.*--infrared-cameras"):
        build_task("visible-infrared", plain)
    with pytest.raises(TaskDataError, match="'modality': 'sonar'"):
        build_task("standard", [record("a0", 0, modality="sonar")])
    with pytest.raises(TaskDataError, match=r"no query .* has a counted gallery image"):
        build_task("standard", [record("a0", 0, 0), record("a1", 0, 0)])

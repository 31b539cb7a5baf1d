"""Looking-forward targets on synthetic records with a bag-of-words retriever (ranks checkable by brute force)."""

from __future__ import annotations

import json
import random
import re
import tarfile
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest
import torch

from ireid.core.answers import clean_answer
from ireid.core.gallery import Gallery
from ireid.core.metrics import target_ranks_from_scores
from ireid.core.protocols import Dialogue, Turn
from ireid.core.rounds import RoundContext, retrieval_text_reader
from ireid.core.synthetic.world import plan_identities, world_records
from ireid.core.vocabulary.parse import parse_question
from ireid.questioner.lookforward import (
    TEACHER,
    _choose,
    _taught_ranks,
    answered_pair,
    build_targets,
    gallery_groups,
    look_forward_batch,
    look_forward_ranks,
    pairs_about,
    selector_tensors,
    target_attribute_counts,
)
from ireid.selector.data import check_selector_tensors


class BagOfWords:
    def __init__(self, texts: Sequence[str]) -> None:
        words = sorted({w for t in texts for w in re.findall(r"[a-z\-]+", t.lower())})
        self.index = {w: i for i, w in enumerate(words)}

    def encode_text(self, texts: Sequence[str]) -> torch.Tensor:
        rows = torch.zeros(len(texts), len(self.index))
        for row, text in enumerate(texts):
            for word in re.findall(r"[a-z\-]+", text.lower()):
                if word in self.index:
                    rows[row, self.index[word]] += 1
        return torch.nn.functional.normalize(rows, dim=1)

    def encode_images(self, images):  # pragma: no cover - galleries are built from texts here
        raise AssertionError("not used")


@pytest.fixture(scope="module")
def world():
    records = world_records(0, plan_identities(0, 0, 0, 12), images_per_id=2)
    retriever = BagOfWords([r.fine_description for r in records])
    gallery = Gallery(
        [r.key for r in records],
        torch.tensor([r.pid for r in records]),
        retriever.encode_text([r.fine_description for r in records]),
        records,
    )
    return records, retriever, gallery


def test_round_one_target_is_the_best_answer_by_brute_force(world) -> None:
    records, retriever, gallery = world
    (target,) = look_forward_batch(records[:1], gallery, retriever, max_rounds=1)
    record = records[0]
    texts, questions = [], []
    for qa in record.qas:
        cleaned = clean_answer(qa.answer)
        if cleaned and cleaned not in record.initial_description:
            texts.append(f"{record.initial_description} {cleaned}")
            questions.append(qa.question)
    ranks = target_ranks_from_scores(
        gallery.scores(retriever.encode_text(texts)), torch.full((len(texts),), record.pid), gallery.pids
    )
    best = int(ranks.argmin())
    (first,) = target["rounds"]
    assert first["question"] == questions[best] and first["rank_after"] == int(ranks[best])
    assert first["rank_after"] <= first["rank_before"] and first["dialogue"] == []
    assert len(first["candidates"]) == len(gallery)  # ceil(200 / 1) exceeds the 24-image gallery
    assert (
        target["r1.npy"].shape == (len(gallery), gallery.embeddings.shape[1]) and target["r1.npy"].dtype == np.float16
    )


def test_targets_shrink_the_rank_stop_before_the_bank_runs_out_and_resume(world, tmp_path: Path) -> None:
    records, retriever, gallery = world
    summary = build_targets(retriever, gallery, records[:6], tmp_path, max_rounds=20, batch_size=4, budget=12)
    rounds = summary["rounds"]
    assert rounds["1"]["mean_rank_after"] <= rounds["1"]["mean_rank_before"]
    last = max(int(t) for t in rounds)
    assert last <= len(records[0].qas) - 1  # stops when fewer than 2 unused pairs remain
    (shard,) = sorted(tmp_path.glob("train-*.tar"))
    with tarfile.open(shard) as tar:
        names = tar.getnames()
        meta = json.loads(tar.extractfile(f"{records[0].key}.json").read())
    assert f"{records[0].key}.dialogue.npy" in names and f"{records[0].key}.r2.npy" in names
    assert [len(r["candidates"]) for r in meta["rounds"][:3]] == [12, 6, 4]  # ceil(12 / t)
    assert meta["rounds"][1]["dialogue"][0]["question"] == meta["rounds"][0]["question"]
    # A rerun skips every record already written and adds the new ones.
    build_targets(retriever, gallery, records[:8], tmp_path, max_rounds=20, batch_size=4, budget=12)
    manifest = json.loads((tmp_path / "train.manifest.json").read_text())
    assert manifest["count"] == 8 and manifest["complete"]
    # The selector's warm-up rows: one per (record, round), candidates padded to the widest pool (12).
    tensors = selector_tensors(tmp_path, "train")
    summary = build_targets(retriever, gallery, [], tmp_path, max_rounds=20, budget=12)
    total = sum(row["dialogues"] for row in summary["rounds"].values())
    assert tensors["candidates"].shape == (total, 12, gallery.embeddings.shape[1])
    assert tensors["mask"][:, 0].all() and tensors["mask"].sum(1).max() == 12
    check_selector_tensors(tensors, "look-forward export")


def test_random_targets_take_a_tried_pair_with_its_true_rank(world) -> None:
    records, retriever, gallery = world
    best = look_forward_batch(records[:6], gallery, retriever, max_rounds=1)
    drawn = look_forward_batch(records[:6], gallery, retriever, max_rounds=1, targets="random", seed=3)
    again = look_forward_batch(records[:6], gallery, retriever, max_rounds=1, targets="random", seed=3)
    assert [t["rounds"] for t in drawn] == [t["rounds"] for t in again]  # seeded per record and round
    for record, b, d in zip(records[:6], best, drawn, strict=True):
        (chosen,) = d["rounds"]
        qa = next(qa for qa in record.qas if qa.question == chosen["question"])
        text = f"{record.initial_description} {clean_answer(qa.answer)}"
        rank = target_ranks_from_scores(
            gallery.scores(retriever.encode_text([text])), torch.tensor([record.pid]), gallery.pids
        )
        assert chosen["rank_after"] == int(rank[0]) >= b["rounds"][0]["rank_after"]
    assert any(d["rounds"][0]["question"] != b["rounds"][0]["question"] for b, d in zip(best, drawn, strict=True))


def test_soft_targets_are_drawn_in_proportion_to_the_reciprocal_rank(world) -> None:
    ranks, rng = {7: 1, 3: 2, 5: 4}, random.Random(0)
    draws = [_choose(ranks, "soft", rng) for _ in range(7000)]
    assert all(draw.rank == ranks[draw.qa_index] for draw in draws)
    shares = {k: v / len(draws) for k, v in Counter(draw.qa_index for draw in draws).items()}
    assert shares == pytest.approx({7: 4 / 7, 3: 2 / 7, 5: 1 / 7}, abs=0.02)
    records, retriever, gallery = world
    best = look_forward_batch(records[:6], gallery, retriever, max_rounds=1)
    soft = look_forward_batch(records[:6], gallery, retriever, max_rounds=1, targets="soft", seed=2)
    for b, d in zip(best, soft, strict=True):
        assert d["rounds"][0]["rank_after"] >= b["rounds"][0]["rank_after"]


def best_rank_by_brute_force(record, turns: list[dict[str, str]], gallery, retriever) -> int:
    """The target's best rank over every pair the dialogue has not used, each appended in turn."""
    text_of = retrieval_text_reader()
    dialogue = Dialogue(record.initial_description, [Turn(t["question"], t["answer"]) for t in turns])
    asked = {turn.question for turn in dialogue.turns}
    texts = [
        text_of(Dialogue(dialogue.initial, [*dialogue.turns, Turn(qa.question, qa.answer)]))
        for qa in record.qas
        if qa.question not in asked and clean_answer(qa.answer) and clean_answer(qa.answer) not in text_of(dialogue)
    ]
    scores = gallery.scores(retriever.encode_text(texts))
    return int(target_ranks_from_scores(scores, torch.full((len(texts),), record.pid), gallery.pids).min())


def test_explored_dialogues_leave_the_target_path_and_keep_best_targets(world) -> None:
    """With explore = 1 the dialogue goes on with another pair, and each round's target is still the best one for
    the dialogue it starts from."""
    records, retriever, gallery = world
    explored = look_forward_batch(records[:6], gallery, retriever, max_rounds=3, explore=1.0, seed=1)
    left = 0
    for record, target in zip(records[:6], explored, strict=True):
        for previous, current in zip(target["rounds"], target["rounds"][1:], strict=False):
            left += current["dialogue"][-1]["question"] != previous["question"]
            assert current["rank_after"] == best_rank_by_brute_force(record, current["dialogue"], gallery, retriever)
    assert left > 0
    with pytest.raises(ValueError, match="explore"):
        look_forward_batch(records[:1], gallery, retriever, max_rounds=1, explore=1.5)


def test_a_folder_resumes_only_with_its_own_settings(world, tmp_path: Path) -> None:
    records, retriever, gallery = world
    build_targets(retriever, gallery, records[:2], tmp_path, max_rounds=2, budget=12)
    with pytest.raises(ValueError, match=r"settings\.json: targets were built with"):
        build_targets(retriever, gallery, records[:2], tmp_path, max_rounds=2, budget=12, targets="random")


class LastUnusedQuestion:
    """A stand-in questioner: asks the last bank question of each dialogue's record not yet asked, reworded."""

    name = "last-unused"
    uses_ground_truth = False

    def ask(self, ctx) -> list[str | None]:
        asked = []
        for record, dialogue in zip(ctx.queries, ctx.dialogues, strict=True):
            left = [qa.question for qa in record.qas if qa.question not in dialogue.asked]
            asked.append("  " + left[-1].upper() if left else None)
        return asked


def test_a_policy_leads_the_dialogues_and_each_target_is_best_for_its_state(world) -> None:
    """On-policy targets: the dialogue goes on with the pair the policy's question asks about (matched by
    attribute, whatever the wording), and each round's target is still the best pair from that state."""
    records, retriever, gallery = world
    led = look_forward_batch(records[:6], gallery, retriever, max_rounds=3, policy=LastUnusedQuestion())
    for record, target in zip(records[:6], led, strict=True):
        for previous, current in zip(target["rounds"], target["rounds"][1:], strict=False):
            asked = {t["question"] for t in previous["dialogue"]}
            expected = [qa.question for qa in record.qas if qa.question not in asked][-1]
            assert current["dialogue"][-1]["question"] == expected
            assert current["rank_after"] == best_rank_by_brute_force(record, current["dialogue"], gallery, retriever)
    with pytest.raises(ValueError, match="explore and policy"):
        look_forward_batch(records[:1], gallery, retriever, max_rounds=1, explore=0.5, policy=LastUnusedQuestion())


def test_a_question_the_bank_cannot_answer_goes_on_with_a_random_tried_pair(world) -> None:
    records, _, _ = world
    record = records[0]
    tried = {0: 5, 3: 2, 4: 9}
    hat = next(i for i, qa in enumerate(record.qas) if parse_question(qa.question).attribute == "hat")
    assert answered_pair(record, "What did the person have on the head?", {**tried, hat: 1}, random.Random(0)) == hat
    draws = {answered_pair(record, question, tried, random.Random(s)) for s in range(40) for question in ("blah", None)}
    assert draws == set(tried)


def test_target_attribute_counts_tally_each_rounds_target_attributes(world, tmp_path: Path) -> None:
    records, retriever, gallery = world
    build_targets(retriever, gallery, records[:6], tmp_path, max_rounds=3, batch_size=4, budget=12)
    expected: dict[int, Counter] = {}
    with tarfile.open(next(tmp_path.glob("train-*.tar"))) as tar:
        for name in tar.getnames():
            if name.endswith(".json"):
                for r in json.loads(tar.extractfile(name).read())["rounds"]:
                    expected.setdefault(r["round"], Counter())[parse_question(r["question"]).attribute] += 1
    assert target_attribute_counts(tmp_path) == {t: dict(c) for t, c in expected.items()}
    assert sum(sum(c.values()) for c in expected.values()) == 18, "3 rounds of 6 records, every target readable"


def test_expected_targets_ask_what_the_annotated_rule_chooses_and_follow_its_path(world) -> None:
    """The teacher is the expected-gain rule with the gallery's annotations: round 1's target is the bank pair about
    the attribute it chooses, and round 2 starts from that pair's answer (its path, not the oracle's)."""
    records, retriever, gallery = world
    taught = look_forward_batch(records[:6], gallery, retriever, max_rounds=2, targets="expected")
    text_of = retrieval_text_reader()
    dialogues = [Dialogue(r.initial_description) for r in records[:6]]
    scores = gallery.scores(retriever.encode_text([text_of(d) for d in dialogues]))
    ctx = RoundContext(1, records[:6], dialogues, scores, gallery, retriever, text_of)
    chosen = TEACHER.choose(ctx)
    oracle = look_forward_batch(records[:6], gallery, retriever, max_rounds=1)
    for target, attribute, best in zip(taught, chosen, oracle, strict=True):
        first, second = target["rounds"]
        assert parse_question(first["question"]).attribute == attribute
        assert first["rank_after"] >= best["rounds"][0]["rank_after"]  # the oracle's pair is the best by definition
        assert second["dialogue"] == [{"question": first["question"], "answer": first["answer"]}]
    assert any(t["rounds"][0]["question"] != o["rounds"][0]["question"] for t, o in zip(taught, oracle, strict=True)), (
        "the teacher is not the oracle"
    )


def test_the_teachers_pairs_alone_are_looked_forward_unless_none_can_be_tried(world) -> None:
    """The expected targets try only the pairs about the teacher's attribute where the bank has one, and every pair
    where it has none (no attribute, one the bank lacks, or its pair already in the text): the same choice as
    trying every pair first."""
    records, retriever, gallery = world
    text_of = retrieval_text_reader()
    dialogues = [Dialogue(r.initial_description) for r in records[:8]]
    stated = records[3].qas[0]  # its answer already in the text: the teacher's pair cannot be tried
    dialogues[3] = Dialogue(f"{records[3].initial_description} {clean_answer(stated.answer)}")
    scores = gallery.scores(retriever.encode_text([text_of(d) for d in dialogues]))
    ctx = RoundContext(1, records[:8], dialogues, scores, gallery, retriever, text_of)
    taught = TEACHER.choose(ctx)
    taught[1] = None
    taught[2] = "not-an-attribute"
    taught[3] = parse_question(stated.question).attribute
    full, short = look_forward_ranks(ctx), _taught_ranks(ctx, taught)
    for record, attribute, every, some in zip(records[:8], taught, full, short, strict=True):
        assert (pairs_about(record, every, attribute) or every) == (pairs_about(record, some, attribute) or some)
    assert sum(map(len, short)) < sum(map(len, full))  # fewer pairs were tried


def test_gallery_groups_cut_the_split_by_identity_and_targets_stay_inside_their_group(world, tmp_path: Path) -> None:
    records, retriever, gallery = world  # 12 people, 2 images each
    groups = gallery_groups(gallery, records, 5)
    assert [sorted(set(g.pids.tolist())) for g, _ in groups] == [list(range(0, 5)), list(range(5, 10)), [10, 11]]
    for group, members in groups:
        assert {r.pid for r in members} <= set(group.pids.tolist()) and len(group) == 2 * len(set(group.pids.tolist()))
    assert sorted(r.key for _, m in groups for r in m) == sorted(r.key for r in records)
    assert gallery_groups(gallery, records, None) == [(gallery, list(records))]
    summary = build_targets(retriever, gallery, records, tmp_path, max_rounds=1, budget=20, gallery_ids=5)
    assert summary["gallery_ids"] == 5
    group_of_key = {key: n for n, (g, _) in enumerate(groups) for key in g.keys}
    group_of_pid = {pid: n for n, (g, _) in enumerate(groups) for pid in g.pids.tolist()}
    with tarfile.open(sorted(tmp_path.glob("train-*.tar"))[0]) as tar:
        for record in records:
            (first,) = json.loads(tar.extractfile(f"{record.key}.json").read())["rounds"]
            mine = group_of_pid[record.pid]
            assert len(first["candidates"]) == len(groups[mine][0])  # its group's whole gallery (budget 20)
            assert {group_of_key[key] for key in first["candidates"]} == {mine}
            assert first["rank_after"] <= len(groups[mine][0])


def test_a_bad_gallery_size_fails_before_the_folder_records_its_settings(world, tmp_path: Path) -> None:
    records, retriever, gallery = world
    with pytest.raises(ValueError, match="gallery_ids must be at least 1, got 0"):
        build_targets(retriever, gallery, records[:2], tmp_path, max_rounds=1, gallery_ids=0)
    assert not (tmp_path / "train.settings.json").exists()  # so a rerun with a good size is not refused
    build_targets(retriever, gallery, records[:2], tmp_path, max_rounds=1, gallery_ids=5)


def test_forked_processes_write_the_same_targets_as_one_thread(world, tmp_path: Path) -> None:
    records, retriever, gallery = world
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # what each forked process uses: the same arithmetic, so the same bytes
    try:
        build_targets(retriever, gallery, records[:8], tmp_path / "one", max_rounds=6, batch_size=2, budget=12)
    finally:
        torch.set_num_threads(threads)
    build_targets(retriever, gallery, records[:8], tmp_path / "two", max_rounds=6, batch_size=2, budget=12,
                  processes=2)  # fmt: skip

    def shards(folder: Path) -> list[bytes]:
        return [p.read_bytes() for p in sorted(folder.glob("train-*.tar"))]

    assert shards(tmp_path / "one") == shards(tmp_path / "two") != []
    with pytest.raises(ValueError, match="processes must be at least 1"):
        build_targets(retriever, gallery, records[:4], tmp_path / "none", max_rounds=2, batch_size=2, processes=0)

"""ICL's SFT data: hard negatives by hand, balanced Yes/No pairs in the ChatReID conversation format."""

from __future__ import annotations

import torch

from ireid.chatreid.conversations import check_conversation
from ireid.core.gallery import closest_other_people
from ireid.icl.perception import anchor_prompt
from ireid.icl.sft import ANCHOR_TASK, VQA_TASK, sft_conversations
from tests.helpers import make_record


def test_hard_negatives_are_the_most_similar_other_people() -> None:
    scores = torch.tensor([[0.9, 0.8, 0.7, 0.6], [0.1, 0.5, 0.3, 0.2]])
    negatives = closest_other_people(scores, torch.tensor([0, 1]), torch.tensor([0, 1, 2, 1]), k=2)
    assert negatives == [[1, 2], [2, 0]]
    assert closest_other_people(scores, torch.tensor([0, 1]), torch.tensor([0, 0, 0, 0]), k=3)[0] == []


def test_conversations_are_balanced_valid_and_ask_what_thi_asks() -> None:
    truth = {"gender": "man", "upper_type": "t-shirt", "upper_colour": "red", "bag": "backpack"}
    records = [make_record(i, attributes=truth) for i in range(8)]  # pids 0-3, two images each
    negatives = {r.key: [x.key for x in records if x.pid != r.pid][:3] for r in records}
    samples = list(sft_conversations(records, negatives, samples=400, vqa_share=0.25, seed=1))
    assert samples == list(sft_conversations(records, negatives, samples=400, vqa_share=0.25, seed=1))
    by_key = {r.key: r for r in records}
    answers = {"Yes": 0, "No": 0}
    vqa = 0
    for key, sample in samples:
        check_conversation(sample, key, "test")
        user, assistant = sample["messages"]
        assert user["content"][0] == {"type": "image", "index": 0}
        answer = assistant["content"][0]["text"]
        if sample["task"] == ANCHOR_TASK:
            text = next(r.captions[0] for r in records if anchor_prompt(r.captions[0]) == user["content"][1]["text"])
            query = next(r for r in records if r.captions[0] == text)
            shown = by_key[sample["images"][0]]
            assert (shown.pid == query.pid) == (answer == "Yes")
            assert answer == "Yes" or shown.key in negatives[query.key]
            answers[answer] += 1
        else:
            assert sample["task"] == VQA_TASK and answer
            vqa += 1
    assert 60 <= vqa <= 140 and abs(answers["Yes"] - answers["No"]) <= 30

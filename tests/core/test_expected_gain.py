"""The expected-gain rule's arithmetic: places in the gallery and the expected fall of log-rank, by hand."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch

from ireid.core.expected_gain import (
    ExpectedGainRule,
    expected_log_rank_gain,
    gallery_ranks,
    one_hot_answers,
    value_statements,
)
from ireid.core.records import Record
from ireid.core.vocabulary.attributes import ATTRIBUTES


def test_one_hot_answers_are_uniform_where_the_value_is_unknown() -> None:
    answers = one_hot_answers(torch.tensor([2, -1, 0]), 3)
    expected = torch.tensor([[0.0, 0.0, 1.0], [1 / 3, 1 / 3, 1 / 3], [1.0, 0.0, 0.0]])
    assert torch.allclose(answers.T, expected)


def test_gallery_ranks_are_mid_ranks_in_the_whole_gallery() -> None:
    scores = torch.tensor([0.5, 0.2, 0.5, 0.1])
    assert gallery_ranks(scores, torch.tensor([0, 1, 2, 3])).tolist() == [1.5, 3.0, 1.5, 4.0]
    assert gallery_ranks(scores, torch.tensor([3, 0])).tolist() == [4.0, 1.5], "places in the gallery, not the pool"
    many = torch.randint(0, 6, (3, 40)).float()  # many ties
    pool = torch.tensor([5, 0, 17])
    brute = (
        1.0
        + (many[:, None, :] > many[:, pool, None]).sum(-1)
        + 0.5 * ((many[:, None, :] == many[:, pool, None]).sum(-1) - 1)
    )
    assert torch.equal(gallery_ranks(many, pool), brute)


def test_expected_log_rank_gain_by_hand() -> None:
    before = torch.tensor([0.3, 0.2, 0.1, 0.25])  # gallery places 1, 3, 4, 2; the last one is outside the pool
    pool = torch.tensor([0, 1, 2])
    after = torch.tensor([[0.1, 0.9, 0.0, 0.5], [0.5, 0.0, 0.9, 0.5]])  # places (3, 1, 4) and (2.5, 4, 1): a tie
    posterior = torch.tensor([0.2, 0.3, 0.5])
    answer = torch.softmax(after[:, pool] / 0.5, dim=0)
    log = torch.log(torch.tensor([[3.0, 1.0, 4.0], [2.5, 4.0, 1.0]]))
    gain = torch.log(torch.tensor([1.0, 3.0, 4.0]))[None, :] - log
    expected = (posterior * (answer * gain).sum(0)).sum()
    got = expected_log_rank_gain(before, after, pool, posterior, answer)
    assert got.item() == pytest.approx(expected.item(), abs=1e-6)
    # several questions at once, the shorter padded with an answer row of zeros: each gets its own gain
    other = torch.tensor([[0.0, 0.2, 0.3, 0.1], [9.0, 9.0, 9.0, 9.0]])
    other_answer = torch.tensor([[1.0, 1.0, 1.0], [0.0, 0.0, 0.0]])
    both = expected_log_rank_gain(
        before, torch.stack([after, other]), pool, posterior, torch.stack([answer, other_answer])
    )
    alone = expected_log_rank_gain(before, other[:1], pool, posterior, other_answer[:1])
    assert both.tolist() == pytest.approx([expected.item(), alone.item()], abs=1e-6)


def _ctx(attributes: list[dict[str, str]], embeddings: torch.Tensor, statements: dict[str, list[float]]):
    """The parts of a round that `stated_likelihood` reads: the gallery's records and embeddings, and a retriever
    whose text embedding of each value statement is given."""
    records = [
        Record(key=f"r{i}", pid=i, split="test", source="synthetic", attributes=a) for i, a in enumerate(attributes)
    ]
    gallery = SimpleNamespace(records=records, embeddings=embeddings)
    retriever = SimpleNamespace(encode_text=lambda texts: torch.tensor([statements[t] for t in texts]))
    return SimpleNamespace(gallery=gallery, retriever=retriever)


def test_stated_likelihood_floors_each_contradicted_statement_at_the_contradiction_weight() -> None:
    """With annotations: per stated attribute a candidate keeps 1 where it agrees, `contradiction` where it contradicts
    and, where its record does not annotate the attribute, the floored chance 1 / V of showing the stated value;
    multiplied over what the text states."""
    ctx = _ctx(
        [
            {"gender": "woman", "upper_colour": "red"},
            {"gender": "man", "upper_colour": "red"},
            {"gender": "man", "upper_colour": "black"},
            {"gender": "woman"},
        ],
        torch.zeros(4, 2),
        {},
    )
    rule = ExpectedGainRule(annotated=True, contradiction=0.1)
    text = "It was a woman. Her top was red."
    got = rule.stated_likelihood(ctx, text, "woman", torch.tensor([0, 1, 2, 3]), {})
    unknown = 0.1 + 0.9 / len(ATTRIBUTES["upper_colour"].values)
    assert got.tolist() == pytest.approx([1.0, 0.1, 0.01, unknown])
    assert rule.stated_likelihood(ctx, text, "woman", torch.tensor([2, 0]), {}).tolist() == pytest.approx([0.01, 1.0])


def test_stated_likelihood_reads_unannotated_candidates_through_the_value_statements() -> None:
    """Without annotations, P(stated value | candidate) is the softmax over the attribute's value statements of their
    scores against the candidate's image, at `answer_temperature`; floored as above."""
    man, woman = value_statements("gender", None)
    images = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    ctx = _ctx([{}, {}], images, {man: [0.2, 0.1], woman: [0.1, 0.4]})
    rule = ExpectedGainRule(answer_temperature=0.5, contradiction=0.2)
    p_woman = torch.softmax(torch.tensor([[0.2, 0.1], [0.1, 0.4]]) @ images.T / 0.5, dim=0)[1]
    got = rule.stated_likelihood(ctx, "It was a woman.", None, torch.tensor([0, 1]), {})
    assert got.tolist() == pytest.approx((0.2 + 0.8 * p_woman).tolist(), abs=1e-6)


def test_contradiction_outside_the_unit_interval_is_refused() -> None:
    with pytest.raises(ValueError, match="contradiction"):
        ExpectedGainRule(contradiction=1.5)

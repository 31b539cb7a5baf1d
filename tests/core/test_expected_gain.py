"""The expected-gain rule's arithmetic: places in the gallery and the expected fall of log-rank, by hand."""

from __future__ import annotations

import pytest
import torch

from ireid.core.expected_gain import expected_log_rank_gain, gallery_ranks, one_hot_answers


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

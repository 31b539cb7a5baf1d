"""Gumbel-top-k subset sampling: exact subsets, gradients, the distribution of Eq. 7–8, the τ schedule."""

import itertools
import math

import pytest
import torch

from ireid.selector.gumbel import TemperatureSchedule, gumbel_topk


def subset_probability(weights: list[float], subset: tuple[int, ...]) -> float:
    """Eq. 8: the sum over orderings of the sequential without-replacement probabilities of Eq. 7."""
    total = 0.0
    for order in itertools.permutations(subset):
        p, left = 1.0, sum(weights)
        for i in order:
            p *= weights[i] / left
            left -= weights[i]
        total += p
    return total


def test_exact_subset_probability_by_hand():
    # {0, 1} from (0.5, 0.25, 0.15, 0.10): 0.5 · 0.25/0.5 + 0.25 · 0.5/0.75
    assert subset_probability([0.5, 0.25, 0.15, 0.10], (0, 1)) == pytest.approx(0.25 + 0.5 / 3)
    pairs = itertools.combinations(range(4), 2)
    assert sum(subset_probability([0.5, 0.25, 0.15, 0.10], s) for s in pairs) == pytest.approx(1.0)


@pytest.mark.parametrize("hard_from", ["keys", "relaxed"])
def test_hard_samples_are_exactly_c_distinct_real_candidates(hard_from):
    generator = torch.Generator().manual_seed(0)
    log_weights = torch.randn(500, 10, generator=generator)
    lengths = torch.randint(3, 11, (500, 1), generator=generator)
    mask = torch.arange(10) < lengths
    khot = gumbel_topk(log_weights, 3, 0.1, mode="hard", mask=mask, generator=generator, hard_from=hard_from)
    assert set(khot.unique().tolist()) == {0.0, 1.0}
    assert torch.equal(khot.sum(dim=1), torch.full((500,), 3.0))
    assert not khot[~mask].any(), "a padded slot was chosen"


def test_soft_sample_sums_to_c_and_leaves_padding_empty():
    mask = torch.tensor([[True, True, True, False], [True, True, True, True]])
    khot = gumbel_topk(torch.zeros(2, 4), 2, 0.5, mode="soft", mask=mask, generator=torch.Generator().manual_seed(1))
    assert torch.allclose(khot.sum(dim=1), torch.full((2,), 2.0)) and khot[0, 3] == 0


@pytest.mark.parametrize("mode", ["soft", "hard"])
def test_gradients_reach_the_scores(mode):
    scores = torch.randn(4, 6, requires_grad=True)
    mask = torch.ones(4, 6, dtype=torch.bool)
    mask[:, -1] = False
    khot = gumbel_topk(scores, 2, 0.5, mode=mode, mask=mask, generator=torch.Generator().manual_seed(0))
    (khot * torch.arange(6.0)).sum().backward()
    assert torch.isfinite(scores.grad).all() and scores.grad[:, :-1].abs().sum() > 0
    assert torch.equal(scores.grad[:, -1], torch.zeros(4)), "padded slots get no gradient"


def test_same_generator_seed_same_sample():
    scores = torch.randn(3, 8)
    a = gumbel_topk(scores, 3, generator=torch.Generator().manual_seed(7))
    b = gumbel_topk(scores, 3, generator=torch.Generator().manual_seed(7))
    assert torch.equal(a, b)


def test_without_noise_hard_is_the_plain_top_k():
    scores = torch.tensor([[0.1, 2.0, -1.0, 1.5, 0.3]])
    assert gumbel_topk(scores, 2, noise=False).tolist() == [[0.0, 1.0, 0.0, 1.0, 0.0]]


def test_hard_subset_frequencies_match_eq_7_8():
    weights = [0.5, 0.25, 0.15, 0.10]
    n = 20_000
    log_weights = torch.tensor(weights).log().expand(n, 4)
    khot = gumbel_topk(log_weights, 2, 1.0, mode="hard", generator=torch.Generator().manual_seed(0))
    chosen = [tuple(row.nonzero().flatten().tolist()) for row in khot]
    for subset in itertools.combinations(range(4), 2):
        p = subset_probability(weights, subset)
        frequency = sum(c == subset for c in chosen) / n
        assert abs(frequency - p) < 4 * math.sqrt(p * (1 - p) / n), (subset, frequency, p)


def test_too_few_real_candidates_is_an_error():
    mask = torch.tensor([[True, True, False, False]])
    with pytest.raises(ValueError, match="as few as 2"):
        gumbel_topk(torch.zeros(1, 4), 3, mask=mask)


def test_temperature_schedule_is_linear_from_1_to_0_1():
    schedule = TemperatureSchedule(steps=100)
    assert schedule(0) == 1.0 and schedule(100) == pytest.approx(0.1) and schedule(50) == pytest.approx(0.55)
    assert schedule(1000) == pytest.approx(0.1) and schedule(-3) == 1.0
    with pytest.raises(ValueError):
        TemperatureSchedule(steps=0)


def test_reference_hard_choice_agrees_with_the_exact_sample_at_moderate_temperature():
    log_weights = torch.log_softmax(torch.randn(2000, 8, generator=torch.Generator().manual_seed(0)), dim=1)
    keys = gumbel_topk(log_weights, 3, 0.5, generator=torch.Generator().manual_seed(1), hard_from="keys")
    relaxed = gumbel_topk(log_weights, 3, 0.5, generator=torch.Generator().manual_seed(1), hard_from="relaxed")
    assert torch.equal(keys, relaxed)

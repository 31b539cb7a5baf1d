"""The selector Transformer: log-probabilities over real candidates, set semantics, selection, sampling."""

import pytest
import torch

from ireid.core.protocols import CandidateSelector
from ireid.selector.model import Selector


def tiny(**kw) -> Selector:
    torch.manual_seed(0)
    return Selector(**{"dim": 16, "layers": 2, "heads": 2, "input_dim": 8, **kw}).eval()


def inputs(batch: int = 3, k: int = 7, dim: int = 8, lengths: tuple[int, ...] = (7, 5, 4)):
    generator = torch.Generator().manual_seed(0)
    dialogue, candidates = torch.randn(batch, dim, generator=generator), torch.randn(batch, k, dim, generator=generator)
    mask = torch.arange(k) < torch.tensor(lengths).unsqueeze(1)
    return dialogue, candidates, mask


def test_reference_sizes_by_default():
    selector = Selector()
    layer = selector.encoder.layers[0]
    assert len(selector.encoder.layers) == 5 and layer.self_attn.num_heads == 8
    assert layer.linear1.out_features == 2048 and not layer.norm_first
    assert isinstance(selector.project, torch.nn.Identity) and selector.score.bias is None
    assert isinstance(tiny().project, torch.nn.Linear), "input_dim != dim is projected"


def test_log_softmax_over_real_candidates_only():
    dialogue, candidates, mask = inputs()
    log_probs = tiny()(dialogue, candidates, mask)
    assert torch.allclose(log_probs.exp().sum(dim=1), torch.ones(3))
    assert torch.isneginf(log_probs[~mask]).all() and torch.isfinite(log_probs[mask]).all()


def test_padded_content_does_not_change_scores():
    dialogue, candidates, mask = inputs()
    selector = tiny()
    changed = candidates.clone()
    changed[~mask] = 100.0
    assert torch.allclose(selector(dialogue, candidates, mask), selector(dialogue, changed, mask), atol=1e-6)


def test_candidates_are_a_set_permuting_them_permutes_scores():
    dialogue, candidates, mask = inputs(lengths=(7, 7, 7))
    selector = tiny()
    perm = torch.randperm(7, generator=torch.Generator().manual_seed(3))
    assert torch.allclose(
        selector(dialogue, candidates, mask)[:, perm], selector(dialogue, candidates[:, perm], mask), atol=1e-5
    )


def test_dialogue_changes_the_scores():
    dialogue, candidates, mask = inputs()
    selector = tiny()
    assert not torch.allclose(selector(dialogue, candidates, mask), selector(-dialogue, candidates, mask))


def test_select_is_plain_top_c_and_keeps_rank_1():
    dialogue, candidates, mask = inputs()
    free = tiny(keep_first=False)
    assert isinstance(free, CandidateSelector)
    expected = free(dialogue, candidates, mask).topk(3, dim=1).indices
    assert torch.equal(free.select(dialogue, candidates, mask, 3), expected)

    kept = tiny(keep_first=True)
    picked = kept.select(dialogue, candidates, mask, 3)
    assert picked.shape == (3, 3) and (picked[:, 0] == 0).all()
    rest = kept(dialogue, candidates[:, 1:], mask[:, 1:]).topk(2, dim=1).indices + 1
    assert torch.equal(picked[:, 1:], rest), "the other c − 1 are the top of the remaining candidates"
    assert all(mask[b, picked[b]].all() and len(set(picked[b].tolist())) == 3 for b in range(3))
    assert kept.select(dialogue, candidates, mask, 1).tolist() == [[0], [0], [0]]


def test_sample_is_a_differentiable_k_hot():
    dialogue, candidates, mask = inputs()
    selector = tiny(keep_first=True).train()
    khot = selector.sample(dialogue, candidates, mask, 3, temperature=0.5, generator=torch.Generator().manual_seed(0))
    assert torch.equal(khot.sum(dim=1), torch.full((3,), 3.0)) and (khot[:, 0] == 1).all()
    assert not khot[~mask].any()
    (khot * torch.randn(3, 7)).sum().backward()
    assert selector.score.weight.grad is not None and selector.score.weight.grad.abs().sum() > 0


def test_bad_inputs_are_clear_errors():
    dialogue, candidates, mask = inputs()
    selector = tiny()
    with pytest.raises(ValueError, match="as few as 4"):
        selector.select(dialogue, candidates, mask, 5)
    with pytest.raises(ValueError, match="bool"):
        selector(dialogue, candidates, mask.float())
    with pytest.raises(ValueError, match=r"dialogue \[B, D\]"):
        selector(dialogue[0], candidates, mask)
    shifted = mask.clone()
    shifted[0, 0] = False
    with pytest.raises(ValueError, match="rank-1 slot"):
        selector.select(dialogue, candidates, shifted, 2)
    with pytest.raises(ValueError, match="at least one real candidate"):
        selector(dialogue, candidates, torch.zeros_like(mask))

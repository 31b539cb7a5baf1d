"""IRR masking statistics and the cross-modal MLM head (shapes, and that it really reads the image)."""

from __future__ import annotations

import math

import pytest
import torch

from ireid.retriever.mlm import IGNORE_INDEX, CrossModalMLM, mask_tokens, mlm_loss

PAD, BOS, EOS, MASK = 0, 1, 2, 3
SPECIAL = {PAD, BOS, EOS}
VOCAB = 1000


def make_batch(rows: int, length: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """BOS, words, EOS, then padding; lengths vary by row."""
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(4, VOCAB, (rows, length), generator=g)
    mask = torch.zeros(rows, length, dtype=torch.long)
    lengths = torch.randint(3, length + 1, (rows,), generator=g)
    for r, n in enumerate(lengths.tolist()):
        ids[r, 0], ids[r, n - 1] = BOS, EOS
        ids[r, n:] = PAD
        mask[r, :n] = 1
    return ids, mask


def run_mask(ids: torch.Tensor, mask: torch.Tensor, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    return mask_tokens(ids, mask, SPECIAL, MASK, VOCAB, torch.Generator().manual_seed(seed))


def test_masking_statistics():
    ids, mask = make_batch(3000, 64)
    masked, labels = run_mask(ids, mask)
    eligible = (mask == 1) & (ids > EOS)
    chosen = labels != IGNORE_INDEX
    assert chosen.sum() / eligible.sum() == pytest.approx(0.15, abs=0.005)
    n = chosen.sum().item()
    to_mask = (masked[chosen] == MASK).sum().item() / n
    unchanged = (masked[chosen] == ids[chosen]).sum().item() / n
    replaced = 1 - to_mask - unchanged
    assert to_mask == pytest.approx(0.8, abs=0.01)
    assert replaced == pytest.approx(0.1 * (1 - 1 / VOCAB), abs=0.01)  # a random token may equal the original
    assert unchanged == pytest.approx(0.1, abs=0.01)
    assert torch.equal(labels[chosen], ids[chosen])
    assert torch.equal(masked[~chosen], ids[~chosen])  # nothing outside the chosen positions changes


def test_never_masks_special_or_padding_and_random_tokens_are_not_special():
    ids, mask = make_batch(500, 32)
    masked, labels = run_mask(ids, mask)
    special = (mask == 0) | (ids <= EOS)
    assert (labels[special] == IGNORE_INDEX).all()
    assert torch.equal(masked[special], ids[special])
    replaced = (labels != IGNORE_INDEX) & (masked != MASK) & (masked != ids)
    assert replaced.any() and (masked[replaced] > MASK).all()


def test_every_row_has_a_masked_token_even_short_ones():
    ids, mask = make_batch(400, 4)  # 1–2 words per row: often none chosen at 15 %
    masked, labels = run_mask(ids, mask)
    assert ((labels != IGNORE_INDEX).sum(dim=1) >= 1).all()
    forced_or_chosen = masked == MASK
    assert forced_or_chosen.any(dim=1).float().mean() > 0.8


def test_rows_without_maskable_tokens_are_rejected():
    ids = torch.tensor([[BOS, EOS, PAD], [BOS, 7, EOS]])
    with pytest.raises(ValueError, match=r"rows \[0\]"):
        run_mask(ids, (ids != PAD).long())


def test_masking_is_deterministic_with_a_seeded_generator():
    ids, mask = make_batch(64, 20)
    first, second, other = run_mask(ids, mask, seed=5), run_mask(ids, mask, seed=5), run_mask(ids, mask, seed=6)
    assert torch.equal(first[0], second[0]) and torch.equal(first[1], second[1])
    assert not torch.equal(first[1], other[1])


def test_cross_modal_head_shapes_and_projections():
    model = CrossModalMLM(width=64, vocab_size=50, layers=2, text_dim=48, image_dim=80)
    text, image = torch.randn(3, 7, 48), torch.randn(3, 11, 80)
    padding = torch.zeros(3, 7, dtype=torch.bool)
    padding[0, 5:] = True
    logits = model(text, image, text_padding_mask=padding)
    assert logits.shape == (3, 7, 50) and torch.isfinite(logits).all()
    positions = torch.zeros(3, 7, dtype=torch.bool)
    positions[0, 1] = positions[2, 3] = True
    picked = model(text, image, text_padding_mask=padding, positions=positions)
    assert torch.allclose(picked, logits[positions], atol=1e-5)
    assert isinstance(CrossModalMLM(width=64, vocab_size=50).text_proj, torch.nn.Identity)
    assert len(CrossModalMLM(width=64, vocab_size=50).transformer.layers) == 4


def test_init_scales_follow_clip():
    model = CrossModalMLM(width=256, vocab_size=100, layers=4)
    block = model.transformer.layers[0]
    assert block.self_attn.in_proj_weight.std().item() == pytest.approx(256**-0.5, rel=0.05)
    assert block.linear2.weight.std().item() == pytest.approx(256**-0.5 * 8**-0.5, rel=0.05)
    assert block.linear1.weight.std().item() == pytest.approx(512**-0.5, rel=0.05)
    assert model.transformer.layers[0].self_attn.num_heads == 4


def test_mlm_loss_ignores_unlabelled_positions():
    logits = torch.randn(2, 3, 5)
    labels = torch.full((2, 3), IGNORE_INDEX)
    labels[1, 2] = 4
    expected = -torch.log_softmax(logits[1, 2], dim=-1)[4]
    assert mlm_loss(logits, labels).item() == pytest.approx(expected.item(), rel=1e-6)


@pytest.fixture
def one_thread():
    """Tiny models: intra-op threads only add synchronisation (10× slower on a busy 2-core machine)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _train(image_states: torch.Tensor, text_states: torch.Tensor, labels: torch.Tensor, steps: int = 100):
    torch.manual_seed(0)
    model = CrossModalMLM(width=32, vocab_size=16, layers=2, heads=2, text_dim=20, image_dim=24)
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    for _ in range(steps):
        loss = mlm_loss(model(text_states, image_states), labels)
        opt.zero_grad()
        loss.backward()
        opt.step()
    return model, loss.item()


def test_head_learns_words_that_only_the_image_shows(one_thread):
    # The masked word (position 2) is the class of the image; every caption's token states are identical,
    # so the only way to predict the word is through the image path.
    g = torch.Generator().manual_seed(0)
    classes = torch.arange(64) % 16
    prototypes = torch.randn(16, 24, generator=g)
    image_states = prototypes[classes].unsqueeze(1) + 0.1 * torch.randn(64, 4, 24, generator=g)
    text_states = torch.randn(1, 6, 20, generator=g).expand(64, 6, 20)
    labels = torch.full((64, 6), IGNORE_INDEX)
    labels[:, 2] = classes
    chance = math.log(16)

    model, trained = _train(image_states, text_states, labels)
    assert trained < 0.1 * chance
    with torch.no_grad():
        shuffled = mlm_loss(model(text_states, image_states[torch.randperm(64, generator=g)]), labels).item()
    assert shuffled > 0.5 * chance  # the trained head's answer follows the image it is shown
    _, blind = _train(torch.zeros_like(image_states), text_states, labels)
    assert blind > 0.95 * chance  # without image information nothing beats the label prior

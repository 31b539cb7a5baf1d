"""Joint training: the selector's hard k-hot picks exactly c images and learns from the questioner's NLL alone."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from ireid.questioner.data import QuestionerData
from ireid.questioner.module import QuestionerModule
from tests.questioner.conftest import EMBEDDING_DIM, TINY


def test_hard_khot_selects_c_images_and_the_nll_reaches_the_selector_scores(
    tiny_world: Path, lookforward: Path, selector_checkpoint: Path
) -> None:
    module = QuestionerModule(
        tokenizer=str(tiny_world), tokenizer_vocab=600, overrides=TINY, stage="joint",
        selector_checkpoint=str(selector_checkpoint), num_images=4, tau_steps=10,
    )  # fmt: skip
    assert module.hparams.selector["input_dim"] == EMBEDDING_DIM and module.selector.keep_first
    data = QuestionerData(str(lookforward), str(tiny_world), stage="joint", num_images=4, batch_size=3)
    data.setup("fit")
    batch = next(iter(data.val_dataloader()))

    scores: list[torch.Tensor] = []

    def keep_scores(_module: torch.nn.Module, _inputs: object, log_probs: torch.Tensor) -> None:
        log_probs.retain_grad()
        scores.append(log_probs)

    hook = module.selector.register_forward_hook(keep_scores)
    images, weights = module.choose_images(batch, sample=True)
    assert [len(row) for row in images] == [4, 4, 4] and all(torch.allclose(w, torch.ones(4)) for w in weights)
    loss, _ = module.questioner.nll(batch["dialogues"], images, batch["questions"], [0] * 3, weights)
    loss.backward()
    hook.remove()
    (log_probs,) = scores
    assert log_probs.grad is not None and log_probs.grad.abs().sum() > 0  # the scores of the slots it chooses
    assert module.selector.score.weight.grad.abs().sum() > 0

    khot = module.selector.sample(batch["dialogue"], batch["candidates"], batch["mask"], 4, temperature=0.3)
    assert khot.sum(dim=1).tolist() == [4.0, 4.0, 4.0] and set(khot.detach().unique().tolist()) == {0.0, 1.0}
    assert khot[:, 0].tolist() == [1.0, 1.0, 1.0]  # the retriever's rank-1 is always shown

    evaluated, no_weights = module.choose_images(batch, sample=False)
    assert no_weights is None and all(row[0] == full[0] for row, full in zip(evaluated, batch["images"], strict=True))


def test_joint_needs_a_selector(tiny_world: Path) -> None:
    with pytest.raises(ValueError, match="selector_checkpoint"):
        QuestionerModule(tokenizer=str(tiny_world), tokenizer_vocab=600, overrides=TINY, stage="joint")

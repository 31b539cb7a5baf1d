"""A frozen tower's states are computed once per encoded image, change nothing the model learns, and stay in budget."""

from __future__ import annotations

import io

import pytest
import torch
from PIL import Image

from ireid.questioner.model import QuestionerModel
from ireid.questioner.tower_cache import TowerCache
from tests.questioner.test_inference import dialogues


def encoded(n: int, seed: int = 0) -> list[bytes]:
    out = []
    for i in range(n):
        buffer = io.BytesIO()
        Image.effect_noise((64, 128), 30 + 7 * i + seed).convert("RGB").save(buffer, format="PNG")
        out.append(buffer.getvalue())
    return out


class Counting:
    """A stand-in tower: row i of the states is the image's first byte, so each row says which image it came from."""

    def __init__(self) -> None:
        self.seen = 0

    def __call__(self, images: list) -> torch.Tensor:
        self.seen += len(images)
        return torch.stack(
            [torch.full((2, 3), float(image[0] if isinstance(image, bytes) else -1)) for image in images]
        )


def test_states_are_computed_once_per_image_and_come_back_in_order() -> None:
    cache, tower = TowerCache(1 << 20), Counting()
    a, b, c = b"\x01a", b"\x02b", b"\x03c"
    first = cache.states([a, b, a], tower)
    assert tower.seen == 2, "an image repeated within a batch is computed once"
    again = cache.states([c, a, b], tower)
    assert tower.seen == 3 and (cache.hits, cache.misses) == (3, 3)
    assert first[:, 0, 0].tolist() == [1.0, 2.0, 1.0] and again[:, 0, 0].tolist() == [3.0, 1.0, 2.0]


def test_the_least_recently_used_state_goes_first_and_decoded_images_are_never_kept() -> None:
    row = 2 * 3 * 4  # bytes of one [2, 3] float32 state
    cache, tower = TowerCache(2 * row), Counting()
    a, b, c = b"\x01a", b"\x02b", b"\x03c"
    cache.states([a, b], tower)
    cache.states([a], tower)  # a is now the most recent
    cache.states([c], tower)  # over budget: b goes
    assert list(cache.entries) == [a, c] and cache.bytes == 2 * row
    picture = Image.new("RGB", (4, 4))
    cache.states([picture, picture], tower)
    assert tower.seen == 5 and list(cache.entries) == [a, c]
    off = TowerCache(0)
    off.states([a, a], tower)
    assert tower.seen == 7 and not off.entries
    with pytest.raises(ValueError, match="tower cache size"):
        TowerCache(-1)


def test_a_frozen_tower_cached_gives_the_same_loss_and_gradients(questioner) -> None:
    model: QuestionerModel = questioner.questioner
    images = [encoded(3), encoded(2, seed=1), encoded(1)]
    questions = ["what color is the top?", "is there a bag?", "what shoes?"]
    projector = model.hf.model.multi_modal_projector

    def loss_and_grad() -> tuple[torch.Tensor, torch.Tensor]:
        model.zero_grad()
        loss, _ = model.nll(dialogues(), images, questions, [0, 0, 0])
        loss.backward()
        return loss.detach(), projector.linear_1.weight.grad.clone()

    model.tower_cache = TowerCache(0)
    plain = loss_and_grad()
    model.tower_cache = TowerCache(64 << 20)
    filled, hit = loss_and_grad(), loss_and_grad()
    assert model.tower_cache.misses == 6 and model.tower_cache.hits == 6
    for loss, grad in (filled, hit):
        assert torch.allclose(loss, plain[0], atol=1e-6) and torch.allclose(grad, plain[1], atol=1e-6)


def test_a_tower_that_trains_is_never_cached(tiny_questioner: QuestionerModel) -> None:
    assert not tiny_questioner.tower_is_frozen(), "the tiny model from scratch trains its own tower"
    tiny_questioner.tower_cache = TowerCache(64 << 20)
    tiny_questioner.nll(dialogues()[:1], [encoded(2)], ["what color is the top?"], [0])
    assert not tiny_questioner.tower_cache.entries

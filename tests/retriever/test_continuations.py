"""continuations.py: texts sharing a beginning encode as `encode_text` does, with the beginning run once."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from ireid.core.expected_gain import encode_continuations as encode_through
from ireid.retriever import inference
from ireid.retriever.continuations import _pooled_positions, _shared_lengths, encode_continuations
from ireid.retriever.model import RetrieverNet, RetrieverSettings, build_retriever_net

PREFIXES = [
    "a woman in a red top and blue jeans",
    "a man",
    "someone",  # no endings: a dialogue whose attributes are all covered
    "a young man with short black hair, a grey hoodie and a black backpack, walking on the street",
]
ENDINGS = [
    ["She wears black sneakers.", "She wears white sneakers.", "She carries a bag."],
    ["He wears glasses."],
    [],
    ["He wears a cap.", "He wears a hat with a logo on it.", "He wears glasses.", "He holds an umbrella."],
]


def joined(prefixes: list[str], endings: list[list[str]]) -> list[str]:
    return [f"{p} {e}" for p, group in zip(prefixes, endings, strict=True) for e in group]


@pytest.fixture(scope="module")
def net(tiny_world: Path) -> RetrieverNet:
    return build_retriever_net(RetrieverSettings(str(tiny_world), losses="sdm", text_length=64)).eval()


@pytest.mark.parametrize("batch_size", [2, 256])
def test_continuations_encode_as_the_joined_texts(net: RetrieverNet, batch_size: int):
    with torch.no_grad():
        whole = net.encode_text(joined(PREFIXES, ENDINGS))
    shared = encode_continuations(net, PREFIXES, ENDINGS, batch_size=batch_size)
    assert shared.shape == whole.shape and shared.dtype == torch.float32
    assert torch.allclose(shared, whole, atol=1e-5)


def test_the_shared_run_is_the_prefix_and_stops_before_the_pooled_token(net: RetrieverNet):
    texts = joined(PREFIXES, ENDINGS)
    ids = net.tokenize(texts)["input_ids"]
    owner = torch.tensor([g for g, group in enumerate(ENDINGS) for _ in group])
    first = torch.tensor([0, 3, len(texts) - 1, 4])
    pooled = _pooled_positions(ids, net.features.clip.text_model.eos_token_id)
    shared = _shared_lengths(ids, owner, first, pooled).tolist()
    prefix_tokens = [len(net.tokenizer(p)["input_ids"]) - 1 for p in PREFIXES]  # the start token and the words
    assert shared[0] == prefix_tokens[0] + 1  # "She wears" is shared by two endings but not the third
    assert shared[1] == int(pooled[3])  # one ending: everything before its end-of-text token
    assert shared[2] == 0 and shared[3] == prefix_tokens[3] + 1  # no endings; "He" begins every ending


def test_texts_cut_at_the_text_length_still_match(net: RetrieverNet):
    long = " ".join(["a person in a long red coat with a black bag"] * 8)  # beyond the 64 tokens
    prefixes, endings = [long, "a man"], [["She wears glasses.", "She wears a cap."], ["He wears a hat."]]
    with torch.no_grad():
        whole = net.encode_text(joined(prefixes, endings))
    assert torch.allclose(encode_continuations(net, prefixes, endings), whole, atol=1e-5)


def test_retrievers_with_and_without_the_shared_encoder_agree(net: RetrieverNet):
    class JoinedOnly:  # a retriever with encode_text alone: the expected-gain rule joins the texts itself
        def encode_text(self, texts):
            return inference.encode_text(net, texts)

        def encode_images(self, images):
            raise NotImplementedError

    module = inference.ModuleRetriever(net)
    assert torch.allclose(
        encode_through(module, PREFIXES, ENDINGS), encode_through(JoinedOnly(), PREFIXES, ENDINGS), atol=1e-5
    )


def test_bad_calls_are_refused(net: RetrieverNet):
    with pytest.raises(ValueError, match="2 prefixes but 1"):
        encode_continuations(net, ["a", "b"], [["c"]])
    with pytest.raises(ValueError, match="at least one ending"):
        encode_continuations(net, ["a"], [[]])
    with pytest.raises(ValueError, match="batch_size"):
        encode_continuations(net, ["a"], [["b"]], batch_size=0)


def test_a_left_padding_tokenizer_falls_back_to_the_joined_texts(net: RetrieverNet):
    """Positions count from the first token only with right padding; otherwise the joined texts are encoded."""
    net.tokenizer.padding_side = "left"
    try:
        with torch.no_grad():
            whole = net.encode_text(joined(PREFIXES, ENDINGS))
        assert torch.allclose(encode_continuations(net, PREFIXES, ENDINGS), whole, atol=1e-6)
    finally:
        net.tokenizer.padding_side = "right"

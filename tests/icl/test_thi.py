"""ICL's THI: Algorithm 1's round rules, Eq. 6 by hand, the merge, its fallbacks and the perceptions."""

from __future__ import annotations

import io
from collections.abc import Sequence

import pytest
import torch
from PIL import Image

from ireid.core.attribute_net import AttributeNet
from ireid.core.images import ImageStore
from ireid.core.vocabulary.parse import parse_description
from ireid.icl.anchors import locate_anchors
from ireid.icl.evaluation import query_texts
from ireid.icl.perception import AnnotatedPerception, CachedPerception, MLLMPerception, NetPerception
from ireid.icl.rerank import thi_scores
from ireid.icl.thi import THI, MLLMAggregator, THISettings, join_answers
from tests.helpers import make_record


class Scripted:
    """A perception whose Yes/No answers are scripted per (text, key); records every batch it is asked."""

    name = "scripted"
    uses_ground_truth = False

    def __init__(self, answers: dict[tuple[str, str], bool | None], descriptions: dict[str, list[str]] | None = None):
        self.answers = answers
        self.descriptions = descriptions or {}
        self.batches: list[list[tuple[str, str]]] = []
        self.described: list[str] = []

    def locate(self, texts: Sequence[str], keys: Sequence[str]) -> list[bool | None]:
        self.batches.append(list(zip(texts, keys, strict=True)))
        return [self.answers.get((t, k), False) for t, k in zip(texts, keys, strict=True)]

    def describe(self, keys: Sequence[str]) -> list[list[str]]:
        self.described += keys
        return [self.descriptions.get(k, []) for k in keys]


def test_algorithm_1_round_rules() -> None:
    texts = ["sure-yes", "sure-no", "late-yes", "dissimilar-top1-yes", "never", "unreadable-then-yes"]
    candidates = [[f"{t}/{k}" for k in range(5)] for t in texts]
    answers = {
        ("sure-yes", "sure-yes/0"): True,
        ("late-yes", "late-yes/2"): True,
        ("dissimilar-top1-yes", "dissimilar-top1-yes/0"): True,
        ("unreadable-then-yes", "unreadable-then-yes/0"): None,
        ("unreadable-then-yes", "unreadable-then-yes/1"): True,
    }
    perception = Scripted(answers)
    search = locate_anchors(texts, candidates, [0.8, 0.8, 0.3, 0.3, 0.3, 0.3], perception, xi=0.5, rounds=5)

    # Similar top-1: only it is asked, Yes makes it the anchor. Dissimilar: go down until the first Yes, which
    # is the anchor unless it was the top-1 itself.
    assert search.anchors == [0, None, 2, None, None, 1]
    assert [len(a) for a in search.answers] == [1, 1, 3, 1, 5, 2]
    assert search.calls == 13 and search.unreadable == 1
    # Algorithm 1 loops rounds outside queries: one batch per round, holding every query still searching.
    assert [len(b) for b in perception.batches] == [6, 3, 2, 1, 1]


def test_rounds_stop_at_k_and_at_short_candidate_lists() -> None:
    perception = Scripted({("q", "c2"): True})
    search = locate_anchors(["q"], [["c0", "c1", "c2"]], [0.1], perception, xi=0.5, rounds=2)
    assert search.anchors == [None] and search.calls == 2
    search = locate_anchors(["q"], [["c0", "c1"]], [0.1], Scripted({}), xi=0.5, rounds=5)
    assert search.calls == 2
    with pytest.raises(ValueError, match="at least one round"):
        locate_anchors(["q"], [["c0"]], [0.1], perception, xi=0.5, rounds=0)


def test_eq6_by_hand() -> None:
    base = torch.tensor([[0.9, 0.5, 0.1], [0.2, 0.3, 0.4]])
    refined = torch.tensor([[0.2, 0.6, 0.4]])  # the first query's merged text; its anchor is image 2
    out = thi_scores(base, refined, torch.tensor([2, -1]), lam=0.8)
    # S' = 0.8·S + 0.2·S̄ with S̄ = refined, and 1 at the anchor: [0.72+0.04, 0.40+0.12, 0.08+0.20].
    assert torch.allclose(out[0], torch.tensor([0.76, 0.52, 0.28]))
    assert torch.equal(out[1], base[1])  # no anchor: the base ranking
    with pytest.raises(ValueError, match="λ must lie"):
        thi_scores(base, refined, torch.tensor([2, -1]), lam=1.5)
    with pytest.raises(ValueError, match="1 anchored queries"):
        thi_scores(base, torch.zeros(2, 3), torch.tensor([2, -1]), lam=0.8)


def test_join_keeps_the_query_and_adds_new_sentences_within_the_limit() -> None:
    answers = ["a man in a red coat.", "He wore boots", "I don't know.", "x " * 9]
    merged = join_answers("A man in a red coat.", answers, 9)
    assert merged == "A man in a red coat. He wore boots."


class Encoder:
    """Embeds a text on three axes by which colour words it holds."""

    def __call__(self, texts: Sequence[str]) -> torch.Tensor:
        rows = torch.tensor([[float(c in t) for c in ("red", "blue", "boots")] for t in texts]) + 1e-3
        return torch.nn.functional.normalize(rows, dim=1)


def test_thi_reranks_with_the_anchor_first_and_counts_everything() -> None:
    keys = ["a", "b", "c"]
    embeddings = torch.nn.functional.normalize(torch.tensor([[1.0, 0, 0], [0, 1.0, 0], [0, 0, 1.0]]), dim=1)
    base = torch.tensor([[0.6, 0.5, 0.4], [0.9, 0.1, 0.0]])  # query 0 is dissimilar to its top-1 (ξ = 0.7)
    perception = Scripted({("red?", "b"): True, ("blue!", "a"): False}, {"b": ["He wore blue.", "He had boots."]})
    thi = THI(perception, Encoder(), THISettings(xi=0.7, lam=0.5, aggregation="join"))
    result = thi.rerank(["red?", "blue!"], base, keys, embeddings)

    assert result.anchors.tolist() == [1, -1] and result.merged == ["red? He wore blue. He had boots.", None]
    assert result.scores[0].argmax() == 1  # the anchor moves to the top
    assert torch.equal(result.scores[1], base[1])
    assert result.counts == {
        "queries": 2, "anchored": 1, "locate_calls": 3, "unreadable_replies": 0, "described_images": 1,
        "aggregation_calls": 0, "empty_merged_queries": 0, "overlong_merged_queries": 0, "interacted": 1,
    }  # fmt: skip
    # λ = 1 gives back the base ranking, without asking again.
    assert torch.equal(result.with_lambda(base, 1.0), base)


class Model:
    """A `VisionLanguageModel` that answers from a script and records its prompts."""

    def __init__(self, replies: Sequence[str] = ("He wore blue.", "I don't know."), verdict: bool | None = True):
        self.prompts: list[str] = []
        self.images: list[Image.Image | None] = []
        self.replies, self.verdict = replies, verdict

    def judge(self, prompts: Sequence[str], images: Sequence[Image.Image]) -> list[bool | None]:
        self.prompts += prompts
        return [self.verdict] * len(prompts)

    def reply(self, prompts: Sequence[str], images: Sequence[Image.Image | None], max_new_tokens: int) -> list[str]:
        self.prompts += prompts
        self.images += images
        return [self.replies[i % len(self.replies)] for i in range(len(prompts))]


def test_an_empty_or_overlong_merge_keeps_the_base_ranking_and_is_counted() -> None:
    keys, embeddings = ["a", "b"], torch.eye(2)
    base = torch.tensor([[0.9, 0.1], [0.8, 0.2]])
    perception = Scripted({("q0", "a"): True, ("q1", "a"): True}, {"a": ["x"]})
    for reply, field in (("", "empty_merged_queries"), ("word " * 70, "overlong_merged_queries")):
        aggregator = MLLMAggregator(Model(replies=[reply]), max_words=60, max_new_tokens=8)
        thi = THI(perception, Encoder(), THISettings(xi=0.5), aggregator)
        result = thi.rerank(["q0", "q1"], base, keys, embeddings)
        assert result.counts[field] == 2 and result.counts["interacted"] == 0
        assert torch.equal(result.scores, base)
    with pytest.raises(ValueError, match="needs a vision-language model"):
        THI(perception, Encoder(), THISettings(aggregation="mllm"))


def test_xi_as_a_quantile_of_the_top1_similarities() -> None:
    base = torch.tensor([[0.9, 0.0], [0.8, 0.0], [0.7, 0.0]])
    thi = THI(Scripted({}), Encoder(), THISettings(xi=0.5, xi_from="quantile", aggregation="join"))
    assert thi.rerank(["a", "b", "c"], base, ["x", "y"], torch.eye(2)).xi == pytest.approx(0.8)
    with pytest.raises(ValueError, match="quantile must lie"):
        THISettings(xi=2.0, xi_from="quantile")


def png(colour: str) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (8, 16), colour).save(buffer, format="PNG")
    return buffer.getvalue()


def test_mllm_perception_formats_the_prompts_and_drops_unknown_answers() -> None:
    store = ImageStore({"k": png("red")})
    model = Model()
    perception = MLLMPerception(model, store, questions=["What colour?", "Any hat?"])
    assert perception.locate(["a man in red"], ["k"]) == [True]
    assert model.prompts[0].startswith("Can this text accurately describe the image?")
    assert '"a man in red"' in model.prompts[0]
    assert perception.describe(["k", "k"]) == [["He wore blue."], ["He wore blue."]]
    assert model.prompts[1:] == ["What colour?", "Any hat?"] * 2 and all(i is not None for i in model.images)


def test_annotated_perception_reads_the_attributes_and_the_cache_asks_once() -> None:
    truth = {"gender": "woman", "hair_colour": "grey", "hair_length": "shoulder-length", "upper_type": "t-shirt",
             "upper_colour": "grey", "lower_type": "short skirt", "lower_colour": "brown", "bag": "none"}  # fmt: skip
    record = make_record(0, attributes=truth)
    inner = AnnotatedPerception({record.key: record})
    perception = CachedPerception(inner)
    assert perception.uses_ground_truth
    texts = ["It was a woman in a grey T-shirt.", "It was a woman in a red T-shirt.", "It was a man."]
    assert perception.locate(texts, [record.key] * 3) == [True, False, False]
    described = perception.describe([record.key, record.key])
    assert described[0] == described[1] and described[0][0] == "The person is a woman."
    # Every stated sentence reads back as the truth it was made from.
    assert parse_description(" ".join(described[0])).items() <= truth.items()
    with pytest.raises(KeyError, match="no gallery record"):
        perception.describe(["missing"])


def test_query_texts_name_the_record_and_field_that_cannot_be_a_query() -> None:
    records = [make_record(0), make_record(1, initial_description="")]
    assert query_texts(records[:1], "caption") == ["a person in colour 0"]
    with pytest.raises(ValueError, match=r"record 'src/img_0001': field 'initial_description' is empty"):
        query_texts(records, "initial")
    with pytest.raises(ValueError, match="not one of"):
        query_texts(records, "fine")


class ReadingNet(AttributeNet):
    """An attribute net whose readings are given per image colour: red images wear a grey T-shirt (0.9 sure), any
    other a red one (0.95); it counts the images it reads."""

    def __init__(self) -> None:
        super().__init__({"gender": ["man", "woman"], "upper_colour": ["grey", "red"], "upper_type": ["t-shirt"]})
        self.seen = 0

    def probabilities(self, images, batch_size: int = 256) -> dict[str, torch.Tensor]:
        self.seen += len(images)
        red = torch.tensor([float(im.getpixel((0, 0)) == (255, 0, 0)) for im in images])[:, None]
        return {"gender": torch.tensor([[0.45, 0.55]]).repeat(len(images), 1),
                "upper_colour": red * torch.tensor([[0.9, 0.1]]) + (1 - red) * torch.tensor([[0.05, 0.95]]),
                "upper_type": torch.ones(len(images), 1)}  # fmt: skip


def test_net_perception_says_no_only_to_a_confident_mismatch_and_states_what_it_reads_surely() -> None:
    store = ImageStore({key: png(colour) for key, colour in (("r", "red"), ("b", "blue"))})
    net = ReadingNet()
    perception = NetPerception(net, store, contradiction=0.1, min_confidence=0.5)
    assert not perception.uses_ground_truth
    texts = ["It was a woman in a grey T-shirt.", "It was a man in a grey T-shirt.", "It was a man in a red T-shirt."]
    # red image: grey read at 0.9, red at 0.1 (not under the floor); blue image: grey at 0.05, a confident No
    assert perception.locate(texts, ["r", "r", "r"]) == [True, True, True]
    assert perception.locate(texts, ["b", "b", "b"]) == [False, False, True]
    assert perception.locate(["It was a man in a purple T-shirt."], ["b"]) == [True]  # a value it never learnt
    described = perception.describe(["r"])[0]
    read = {"gender": "woman", "upper_colour": "grey", "upper_type": "t-shirt"}
    assert parse_description(" ".join(described)) == read
    assert net.seen == 2  # each image read once, however often it is asked about
    with pytest.raises(ValueError, match="contradiction must be in"):
        NetPerception(net, store, contradiction=1.0)

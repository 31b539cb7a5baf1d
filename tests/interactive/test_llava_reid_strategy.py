"""The llava-reid strategy: which candidate images reach the questioner, in which order, from which pool."""

from __future__ import annotations

import io

import pytest
import torch
from PIL import Image

from ireid.core.gallery import Gallery
from ireid.core.images import ImageStore
from ireid.core.protocols import Dialogue
from ireid.core.rounds import RoundContext, retrieval_text_reader
from ireid.interactive.strategies.llava_reid import LlavaReID
from tests.helpers import make_record

N = 12


def grey(level: int) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (8, 16), (level, level, level)).save(buffer, format="PNG")
    return buffer.getvalue()


class SeenQuestioner:
    """Records the images it is shown and asks about their grey levels (the gallery index × 10)."""

    def __init__(self) -> None:
        self.shown: list[list[int]] = []

    def ask(self, dialogues, candidates):
        self.shown = [[image.getpixel((0, 0))[0] // 10 for image in row] for row in candidates]
        return [f"What about {row}?" for row in self.shown]


class LastPicker:
    """A selector that keeps the first candidate and takes the last ones of the pool (asserting what it is given)."""

    def __init__(self) -> None:
        self.pool_sizes: list[int] = []

    def select(self, dialogue, candidates, mask, num_select):
        assert dialogue.shape == (candidates.shape[0], candidates.shape[2]) and mask.all()
        self.pool_sizes.append(candidates.shape[1])
        k = candidates.shape[1]
        rest = torch.arange(k - num_select + 1, k)
        return torch.cat([torch.zeros(1, dtype=torch.long), rest]).expand(candidates.shape[0], -1)


class FixedText:
    def encode_text(self, texts):
        return torch.nn.functional.normalize(torch.ones(len(texts), 3), dim=1)


@pytest.fixture
def setup():
    records = [make_record(i, split="test") for i in range(N)]
    store = ImageStore({r.key: grey(10 * i) for i, r in enumerate(records)})
    embeddings = torch.nn.functional.normalize(torch.randn(N, 3, generator=torch.Generator().manual_seed(0)), dim=1)
    gallery = Gallery([r.key for r in records], torch.tensor([r.pid for r in records]), embeddings, records)
    scores = torch.linspace(0, 1, N).expand(2, -1).clone()  # the last gallery image ranks first
    scores[1] = scores[1].flip(0)  # for the second query the first ranks first

    def context(t: int) -> RoundContext:
        dialogues = [Dialogue(records[0].initial_description), Dialogue(records[1].initial_description)]
        return RoundContext(t, records[:2], dialogues, scores, gallery, FixedText(), retrieval_text_reader())  # type: ignore[arg-type]

    return store, context


def test_top_k_shows_the_four_best_ranked_best_first(setup) -> None:
    store, context = setup
    questioner = SeenQuestioner()
    questions = LlavaReID(questioner, store, candidates="top-k").ask(context(1))
    assert questioner.shown == [[11, 10, 9, 8], [0, 1, 2, 3]]
    assert questions[0] == "What about [11, 10, 9, 8]?"


def test_selector_reads_the_round_pool_and_its_picks_reach_the_questioner_in_rank_order(setup) -> None:
    store, context = setup
    questioner, selector = SeenQuestioner(), LastPicker()
    strategy = LlavaReID(questioner, store, selector, budget=10)
    strategy.ask(context(2))  # pool ceil(10 / 2) = 5: ranks 1..5
    assert selector.pool_sizes == [5]
    assert questioner.shown == [[11, 9, 8, 7], [0, 2, 3, 4]]


def test_selector_mode_needs_a_selector_and_methods_are_checked(setup) -> None:
    store, _ = setup
    with pytest.raises(ValueError, match="needs a trained selector"):
        LlavaReID(SeenQuestioner(), store)
    with pytest.raises(ValueError, match="unknown candidate method 'best'"):
        LlavaReID(SeenQuestioner(), store, candidates="best")


def test_image_store_names_a_missing_key() -> None:
    store = ImageStore({"a": grey(0)}, where="gallery")
    assert store.load(["a"])[0].size == (8, 16)
    with pytest.raises(KeyError, match="gallery: no image with key 'b'"):
        store.load(["b"])


def test_llava_reid_strategies_need_their_checkpoints() -> None:
    from ireid.app.strategies import build_strategy
    from ireid.interactive.config import EvalConfig

    with pytest.raises(ValueError, match=r"llava_reid\.questioner_ckpt"):
        build_strategy("llava-reid:top-k", EvalConfig())
    with pytest.raises(ValueError, match=r"llava_reid\.random_targets_ckpt"):
        build_strategy("llava-reid:random-targets", EvalConfig())
    with pytest.raises(ValueError, match="llava-reid:uniform"):
        build_strategy("llava-reid:best", EvalConfig())


def test_a_strategy_results_depend_on_its_own_section_and_the_common_settings() -> None:
    import dataclasses

    from ireid.app.strategies import strategy_settings
    from ireid.interactive.config import EvalConfig

    config = EvalConfig()
    retrained = dataclasses.replace(
        config, llava_reid=dataclasses.replace(config.llava_reid, questioner_ckpt="retrained.ckpt")
    )
    for name in ("llava-reid", "llava-reid:top-k", "llava-reid:random-targets"):
        assert strategy_settings(name, retrained) != strategy_settings(name, config)
        assert strategy_settings(name, retrained)["llava_reid"]["questioner_ckpt"] == "retrained.ckpt"
    for name in ("expected-gain", "plugir", "oracle-lookforward", "random"):
        assert strategy_settings(name, retrained) == strategy_settings(name, config)
    other_retriever = dataclasses.replace(config, retriever_ckpt="other.ckpt")
    assert strategy_settings("random", other_retriever) != strategy_settings("random", config)
    assert strategy_settings("expected-gain", config)["expected_gain"] == dataclasses.asdict(config.expected_gain)


def test_selection_table_has_table_3_rows_in_the_paper_order() -> None:
    from ireid.interactive.harness import StrategyResult
    from ireid.interactive.report import selection_table

    def result(name: str, r1: float, bri: float) -> StrategyResult:
        rounds = [{"R1": 1.0, "R5": 2.0, "R10": 3.0, "mAP": 1.0}, {"R1": r1, "R5": r1 + 10, "R10": r1 + 20, "mAP": 0}]
        return StrategyResult(name, False, rounds, bri)

    results = [result("llava-reid", 50, 1.5), result("llava-reid:top-k", 40, 2.0), result("random", 9, 3.0)]
    lines = selection_table(results).splitlines()
    assert lines[2:] == [
        "| Candidate | top-k | 40.00 | 50.00 | 60.00 | 2.000 |",
        "| Candidate | selector | 50.00 | 60.00 | 70.00 | 1.500 |",
        "| Question | look-forward | 50.00 | 60.00 | 70.00 | 1.500 |",
    ]

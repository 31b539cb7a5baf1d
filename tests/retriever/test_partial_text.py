"""Partial descriptions: the training sampler, the fixed evaluation view and how batches carry them."""

import random
import re

import pytest
from PIL import Image

from ireid.core.loader import Sample
from ireid.core.records import QA
from ireid.retriever.data import (
    EvalSampleTransform,
    TrainSampleTransform,
    collate_eval,
    collate_train,
    eval_partial_texts,
    partial_statements,
    partial_text,
)
from tests.helpers import make_record

INITIAL = "I saw a woman in a red top."
FACTS = [f"Fact {i}." for i in range(6)]


def chosen_facts(text: str) -> list[str]:
    assert text.startswith(INITIAL)
    rest = text[len(INITIAL) :].strip()
    found = re.findall(r"Fact \d\.", rest)
    assert rest == " ".join(found), "nothing but whole statements follows the initial description"
    return found


def test_partial_text_is_the_initial_description_then_a_subset_of_the_statements():
    rng = random.Random(0)
    draws = [chosen_facts(partial_text(INITIAL, FACTS, rng)) for _ in range(400)]
    assert all(len(set(d)) == len(d) and set(d) <= set(FACTS) for d in draws)
    assert {len(d) for d in draws} == set(range(len(FACTS) + 1)), "every size from 0 to all is drawn"
    full = [d for d in draws if len(d) == len(FACTS)]
    assert any(d != FACTS for d in full), "statements come in random order"


def test_partial_text_is_deterministic_for_a_seed_and_takes_a_fixed_count():
    a = [partial_text(INITIAL, FACTS, random.Random(7)) for _ in range(3)]
    b = [partial_text(INITIAL, FACTS, random.Random(7)) for _ in range(3)]
    assert a == b
    assert len(chosen_facts(partial_text(INITIAL, FACTS, random.Random(1), count=3))) == 3
    assert partial_text(INITIAL, FACTS, random.Random(1), count=0) == INITIAL


def test_partial_statements_are_the_answers_else_the_sub_captions():
    qas = [QA(question="Hat?", answer="No, she wore a cap.", qtype="yes_no")]
    record = make_record(0, qas=qas, sub_captions=["She wore a cap."])
    assert partial_statements(record, "answers") == ["No, she wore a cap."]
    assert partial_statements(record, "sub_captions") == ["She wore a cap."]
    assert partial_statements(make_record(0, qas=[], sub_captions=["S."]), "answers") == ["S."]


def test_eval_partial_view_is_half_the_sub_captions_fixed_per_record():
    record = make_record(3, initial_description=INITIAL, sub_captions=FACTS[:5])
    (text,) = eval_partial_texts(record, seed=0)
    assert len(chosen_facts(text)) == 2 and eval_partial_texts(record, seed=0) == [text]
    other_seeds = {eval_partial_texts(record, seed=s)[0] for s in range(20)}
    assert len(other_seeds) > 1, "the seed picks the half"
    assert eval_partial_texts(make_record(3, sub_captions=[]), seed=0) == []
    assert eval_partial_texts(make_record(3, initial_description="", sub_captions=FACTS), seed=0) == []


def sample_of(record):
    return Sample(record.key, record, Image.new("RGB", (64, 128), (120, 40, 40)), "mem://")


def test_train_transform_mixes_partial_and_fine_texts_and_marks_them():
    qas = [QA(question=f"Q{i}?", answer=fact, qtype="descriptive") for i, fact in enumerate(FACTS)]
    record = make_record(0, initial_description=INITIAL, qas=qas, attributes={"hat": "cap"})
    always = TrainSampleTransform((32, 16), "fine", rda=False, seed=0, partial_text_prob=1.0)
    pair = always(sample_of(record))
    assert not pair.full_text and chosen_facts(pair.text) is not None and pair.attributes == {"hat": "cap"}
    half = TrainSampleTransform((32, 16), "fine", rda=False, seed=0, partial_text_prob=0.5)
    pairs = [half(sample_of(record)) for _ in range(200)]
    fine = [p for p in pairs if p.full_text]
    assert 60 < len(fine) < 140 and all(p.text == record.fine_description for p in fine)
    batch = collate_train(pairs[:4])
    assert batch["full_text"].tolist() == [p.full_text for p in pairs[:4]] and batch["keys"] == [record.key] * 4
    with pytest.raises(ValueError, match="partial_text_prob"):
        TrainSampleTransform((32, 16), "fine", rda=False, seed=0, partial_text_prob=1.5)


def test_zero_partial_probability_keeps_the_random_stream():
    record = make_record(0, captions=["a", "b", "c", "d"], fine_description="")
    plain = TrainSampleTransform((32, 16), "captions", rda=False, seed=3)
    zero = TrainSampleTransform((32, 16), "captions", rda=False, seed=3, partial_text_prob=0.0)
    assert [plain(sample_of(record)).text for _ in range(20)] == [zero(sample_of(record)).text for _ in range(20)]


def test_eval_batches_carry_the_partial_view():
    with_view = make_record(0, initial_description=INITIAL, sub_captions=FACTS)
    without = make_record(2, sub_captions=[])
    transform = EvalSampleTransform((32, 16), "fine", seed=0)
    batch = collate_eval([transform(sample_of(with_view)), transform(sample_of(without))])
    assert batch["partial_texts"] == eval_partial_texts(with_view, 0) and batch["partial_pids"].tolist() == [0]
    assert batch["initial_pids"].tolist() == [0, 1] and batch["fine_pids"].tolist() == [0, 1]


def test_training_images_without_erasing_or_crop_are_the_image_or_its_mirror():
    import torch

    image = Image.effect_noise((16, 32), 60).convert("RGB")
    sample = Sample(key="k", record=make_record(0), image=image, url="u")
    plain = EvalSampleTransform((32, 16), "fine")(sample).image
    transform = TrainSampleTransform((32, 16), "fine", rda=False, seed=0, erase_prob=0.0, crop_pad=0)
    outputs = [transform(sample).image for _ in range(20)]
    same = [torch.equal(x, plain) for x in outputs]
    mirrored = [torch.equal(x, plain.flip(-1)) for x in outputs]
    assert all(s or m for s, m in zip(same, mirrored, strict=True)) and any(same) and any(mirrored)


def test_partial_pairs_give_every_image_a_second_partial_text():
    qas = [QA(question=f"Q{i}?", answer=fact, qtype="descriptive") for i, fact in enumerate(FACTS)]
    record = make_record(0, initial_description=INITIAL, qas=qas)
    paired = TrainSampleTransform((32, 16), "fine", rda=False, seed=0, partial_pairs=True)
    pairs = [paired(sample_of(record)) for _ in range(50)]
    assert all(p.full_text and p.text == record.fine_description for p in pairs), "the main text stays fine"
    assert all(chosen_facts(p.partial) is not None for p in pairs)
    assert len({p.partial for p in pairs}) > 10, "a new partial description each time"
    bare = make_record(1, initial_description="", qas=qas)
    batch = collate_train([pairs[0], paired(sample_of(bare))])
    assert batch["partial_texts"] == [pairs[0].partial, bare.fine_description], "no initial: its own text again"
    unpaired = TrainSampleTransform((32, 16), "fine", rda=False, seed=0)(sample_of(record))
    assert collate_train([unpaired])["partial_texts"] is None


def test_rda_share_mixes_recombined_and_original_texts():
    groups = [["He wore a red top.", "His top was red."], ["No hat.", "He wore no hat."]]
    record = make_record(0, rda_groups=groups)
    original = record.fine_description
    half = TrainSampleTransform((32, 16), "fine", rda=True, seed=0, rda_share=0.5)
    texts = [half(sample_of(record)).text for _ in range(200)]
    assert 60 < texts.count(original) < 140 and all(t == original or "top" in t for t in texts)
    always = TrainSampleTransform((32, 16), "fine", rda=True, seed=0)
    assert original not in {always(sample_of(record)).text for _ in range(50)}
    with pytest.raises(ValueError, match="rda_share"):
        TrainSampleTransform((32, 16), "fine", rda=True, seed=0, rda_share=2.0)

"""The synthetic world: determinism, splits, text shape (Interactive-PEDES style), ambiguity, resume, pictures."""

from __future__ import annotations

import argparse
import dataclasses
import io
import re
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from ireid.core.loader import iter_samples, load_records
from ireid.core.shards import DatasetWriter, ShardError
from ireid.core.synthetic import cli, contact_sheet, world
from ireid.core.synthetic.identities import sample_identities
from ireid.core.synthetic.render import render
from ireid.core.synthetic.shots import identity_look, plan_shot
from ireid.core.synthetic.text import mentioned_attributes
from ireid.core.vocabulary.attributes import ATTRIBUTE_NAMES, ATTRIBUTES, attribute_tuple, bare, phrase

TINY = dict(ids_train=6, ids_val=2, ids_test=6, images_per_id=3, image_size=(64, 32), shard_size=10, progress=False)


def build(out: Path, seed: int = 3, **kw) -> dict:
    return world.build_world(out, seed=seed, **(TINY | kw))


def shard_files(root: Path) -> dict[str, bytes]:
    """Everything but stats.json (which records timings)."""
    return {p.name: p.read_bytes() for p in sorted(root.iterdir()) if p.name != world.STATS_FILE}


def says(text: str, words: str) -> bool:
    return re.search(rf"(?<![\w-]){re.escape(words)}(?![\w-])", text, flags=re.IGNORECASE) is not None


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("tiny")
    build(root)
    return root


@pytest.fixture(scope="module")
def default_test_records() -> list:
    """Records of the default world's test identities, texts only (no rendering)."""
    identities = world.plan_identities(0, **{k: world.DEFAULTS[k] for k in ("ids_train", "ids_val", "ids_test")})
    test = [i for i in identities if i.split == "test"]
    return world.world_records(0, test, world.DEFAULTS["images_per_id"])


# ---------------------------------------------------------------------------------------------- shards


def test_same_seed_gives_identical_bytes(tiny: Path, tmp_path: Path) -> None:
    build(tmp_path)
    assert shard_files(tmp_path) == shard_files(tiny)
    assert any(name.endswith(".tar") for name in shard_files(tiny))


def test_rendering_processes_change_no_byte(tmp_path: Path) -> None:
    """Enough images for the process pool: two processes write exactly what one does."""
    bigger = dict(ids_train=40, ids_val=4, ids_test=6)
    assert 50 * TINY["images_per_id"] >= world.MIN_PARALLEL
    build(tmp_path / "one", workers=1, **bigger)
    build(tmp_path / "two", workers=2, **bigger)
    assert shard_files(tmp_path / "two") == shard_files(tmp_path / "one")
    with pytest.raises(ValueError, match="workers"):
        build(tmp_path / "none", workers=-1)


def test_different_seed_gives_different_world(tiny: Path, tmp_path: Path) -> None:
    build(tmp_path, seed=4)
    assert (tmp_path / "train-000000.tar").read_bytes() != (tiny / "train-000000.tar").read_bytes()


def test_splits_are_disjoint_with_contiguous_pids(tiny: Path) -> None:
    people = {}
    for split in ("train", "val", "test"):
        records = load_records(tiny, split)
        assert len(records) == TINY[f"ids_{split}"] * TINY["images_per_id"]
        assert sorted({r.pid for r in records}) == list(range(TINY[f"ids_{split}"]))
        assert all(r.source == "synthetic" and r.captions == [r.fine_description] for r in records)
        assert all(len({r.camid for r in records if r.pid == pid}) == TINY["images_per_id"] for pid in {0, 1})
        people[split] = {r.orig_pid for r in records}
    assert not people["train"] & people["val"] and not people["train"] & people["test"]
    assert not people["val"] & people["test"]


def test_images_decode_at_requested_size(tiny: Path) -> None:
    sample = next(iter_samples(tiny, "test"))
    assert sample.image.size == (TINY["image_size"][1], TINY["image_size"][0])


def test_resume_after_interruption_is_byte_identical(tiny: Path, tmp_path: Path, monkeypatch) -> None:
    class Crashing(DatasetWriter):
        writes = 0

        def write(self, record, image, image_ext="jpg"):
            Crashing.writes += 1
            if Crashing.writes > 23:  # one train shard finished, the next one and val half-written
                raise KeyboardInterrupt
            super().write(record, image, image_ext)

    monkeypatch.setattr(world, "DatasetWriter", Crashing)
    with pytest.raises(KeyboardInterrupt):
        build(tmp_path)
    monkeypatch.undo()
    with pytest.raises(ShardError, match="resume"):
        build(tmp_path)
    stats = build(tmp_path, resume=True)
    assert 0 < stats["rendered_images"] < 42
    assert shard_files(tmp_path) == shard_files(tiny)


def test_bad_arguments_are_rejected(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="images_per_id"):
        build(tmp_path, images_per_id=0)
    with pytest.raises(ValueError, match="identity counts"):
        build(tmp_path, ids_train=0, ids_val=0, ids_test=0)


# ---------------------------------------------------------------------------------------------- identities


def test_attribute_tuples_are_unique_and_reproducible() -> None:
    identities = sample_identities(7, 3000)
    assert len({attribute_tuple(a) for a in identities}) == 3000
    assert sample_identities(7, 50) == identities[:50]
    for name, spec in ATTRIBUTES.items():
        assert {a[name] for a in identities} <= set(spec.values)
    assert not [a for a in identities if a["gender"] == "man" and a["lower_type"].endswith("skirt")]


# ---------------------------------------------------------------------------------------------- texts


@pytest.fixture(scope="module")
def moderate() -> list:
    return world.world_records(1, world.plan_identities(1, 150, 0, 50), 2)


def test_qa_type_proportions(moderate: list) -> None:
    stats = world.qa_stats(moderate)
    shares = stats["type_shares"]
    assert abs(shares["descriptive"] - 0.5) < 0.03
    assert abs(shares["yes_no"] - 0.4) < 0.03
    assert abs(shares["multiple_choice"] - 0.1) < 0.02
    assert abs(stats["yes_no_positive_share"] - 0.5) < 0.05


def test_qa_bank_covers_what_the_initial_description_leaves_out(moderate: list) -> None:
    orders = set()
    for record in moderate:
        asked = [qa.attribute for qa in record.qas]
        assert sorted(asked) == sorted(set(ATTRIBUTE_NAMES) - set(mentioned_attributes(record)))
        assert len(record.sub_captions) == len(record.qas)
        assert len(mentioned_attributes(record)) == 2 and "gender" in mentioned_attributes(record)
        orders.add(tuple(asked))
    assert len(orders) > len(moderate) // 2  # order shuffled per record


def test_answers_state_the_truth(moderate: list) -> None:
    openings = Counter()
    for record in moderate:
        for qa in record.qas:
            truth = phrase(qa.attribute, record.attributes[qa.attribute])
            assert says(qa.answer, bare(truth)), (qa, record.attributes)
            if qa.qtype == "yes_no":
                openings[qa.answer.split(",")[0]] += 1
                assert qa.answer.startswith(("Yes, ", "No, "))
            elif qa.qtype == "multiple_choice":
                assert len(qa.options) == len(set(qa.options)) == 4
                assert all(
                    f"{letter}) {option}" in qa.question for letter, option in zip("ABCD", qa.options, strict=True)
                )
                matching = [o for o in qa.options if says(qa.answer, o)]
                assert matching == [truth], (qa, matching)
            else:
                assert qa.qtype == "descriptive" and qa.answer in record.sub_captions
    assert openings["Yes"] > 0 and openings["No"] > 0


def test_initial_description_is_true_and_fine_description_is_complete(moderate: list) -> None:
    starts = Counter()
    for record in moderate:
        a = record.attributes
        for name in mentioned_attributes(record):
            assert says(record.initial_description, bare(phrase(name, a[name]))), (name, record.initial_description)
        assert record.fine_description.startswith(record.initial_description)
        for name in ATTRIBUTE_NAMES:
            assert says(record.fine_description, bare(phrase(name, a[name]))), (name, record.fine_description)
        starts[record.initial_description.startswith("I saw ")] += 1
    assert starts[True] > starts[False]  # mostly "I saw ...", witness memory


def test_texts_vary_per_image_but_attributes_do_not(moderate: list) -> None:
    by_person = {}
    for record in moderate:
        by_person.setdefault(record.orig_pid, []).append(record)
    assert all(len({attribute_tuple(r.attributes) for r in rs}) == 1 for rs in by_person.values())
    assert sum(len({r.fine_description for r in rs}) > 1 for rs in by_person.values()) > len(by_person) // 2


def test_ambiguity_targets_on_default_test_size(default_test_records: list) -> None:
    stats = world.ambiguity_stats(default_test_records)
    assert stats["identities"] == world.DEFAULTS["ids_test"]
    assert stats["initial_consistent"]["mean"] >= 5
    assert stats["fine_unique_share"] >= 0.99


# ---------------------------------------------------------------------------------------------- pictures


def _garment_difference(attribute: str, a_value: str, b_value: str) -> tuple[np.ndarray, float]:
    attrs = sample_identities(5, 1)[0] | {"hat": "none", "held_item": "none", "bag": "none", "upper_pattern": "plain"}
    shot = dataclasses.replace(plan_shot(5, 0, 0, 0), occluder=None, flip=False, dx=0.0, dy=0.0)
    look = identity_look(5, 0)
    a = np.asarray(render(attrs | {attribute: a_value}, look, shot), dtype=np.int32)
    b = np.asarray(render(attrs | {attribute: b_value}, look, shot), dtype=np.int32)
    changed = np.abs(a - b).sum(axis=2) > 60
    rows = np.nonzero(changed.any(axis=1))[0] / changed.shape[0]
    return rows, changed.mean()


def test_garment_colours_change_the_garment_pixels_only() -> None:
    rows, share = _garment_difference("upper_colour", "red", "blue")
    assert share > 0.05 and rows.min() > 0.1 and rows.max() < 0.75
    rows, share = _garment_difference("lower_colour", "white", "black")
    assert share > 0.04 and rows.min() > 0.4


def test_different_identities_look_different(tiny: Path) -> None:
    first = {}
    for sample in iter_samples(tiny, "train"):
        first.setdefault(sample.record.orig_pid, np.asarray(sample.image, dtype=np.int32))
    images = list(first.values())
    for i in range(len(images) - 1):
        assert np.abs(images[i] - images[i + 1]).mean() > 5


def test_contact_sheet(tiny: Path, tmp_path: Path) -> None:
    path = contact_sheet.write_contact_sheet(tiny, tmp_path / "sheet.png", n=3, per_row=2)
    with Image.open(io.BytesIO(path.read_bytes())) as sheet:
        assert sheet.format == "PNG"
        assert sheet.size == contact_sheet.contact_sheet_size(3, TINY["images_per_id"], TINY["image_size"], 2)
    width = (
        2 * TINY["images_per_id"] * (32 * contact_sheet.SHEET_SCALE + contact_sheet.SHEET_PAD)
        + contact_sheet.SHEET_GROUP_GAP
    )
    assert sheet.size[0] == width + contact_sheet.SHEET_PAD


# ---------------------------------------------------------------------------------------------- CLI


def test_cli_builds_and_reports_targets(tmp_path: Path, capsys) -> None:
    parser = argparse.ArgumentParser()
    cli.configure(parser)
    argv = ["--out", str(tmp_path / "w"), "--ids-train", "3", "--ids-val", "1", "--ids-test", "4"]
    argv += ["--images-per-id", "2", "--image-size", "48x24", "--quiet", "--contact-sheet", str(tmp_path / "s.png")]
    assert cli.run(parser.parse_args(argv)) == 0
    out = capsys.readouterr().out
    assert "initial description: fits" in out and "target >= 5" in out
    assert "fine description: identifies exactly one" in out and "target >= 99%" in out
    assert str(tmp_path / "w" / "stats.json") in out and (tmp_path / "s.png").exists()
    assert cli.run(parser.parse_args(argv)) == 2  # existing output without --resume
    assert "--resume" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        parser.parse_args([*argv, "--image-size", "big"])


def test_rda_groups_are_paraphrases_of_each_attribute():
    from ireid.core.vocabulary.templates import TEMPLATES

    identity = world.plan_identities(0, 3, 0, 0)[0]
    record = world.make_record(identity, 0, 0, seed=0)
    groups = record.rda_groups
    assert groups[0] == [record.initial_description]
    assert len(groups) == 1 + len(TEMPLATES)
    assert all(len(g) >= 2 for g in groups[1:]), "every attribute has at least two wordings"
    hair = groups[1 + list(TEMPLATES).index("hair_colour")]
    assert all(identity.attributes["hair_colour"] in sentence for sentence in hair)

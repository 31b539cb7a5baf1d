"""The synthetic world's options for ChatReID's settings: changes of clothes, infrared cameras, visibility.

Defaults must leave the world as it was (byte for byte); with the options on, every image's annotations
must say what that image shows.
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
from pathlib import Path

import numpy as np
import pytest

from ireid.core.loader import iter_samples, load_records
from ireid.core.records import Record, RecordError
from ireid.core.synthetic import cli, world
from ireid.core.synthetic.identities import sample_identities
from ireid.core.synthetic.render import render
from ireid.core.synthetic.shots import NUM_CAMERAS, camera, hidden_attributes, identity_look, is_infrared, plan_shot
from ireid.core.synthetic.text import mentioned_attributes
from ireid.core.vocabulary.attributes import (
    ATTRIBUTE_NAMES,
    COLOUR_ATTRIBUTES,
    COLOURS,
    OUTFIT_ATTRIBUTES,
    clothes_differ,
)
from ireid.core.vocabulary.parse import parse_description

OPTIONS = world.WorldOptions(outfits_per_id=2, infrared_cameras=2)
SMALL = dict(ids_train=8, ids_val=0, ids_test=4, images_per_id=4, image_size=(64, 32), seed=1, progress=False)
# The default world's texts (seed 0, 12/4/6 identities, 2 images each), as written before the options existed.
DEFAULT_TEXTS_SHA256 = "07ff3c601d2573da3b572abbe2266e10a4cc195f31f76658d241e3d8b01c2a65"
COLOUR_WORDS = set(COLOURS) | {"beige", "blonde", "blond", "gray"}


@pytest.fixture(scope="module")
def options_world(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("options_world")
    world.build_world(out, options=OPTIONS, **SMALL)
    return out


@pytest.fixture(scope="module")
def text_records() -> list[Record]:
    """A larger world's records, texts only (no rendering)."""
    identities = world.plan_identities(2, 150, 0, 50, outfits_per_id=2)
    return world.world_records(2, identities, 4, OPTIONS)


def test_default_world_texts_are_unchanged() -> None:
    records = world.world_records(0, world.plan_identities(0, 12, 4, 6), 2)
    text = json.dumps([r.to_dict() for r in records], sort_keys=True)
    assert hashlib.sha256(text.encode()).hexdigest() == DEFAULT_TEXTS_SHA256
    assert world.world_records(0, world.plan_identities(0, 12, 4, 6), 2, world.WorldOptions()) == records


def test_infrared_cameras_leave_the_colour_images_unchanged(tmp_path: Path) -> None:
    world.build_world(tmp_path, options=world.WorldOptions(infrared_cameras=1), **(SMALL | {"seed": 1}))
    plain = tmp_path / "plain"
    world.build_world(plain, **SMALL)
    before = {s.key: s.image for s in iter_samples(plain, "train", decode_images=False)}
    after = {s.key: s.image for s in iter_samples(tmp_path, "train", decode_images=False)}
    assert set(before) < set(after)
    assert all(after[key] == image for key, image in before.items())


def test_record_fields_round_trip_and_stay_out_of_default_records() -> None:
    record = Record(key="a/b", pid=0, split="train", source="s", clothes_id=1, modality="infrared")
    assert Record.from_dict(record.to_dict()) == record
    plain = Record(key="a/b", pid=0, split="train", source="s").to_dict()
    assert "clothes_id" not in plain and "modality" not in plain
    with pytest.raises(RecordError, match="modality"):
        Record.from_dict(plain | {"modality": "thermal"}, "f.json")
    with pytest.raises(RecordError, match="clothes_id"):
        Record.from_dict(plain | {"clothes_id": -1}, "f.json")


def test_views_give_every_outfit_colour_images_and_one_image_per_infrared_camera(options_world: Path) -> None:
    records = load_records(options_world, "train")
    assert len(records) == SMALL["ids_train"] * (SMALL["images_per_id"] + OPTIONS.infrared_cameras)
    for pid in range(SMALL["ids_train"]):
        mine = [r for r in records if r.pid == pid]
        rgb = [(r.clothes_id, r.camid) for r in mine if r.modality == "rgb"]
        infrared = [(r.clothes_id, r.camid) for r in mine if r.modality == "infrared"]
        assert sorted(c for c, _ in rgb) == [0, 0, 1, 1] and all(cam < NUM_CAMERAS for _, cam in rgb)
        assert sorted(infrared) == [(0, NUM_CAMERAS), (1, NUM_CAMERAS + 1)]
    with pytest.raises(ValueError, match="outfits_per_id"):
        world.views(0, 0, 2, world.WorldOptions(outfits_per_id=3))


def test_changes_of_clothes_keep_the_person_and_change_the_clothes(text_records: list[Record]) -> None:
    identities = world.plan_identities(2, 150, 0, 50, outfits_per_id=2)
    tuples = set()
    for identity in identities:
        first, second = identity.outfits
        assert clothes_differ(first, second)
        assert all(first[n] == second[n] for n in ATTRIBUTE_NAMES if n not in OUTFIT_ATTRIBUTES)
        tuples |= {tuple(first.values()), tuple(second.values())}
    assert len(tuples) == 2 * len(identities)  # every outfit of every person is unique in the world
    for record in text_records:
        worn = identities[int(record.orig_pid[3:])].outfits[record.clothes_id]
        assert record.attributes == {n: v for n, v in worn.items() if n in record.attributes}


def test_every_text_states_what_the_image_shows_and_nothing_it_hides(text_records: list[Record]) -> None:
    hidden_seen = set()
    for record in text_records:
        hidden = set(ATTRIBUTE_NAMES) - set(record.attributes)
        hidden_seen |= hidden
        assert parse_description(record.fine_description) == record.attributes, record.fine_description
        assert {qa.attribute for qa in record.qas} | set(mentioned_attributes(record)) == set(record.attributes)
        for text in (*record.sub_captions, *(qa.answer for qa in record.qas)):
            assert not set(parse_description(text)) & hidden, (text, hidden)
    assert {"shoes_type", "lower_type"} | COLOUR_ATTRIBUTES <= hidden_seen


def test_infrared_records_name_no_colour(text_records: list[Record]) -> None:
    infrared = [r for r in text_records if r.modality == "infrared"]
    assert infrared and all(is_infrared(r.camid) for r in infrared)
    for record in infrared:
        assert not set(record.attributes) & COLOUR_ATTRIBUTES
        words = set(" ".join([record.fine_description, *record.sub_captions]).lower().replace(".", " ").split())
        words |= {w for qa in record.qas for w in f"{qa.question} {qa.answer} {' '.join(qa.options)}".lower().split()}
        assert not words & COLOUR_WORDS, words & COLOUR_WORDS


def test_infrared_images_are_one_channel(options_world: Path) -> None:
    seen = 0
    for sample in iter_samples(options_world, "train"):
        pixels = np.asarray(sample.image, dtype=np.int16)
        grey = np.abs(pixels[..., 0] - pixels[..., 1]).max() == 0 and np.abs(pixels[..., 1] - pixels[..., 2]).max() == 0
        assert grey == (sample.record.modality == "infrared"), sample.key
        seen += grey
    assert seen == SMALL["ids_train"] * OPTIONS.infrared_cameras


def _top_intensity(colour: str, infrared: bool) -> float:
    """Mean intensity of the pixels a top's colour changes, against a black top."""
    attrs = sample_identities(5, 1)[0] | {"upper_pattern": "plain", "upper_logo": "no", "upper_type": "t-shirt"}
    shot = dataclasses.replace(plan_shot(5, 0, 0, 0), occluder=None, flip=False, camera=camera(5, NUM_CAMERAS))
    if not infrared:
        shot = dataclasses.replace(shot, camera=dataclasses.replace(shot.camera, infrared=False))
    look = identity_look(5, 0)
    image = np.asarray(render(attrs | {"upper_colour": colour}, look, shot), dtype=np.float32).mean(axis=2)
    other = np.asarray(render(attrs | {"upper_colour": "black"}, look, shot), dtype=np.float32).mean(axis=2)
    return float(image[np.abs(image - other) > 20].mean())


def test_infrared_intensity_is_not_visible_lightness() -> None:
    # Visibly, a red top is far darker than a white one; to the infrared camera both fabrics are bright.
    assert _top_intensity("white", infrared=False) - _top_intensity("red", infrared=False) > 60
    assert abs(_top_intensity("white", infrared=True) - _top_intensity("red", infrared=True)) < 15
    # A person is warmer than the scene: skin is the brightest, the background dim.
    attrs = sample_identities(5, 1)[0]
    shot = dataclasses.replace(plan_shot(5, 0, 0, NUM_CAMERAS), occluder=None)
    pixels = np.asarray(render(attrs, identity_look(5, 0), shot), dtype=np.float32)[..., 0]
    assert pixels[:, :4].mean() < 110 and pixels.max() > 200


def test_hidden_shoes_and_shorts_are_really_not_drawn() -> None:
    identities = sample_identities(9, 120)
    checked = {"car": 0, "coat": 0}
    for index, attrs in enumerate(identities):
        shot = dataclasses.replace(plan_shot(9, index, 0, index % NUM_CAMERAS), occluder="car")
        if attrs["upper_type"] == "coat" and attrs["lower_type"] == "shorts":
            changes, key = {"lower_colour": ("white", "black")}, "coat"
        elif "shoes_type" in hidden_attributes(attrs, shot):
            changes, key = {"shoes_colour": ("white", "red")}, "car"
        else:
            continue
        (name, (a, b)), look = next(iter(changes.items())), identity_look(9, index)
        first = np.asarray(render(attrs | {name: a}, look, shot), dtype=np.int16)
        second = np.asarray(render(attrs | {name: b}, look, shot), dtype=np.int16)
        assert np.abs(first - second).max() <= 12, (index, name)
        checked[key] += 1
    assert checked["car"] > 50 and checked["coat"] > 0


def test_cli_flags_and_stats(tmp_path: Path, capsys) -> None:
    parser = argparse.ArgumentParser()
    cli.configure(parser)
    argv = ["--out", str(tmp_path), "--ids-train", "3", "--ids-val", "0", "--ids-test", "3", "--images-per-id", "2"]
    argv += ["--image-size", "32x16", "--outfits-per-id", "2", "--infrared-cameras", "1", "--quiet"]
    assert cli.run(parser.parse_args(argv)) == 0
    out = capsys.readouterr().out
    assert "images per modality: infrared 6, rgb 12" in out and "(6 outfits)" in out
    stats = json.loads((tmp_path / world.STATS_FILE).read_text())
    assert stats["config"]["outfits_per_id"] == 2 and stats["config"]["infrared_cameras"] == 1
    assert stats["views"]["hidden_share"]["upper_colour"] >= 6 / 18

"""ChatReID's instruction data engine: format, determinism, task mix, and answers checked against the records."""

from __future__ import annotations

import argparse
import json
import random
import re
from collections import Counter
from pathlib import Path

import pytest

from ireid.chatreid import instructions, instructions_cli
from ireid.chatreid.conversations import QUERY_IMAGES, ConversationError, check_conversation, read_conversations
from ireid.chatreid.instruction_pool import contradicts, fits, match_count
from ireid.chatreid.instruction_text import LABELS, parse_answer_positions
from ireid.chatreid.instructions import MIXES, allocate, build_instructions
from ireid.core.loader import load_records
from ireid.core.records import Record
from ireid.core.shards import ShardWriter
from ireid.core.synthetic.world import WorldOptions, build_world, plan_identities
from ireid.core.vocabulary.attributes import COLOUR_ATTRIBUTES, clothes_differ
from ireid.core.vocabulary.parse import parse_description

GALLERY = (3, 6)
SAMPLES = {2: 700, 3: 600}
KEY = "i2i_many_to_many-0000001"
QUOTED_RE = re.compile(r'"([^"]+)"')
WORLD = dict(ids_train=14, ids_val=0, ids_test=0, seed=0)
OUTFITS = [identity.outfits for identity in plan_identities(**WORLD, outfits_per_id=2)]  # the truth, per person


@pytest.fixture(scope="session")
def chatreid_world(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """14 people, 2 outfits, 4 colour + 2 infrared images each."""
    out = tmp_path_factory.mktemp("chatreid_world")
    options = WorldOptions(outfits_per_id=2, infrared_cameras=2)
    build_world(out, **WORLD, images_per_id=4, image_size=(48, 24), progress=False, options=options)
    return out


@pytest.fixture(scope="session")
def built(chatreid_world: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("instructions")
    for stage in (1, 2, 3):
        build_instructions(chatreid_world, out, stage, samples=SAMPLES.get(stage), gallery=GALLERY, progress=False)
    return out


@pytest.fixture(scope="session")
def records(chatreid_world: Path) -> dict[str, Record]:
    return {r.key: r for r in load_records(chatreid_world, "train")}


@pytest.fixture(scope="session")
def samples(built: Path) -> dict[int, list[dict]]:
    return {stage: list(read_conversations(built, stage)) for stage in (1, 2, 3)}


def _text(sample: dict, turn: int = 0) -> str:
    return "".join(p["text"] for p in sample["messages"][turn]["content"] if p["type"] == "text")


def _answer(sample: dict) -> str:
    return _text(sample, -1)


def _gallery(sample: dict) -> list[str]:
    return sample["images"][QUERY_IMAGES[sample["task"]] :]


def _quoted(sample: dict) -> str:
    return QUOTED_RE.search(_text(sample)).group(1)


def _text_owner(records: dict[str, Record], text: str) -> set[tuple[int, int]]:
    """(pid, clothes_id) of the records whose text this is."""
    return {(r.pid, r.clothes_id) for r in records.values() if r.texts and r.texts[0] == text}


# ---------------------------------------------------------------------------------------------- format, mix


def test_same_seed_same_bytes_and_resume(chatreid_world: Path, built: Path, tmp_path: Path, monkeypatch) -> None:
    def tars(root: Path) -> dict[str, bytes]:
        return {p.name: p.read_bytes() for p in sorted(root.glob("stage2*")) if p.suffix in (".tar", ".json")}

    original = ShardWriter.write_sample
    calls = Counter()

    def crashing(self, key, members):
        calls["n"] += 1
        if calls["n"] > 250:
            raise KeyboardInterrupt
        original(self, key, members)

    kwargs = dict(samples=SAMPLES[2], gallery=GALLERY, progress=False, shard_size=100)
    monkeypatch.setattr(ShardWriter, "write_sample", crashing)
    with pytest.raises(KeyboardInterrupt):
        build_instructions(chatreid_world, tmp_path / "a", 2, **kwargs)
    monkeypatch.undo()
    with pytest.raises(ValueError, match="other settings"):
        build_instructions(chatreid_world, tmp_path / "a", 2, resume=True, **(kwargs | {"seed": 1}))
    build_instructions(chatreid_world, tmp_path / "a", 2, resume=True, **kwargs)
    build_instructions(chatreid_world, tmp_path / "b", 2, **kwargs)
    assert tars(tmp_path / "a") == tars(tmp_path / "b")
    assert [s["images"] for s in read_conversations(tmp_path / "a", 2)] == [
        s["images"] for s in read_conversations(built, 2)
    ]  # shard size does not change the samples
    build_instructions(chatreid_world, tmp_path / "c", 2, **(kwargs | {"seed": 1}))
    assert tars(tmp_path / "c") != tars(tmp_path / "b")


def test_counts_follow_the_mix(built: Path, samples: dict[int, list[dict]]) -> None:
    for stage in (2, 3):
        counts = json.loads((built / f"stage{stage}.counts.json").read_text())["counts"]
        assert counts == allocate(SAMPLES[stage], MIXES[stage])
        assert Counter(s["task"] for s in samples[stage]) == {t: n for t, n in counts.items() if n}
    shares = Counter(s["task"] for s in samples[2])
    assert (shares["i2i_one_to_one"] + shares["i2i_many_to_many"]) / SAMPLES[2] == pytest.approx(0.5, abs=0.01)
    assert all(shares[t] / SAMPLES[2] == pytest.approx(0.1, abs=0.01) for t in MIXES[2] if not t.startswith("i2i"))
    assert Counter(s["task"] for s in samples[2][:200]).most_common(1)[0][1] < 80  # tasks interleaved


def test_allocate_and_match_count_by_hand() -> None:
    assert allocate(10, {"a": 0.25, "b": 0.25, "c": 0.5}) == {"a": 3, "b": 2, "c": 5}  # 2.5, 2.5, 5: tie to a
    assert allocate(7, {"a": 1, "b": 1, "c": 1}) == {"a": 3, "b": 2, "c": 2}
    rng = random.Random(0)
    draws = Counter(match_count(rng, 5, 10) for _ in range(40000))
    harmonic = 1 + 1 / 2 + 1 / 3 + 1 / 4  # m = 1..N-1 with P(m) ∝ 1/m
    for m in range(1, 5):
        assert draws[m] / 40000 == pytest.approx((1 / m) / harmonic, abs=0.01)
    assert set(Counter(match_count(rng, 8, 2) for _ in range(200))) == {1, 2}  # capped by what the data has


def test_every_sample_validates_and_answers_name_its_positions(samples: dict[int, list[dict]]) -> None:
    for stage, stage_samples in samples.items():
        for sample in stage_samples:
            assert check_conversation(sample, f"{sample['task']}-0000000", "x") is sample
            if QUERY_IMAGES[sample["task"]] is not None or sample["task"] == "t2i_many_to_one":
                assert sample["answer_positions"]
                assert parse_answer_positions(_answer(sample)) == sample["answer_positions"]
            else:
                assert sample["answer_positions"] == []
        if stage > 1:
            sizes = {len(_gallery(s)) for s in stage_samples if QUERY_IMAGES[s["task"]] is not None}
            assert sizes == set(range(GALLERY[0], GALLERY[1] + 1)), stage


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"task": "caption"}, "task"),
        ({"task": "i2i_one_to_one"}, "does not match the key"),
        ({"images": ["bad.key"]}, "images[0]"),
        ({"answer_positions": [9]}, "answer_positions"),
        ({"answer_positions": [2, 1]}, "answer_positions"),
        ({"answer_positions": []}, "answer_positions"),
        ({"messages": [{"role": "assistant", "content": [{"type": "text", "text": "x"}]}]}, "messages"),
        ({"extra": 1}, "unknown field"),
    ],
)
def test_errors_name_the_sample_and_field(samples: dict[int, list[dict]], change: dict, field: str) -> None:
    sample = next(s for s in samples[2] if s["task"] == "i2i_many_to_many")
    with pytest.raises(ConversationError) as err:
        check_conversation(sample | change, KEY, "stage2-000000.tar: sample 'k'")
    assert "stage2-000000.tar: sample 'k'" in str(err.value) and field in str(err.value)
    broken = json.loads(json.dumps(sample))
    broken["messages"][0]["content"][1]["index"] = 3
    with pytest.raises(ConversationError, match=r"field .messages.: image parts use indices \[3, 1, 2, 3, 4\]"):
        check_conversation(broken, KEY, "w")


# ---------------------------------------------------------------------------------------------- answers vs records


def test_stage1_captions_state_exactly_the_shown_attributes(samples, records) -> None:
    captioned = [records[s["images"][0]] for s in samples[1]]
    assert len({r.key for r in captioned}) == len(captioned)  # each image once
    for sample, record in zip(samples[1], captioned, strict=True):
        assert parse_description(_answer(sample)) == record.attributes, _answer(sample)
        assert "In the person image" in _text(sample)  # the paper's attribute prompt
    assert any(r.modality == "infrared" for r in captioned)
    assert all(n in r.attributes for r in captioned for n in ("upper_type", "lower_type", "shoes_type"))


def test_stage2_yes_no_and_gallery_answers_match_the_records(samples, records) -> None:
    answers = Counter()
    for sample in samples[2]:
        task, keys = sample["task"], sample["images"]
        if task == "i2i_one_to_one":
            expected = "Yes" if records[keys[0]].pid == records[keys[1]].pid else "No"
            assert _answer(sample) == expected
            answers[expected] += 1
        elif task == "i2i_many_to_many":
            query = records[keys[0]]
            same = [i for i, k in enumerate(_gallery(sample), 1) if records[k].pid == query.pid]
            assert sample["answer_positions"] == same
        elif task == "t2i_one_to_one":
            image, owners = records[keys[0]], _text_owner(records, _quoted(sample))
            expected = "Yes" if (image.pid, image.clothes_id) in owners else "No"
            assert _answer(sample) == expected
        elif task == "t2i_one_to_many":
            owners = _text_owner(records, _quoted(sample))
            same = [i for i, k in enumerate(_gallery(sample), 1) if (records[k].pid, records[k].clothes_id) in owners]
            assert sample["answer_positions"] == same and len(same) == 1
        elif task == "t2i_many_to_one":
            image = records[keys[0]]
            captions = QUOTED_RE.findall(_text(sample))
            right = [i for i, c in enumerate(captions, 1) if (image.pid, image.clothes_id) in _text_owner(records, c)]
            assert sample["answer_positions"] == right
    assert answers["Yes"] > 40 and answers["No"] > 40


def _listed(text: str) -> dict[str, str]:
    """'gender: man; top: coat' -> {'gender': 'man', 'upper_type': 'coat'}."""
    names = {label: name for name, label in LABELS.items()}
    if text.strip() == "none":
        return {}
    return {names[label]: value for label, value in (item.split(": ") for item in text.split("; "))}


def test_stage2_attribute_tasks_match_the_records(samples, records) -> None:
    seen = Counter()
    for sample in samples[2]:
        shown = [records[k].attributes for k in sample["images"]]
        if sample["task"] == "attribute_annotation":
            listed = _answer(sample).removeprefix("The pedestrian attributes of this image are: ").rstrip(".")
            assert _listed(listed) == shown[0]
            seen["annotation"] += not COLOUR_ATTRIBUTES & set(shown[0])
        elif sample["task"] == "attribute_comparison":
            parts = re.match(
                r"Common attributes: (.*)\. Unique attributes of the first image: (.*)\. "
                r"Unique attributes of the second image: (.*)\.$",
                _answer(sample),
            )
            common, first, second = (_listed(g) for g in parts.groups())
            both = set(shown[0]) & set(shown[1])
            assert common == {n: shown[0][n] for n in both if shown[0][n] == shown[1][n]}
            assert first == {n: shown[0][n] for n in both if shown[0][n] != shown[1][n]}
            assert second == {n: shown[1][n] for n in both if shown[0][n] != shown[1][n]}
    assert seen["annotation"] > 0  # infrared images are annotated without colours


def test_stage3_answers_match_the_records(samples, records) -> None:
    seen = Counter()
    for sample in samples[3]:
        task, gallery = sample["task"], [records[k] for k in _gallery(sample)]
        positions = sample["answer_positions"]
        matched = [gallery[p - 1] for p in positions]
        seen[task] += 1
        if task == "reid_attribute":
            query = parse_description(_quoted(sample))
            assert query and all(fits(query, g.attributes) == (i in positions) for i, g in enumerate(gallery, 1))
            assert all(contradicts(query, g.attributes) for i, g in enumerate(gallery, 1) if i not in positions)
            assert all(g.modality == "rgb" for g in gallery)
            continue
        if task == "reid_text_to_image":
            (pid, clothes), *_ = _text_owner(records, _quoted(sample))
        else:
            query = records[sample["images"][0]]
            pid, clothes = query.pid, query.clothes_id
        assert positions == [i for i, g in enumerate(gallery, 1) if g.pid == pid]
        if task == "reid_standard":
            assert all(g.clothes_id == clothes and g.modality == "rgb" for g in matched)
        elif task == "reid_clothes_changing":
            assert all(g.modality == "rgb" for g in gallery) and query.modality == "rgb"
            worn = OUTFITS[int(query.orig_pid.removeprefix("syn"))]
            for g in matched:  # really another outfit of the same person
                assert g.clothes_id != clothes and clothes_differ(worn[g.clothes_id], worn[clothes])
        elif task == "reid_visible_infrared":
            assert {g.modality for g in gallery} == {"infrared" if query.modality == "rgb" else "rgb"}
            seen[f"vi-{query.modality}"] += 1
        elif task == "reid_multimodal":
            (text_pid, text_clothes), *_ = _text_owner(records, _quoted(sample))
            assert text_pid == pid and all(g.clothes_id == text_clothes for g in matched)
            seen["multimodal-other-outfit"] += text_clothes != clothes
    assert set(seen) >= {task for task, weight in MIXES[3].items() if weight > 0}, "the paper's six tasks"
    assert seen["vi-rgb"] and seen["vi-infrared"] and seen["multimodal-other-outfit"]


# ---------------------------------------------------------------------------------------------- other data, CLI


def test_tasks_the_data_cannot_pose_are_skipped(tiny_world: Path, tmp_path: Path) -> None:
    summary = build_instructions(tiny_world, tmp_path, 3, samples=40, progress=False)
    assert set(summary["skipped"]) == {"reid_clothes_changing", "reid_visible_infrared"}
    assert "--infrared-cameras" in summary["skipped"]["reid_visible_infrared"]
    assert sum(summary["counts"].values()) == 40 and summary["counts"]["reid_visible_infrared"] == 0


def test_cli_writes_counts_and_refuses_a_used_folder(chatreid_world: Path, tmp_path: Path, capsys) -> None:
    parser = argparse.ArgumentParser()
    instructions_cli.configure(parser)
    argv = ["--stage", "2", "--data", str(chatreid_world), "--out", str(tmp_path), "--samples", "40", "--quiet"]
    argv += ["--mix", "i2i_one_to_one=0,i2i_many_to_many=0.1,attribute_comparison=0.5"]  # others 0.1 each
    assert instructions_cli.run(parser.parse_args(argv)) == 0
    out = capsys.readouterr().out
    counts = json.loads((tmp_path / "stage2.counts.json").read_text())["counts"]
    assert counts == {task: {"i2i_one_to_one": 0, "attribute_comparison": 20}.get(task, 4) for task in MIXES[2]}
    assert "attribute_comparison" in out and "stage2.counts.json" in out
    assert instructions_cli.run(parser.parse_args(argv)) == 2
    assert "--resume" in capsys.readouterr().err
    assert instructions_cli.run(parser.parse_args([*argv[:-2], "--mix", "nope=1", "--resume"])) == 2
    assert instructions.parse_mix("", 3) == MIXES[3]

"""The instruction engine's departures from the paper: appearance matches, look-alike distractors and their file,
stage 3's replayed one-to-one question."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from ireid.app.cli import main
from ireid.chatreid.conversations import QUERY_IMAGES, read_conversations
from ireid.chatreid.instructions import build_instructions, parse_mix
from ireid.chatreid.look_alikes import LookAlikeError, load_look_alikes, look_alikes_from_gallery, save_look_alikes
from ireid.core.gallery import Gallery
from ireid.core.loader import load_records
from ireid.core.records import Record
from tests.chatreid.test_chatreid_cli import retriever_ckpt  # noqa: F401  (fixture)
from tests.chatreid.test_instructions import chatreid_world  # noqa: F401  (fixture)

IMAGE_TASKS = "i2i_one_to_one=1,i2i_many_to_many=1,t2i_one_to_one=0,t2i_many_to_one=0,t2i_one_to_many=0"
IMAGE_TASKS += ",attribute_comparison=0,attribute_annotation=0"
TEXT_FREE = ("i2i_one_to_one", "i2i_many_to_many", "t2i_many_to_one", "t2i_one_to_many", "attribute_comparison",
             "attribute_annotation")  # fmt: skip


def _image_pairs(folder: Path) -> list[tuple[str, str, bool]]:
    """(query key, other key, is a match) of every image-to-image sample."""
    pairs = []
    for sample in read_conversations(folder, 2):
        answer = sample["messages"][-1]["content"][0]["text"]
        if sample["task"] == "i2i_one_to_one":
            first, second = sample["images"]
            pairs.append((first, second, answer == "Yes"))
        else:
            query, gallery = sample["images"][0], sample["images"][QUERY_IMAGES[sample["task"]] :]
            pairs += [(query, key, i in sample["answer_positions"]) for i, key in enumerate(gallery, 1)]
    return pairs


def _build(world: Path, out: Path, **options) -> list[tuple[str, str, bool]]:
    mix = parse_mix(IMAGE_TASKS, 2)
    build_instructions(world, out, 2, samples=300, gallery=(3, 6), mix=mix, progress=False, **options)
    return _image_pairs(out)


@pytest.fixture(scope="module")
def records(chatreid_world: Path) -> dict[str, Record]:  # noqa: F811
    return {r.key: r for r in load_records(chatreid_world, "train")}


def test_appearance_pairs_match_the_same_outfit_and_modality_from_another_camera(chatreid_world, records, tmp_path):  # noqa: F811
    paper = _build(chatreid_world, tmp_path / "paper")
    kinds = {(records[a].clothes_id == records[b].clothes_id, records[a].modality == records[b].modality)
             for a, b, match in paper if match}  # fmt: skip
    assert len(kinds) > 1, "the paper's rule also matches other outfits or modalities"
    pairs = _build(chatreid_world, tmp_path / "appearance", image_match="appearance")
    assert sum(match for *_, match in pairs) > 50 and sum(not match for *_, match in pairs) > 50
    for a, b, match in pairs:
        first, second = records[a], records[b]
        assert first.modality == second.modality, (a, b)
        if match:
            assert (second.pid, second.clothes_id) == (first.pid, first.clothes_id) and second.camid != first.camid
        else:
            assert second.pid != first.pid
    config = json.loads((tmp_path / "appearance" / "stage2.config.json").read_text())
    assert config["image_match"] == "appearance" and "image_match" not in json.loads(
        (tmp_path / "paper" / "stage2.config.json").read_text()
    ), "a departure is recorded; the paper's config keeps its fields"


def _next_person_look_alikes(records: dict[str, Record], folder: Path) -> tuple[dict[str, list[str]], Path]:
    """Each image's "look-alikes": the images of the next person in id order (a rule a random draw would break),
    and the file holding them."""
    keys = sorted(records)
    pids = sorted({r.pid for r in records.values()})
    following = {pid: pids[(i + 1) % len(pids)] for i, pid in enumerate(pids)}
    table = {k: [o for o in keys if records[o].pid == following[records[k].pid]] for k in keys}
    return table, save_look_alikes(folder / "alikes.json", table, top_k=6, source={"test": True})


def test_distractors_come_from_the_look_alikes_at_the_share_asked(chatreid_world, records, tmp_path):  # noqa: F811
    table, path = _next_person_look_alikes(records, tmp_path)
    shares = {}
    for share in (1.0, 0.5, 0.0):
        pairs = _build(chatreid_world, tmp_path / f"share{share}", look_alikes=path, look_alike_share=share)
        negatives = [(a, b) for a, b, match in pairs if not match]
        assert all(records[b].pid != records[a].pid for a, b in negatives)
        shares[share] = sum(b in table[a] for a, b in negatives) / len(negatives)
    assert shares[1.0] > 0.85, "every distractor is a look-alike while unused ones remain (galleries may need more)"
    assert 0.35 < shares[0.5] < 0.7 and shares[0.0] < 0.2, shares


def test_wrong_texts_come_from_the_look_alikes_at_the_share_asked(chatreid_world, records, tmp_path):  # noqa: F811
    table, path = _next_person_look_alikes(records, tmp_path)
    texts = {text: key for key, r in records.items() for text in r.texts[:1]}
    mix = parse_mix("t2i_one_to_one=1," + ",".join(f"{t}=0" for t in TEXT_FREE), 2)
    shares = {}
    for share in (1.0, 0.0):
        out = tmp_path / f"share{share}"
        build_instructions(chatreid_world, out, 2, samples=200, mix=mix, progress=False, look_alikes=path,
                           look_alike_share=share)  # fmt: skip
        negatives = []
        for sample in read_conversations(out, 2):
            if sample["messages"][-1]["content"][0]["text"] == "No":
                prompt_text = sample["messages"][0]["content"][-1]["text"]
                said = [key for text, key in texts.items() if text in prompt_text]
                assert len(said) >= 1, prompt_text
                negatives.append((sample["images"][0], said))
        assert len(negatives) > 50
        for image, said in negatives:
            assert all(records[k].pid != records[image].pid for k in said), "a wrong text is another person's"
        shares[share] = sum(any(k in table[image] for k in said) for image, said in negatives) / len(negatives)
    assert shares[1.0] > 0.9 and shares[0.0] < 0.2, shares


def test_look_alikes_by_hand_rank_other_people_closest_first() -> None:
    embeddings = torch.nn.functional.normalize(torch.tensor([[1.0, 0.0], [0.9, 0.1], [0.8, 0.6], [0.0, 1.0]]), dim=1)
    gallery = Gallery(["a", "b", "c", "d"], torch.tensor([0, 0, 1, 2]), embeddings, [None] * 4)  # type: ignore[list-item]
    found = look_alikes_from_gallery(gallery, top_k=2)
    assert found == {"a": ["c", "d"], "b": ["c", "d"], "c": ["b", "a"], "d": ["c", "b"]}
    assert look_alikes_from_gallery(gallery, top_k=5)["a"] == ["c", "d"], "only other people, however many asked"


def test_bad_look_alike_files_are_refused_naming_the_file_and_field(tmp_path: Path) -> None:
    path = tmp_path / "alikes.json"
    with pytest.raises(LookAlikeError, match="no such look-alike file"):
        load_look_alikes(path)
    path.write_bytes(b"\xff\xfe{")
    with pytest.raises(LookAlikeError, match=f"{path}: not a UTF-8 JSON"):
        load_look_alikes(path)
    path.write_text(json.dumps({"format": "other/1"}))
    with pytest.raises(LookAlikeError, match="field 'format'"):
        load_look_alikes(path)
    save_look_alikes(path, {"a": ["b", 3]}, 1, {})  # type: ignore[list-item]
    with pytest.raises(LookAlikeError, match="field 'look_alikes' must map"):
        load_look_alikes(path)
    save_look_alikes(path, {"a": ["b"]}, 1, {})
    assert load_look_alikes(path, {"a", "b"}) == {"a": ["b"]}
    with pytest.raises(LookAlikeError, match=r"names 1 images the data does not have .*'b'"):
        load_look_alikes(path, {"a"})


def test_mine_command_writes_a_file_the_engine_reads(chatreid_world, retriever_ckpt, records, tmp_path, capsys):  # noqa: F811
    out = tmp_path / "alikes.json"
    args = ["chatreid", "mine-look-alikes", "--retriever-ckpt", str(retriever_ckpt), "--data", str(chatreid_world),
            "--top-k", "5", "--out", str(out)]  # fmt: skip
    assert main(args) == 0 and "look-alikes of" in capsys.readouterr().out
    table = load_look_alikes(out, set(records))
    assert set(table) == set(records) and all(len(v) == 5 for v in table.values())
    assert all(records[o].pid != records[k].pid for k, v in table.items() for o in v)
    assert main([*args[:-2], "--out", str(out), "--split", "nope"]) == 2
    assert "error:" in capsys.readouterr().err


def test_stage3_replays_the_one_to_one_questions_only_when_asked(chatreid_world, records, tmp_path):  # noqa: F811
    paper = build_instructions(chatreid_world, tmp_path / "paper", 3, samples=120, progress=False)
    assert paper["counts"]["i2i_one_to_one"] == paper["counts"]["t2i_one_to_one"] == 0, "the paper's has six tasks"
    mix = parse_mix("i2i_one_to_one=0.5,t2i_one_to_one=0.5", 3)  # the six keep 1/6 each: a quarter of the samples each
    build_instructions(
        chatreid_world, tmp_path / "replay", 3, samples=120, mix=mix, image_match="appearance", progress=False
    )
    samples = list(read_conversations(tmp_path / "replay", 3))
    texts = [s for s in samples if s["task"] == "t2i_one_to_one"]
    assert len(texts) == 30 and {s["messages"][-1]["content"][0]["text"] for s in texts} == {"Yes", "No"}
    assert all(len(s["images"]) == 1 for s in texts)
    replayed = [s for s in samples if s["task"] == "i2i_one_to_one"]
    assert len(replayed) == 30 and {s["messages"][-1]["content"][0]["text"] for s in replayed} == {"Yes", "No"}
    for sample in replayed:
        first, second = (records[key] for key in sample["images"])
        match = sample["messages"][-1]["content"][0]["text"] == "Yes"
        assert match == (first.pid == second.pid) and first.modality == second.modality
        assert not match or first.clothes_id == second.clothes_id

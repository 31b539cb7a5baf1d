import json
import re

import pytest

from ireid.app.cli import main as ireid_main
from ireid.core.converters.cli import convert
from ireid.core.converters.common import ConversionError
from ireid.core.converters.pedes import parse_qa
from ireid.core.loader import load_records
from tests.helpers import jpeg, png


def pedes_tree(root, annotation_file, path_field, records, extra_fields=None):
    """A minimal CUHK-PEDES-like tree: an annotation list and imgs/."""
    entries = []
    for i, (pid, split, rel) in enumerate(records):
        image = root / "imgs" / rel
        image.parent.mkdir(parents=True, exist_ok=True)
        image.write_bytes(png() if rel.endswith(".png") else jpeg((i * 30 % 255, 50, 50)))
        entry = {"split": split, path_field: rel, "id": pid, "captions": [f"A person number {pid}.", "Another."]}
        entry.update((extra_fields or {}).get(i, {}))
        entries.append(entry)
    (root / annotation_file).write_text(json.dumps(entries))
    return entries


CUHK = [
    (11, "train", "CUHK01/a.jpg"),
    (11, "train", "CUHK01/b.png"),
    (3, "train", "cam/c.jpg"),
    (7, "test", "test/d.jpg"),
    (9, "test", "test/e.jpg"),
    (5, "val", "val/f.jpg"),
]


@pytest.mark.parametrize(
    ("fmt", "annotation", "path_field"),
    [
        ("cuhk-pedes", "reid_raw.json", "file_path"),
        ("icfg-pedes", "ICFG-PEDES.json", "file_path"),
        ("rstpreid", "data_captions.json", "img_path"),
    ],
)
def test_pedes_formats(tmp_path, fmt, annotation, path_field):
    pedes_tree(tmp_path / "src", annotation, path_field, CUHK)
    report = convert(fmt, tmp_path / "src", tmp_path / "out", progress=False)
    assert report.counts == {"test": 2, "train": 3, "val": 1}
    train = load_records(tmp_path / "out", "train")
    # contiguous from 0 in order of the source ids, source id kept
    assert [(r.pid, r.orig_pid) for r in train] == [(1, "11"), (1, "11"), (0, "3")]
    assert [(r.pid, r.orig_pid) for r in load_records(tmp_path / "out", "test")] == [(0, "7"), (1, "9")]
    assert train[0].captions == ["A person number 11.", "Another."]
    # LLaVA-ReID's T-ReID protocol starts each dialogue from the annotation
    assert train[0].initial_description == "A person number 11."
    assert train[0].key == f"{fmt}/imgs/CUHK01/a" and train[1].image_path == "imgs/CUHK01/b.png"
    assert json.loads((tmp_path / "out" / "conversion.json").read_text())["counts"]["train"] == 3


def test_interactive_pedes_questions_types(tmp_path):
    extra = {
        i: {
            "initial_description": f"I saw person {i}.",
            "fine-grained_description": f"I saw person {i} in red.",
            "questions": [
                "Was she carrying a bag?",
                "What colour were the shoes?",
                "Which coat? A) red coat B) blue coat C) green coat D) black coat",
            ],
            "answers": ["No, she carried nothing.", "They were white.", "She wore a red coat."],
        }
        for i in range(len(CUHK))
    }
    pedes_tree(tmp_path / "src", "Interactive-PEDES_interactive_annos.json", "file_path", CUHK, extra)
    convert("interactive-pedes", tmp_path / "src", tmp_path / "out", progress=False)
    rec = load_records(tmp_path / "out", "train")[0]
    assert rec.initial_description == "I saw person 0." and rec.fine_description == "I saw person 0 in red."
    assert [q.qtype for q in rec.qas] == ["yes_no", "descriptive", "multiple_choice"]
    assert rec.qas[2].question == "Which coat?"
    assert rec.qas[2].options == ("red coat", "blue coat", "green coat", "black coat")


def test_parse_qa_yes_answers():
    assert parse_qa("Is he tall?", "Yes, he is tall.", "w").qtype == "yes_no"
    assert parse_qa("Is he tall?", "Yesterday he was.", "w").qtype == "descriptive"


def test_missing_and_corrupt_images_stop_the_conversion_unless_skipped(tmp_path, capsys):
    src = tmp_path / "src"
    pedes_tree(src, "reid_raw.json", "file_path", CUHK)
    (src / "imgs" / "test" / "d.jpg").unlink()
    (src / "imgs" / "cam" / "c.jpg").write_bytes(b"\xff\xd8\xff truncated")
    args = ["data", "convert", "--format", "cuhk-pedes", "--root", str(src), "--out", str(tmp_path / "out"), "--quiet"]
    assert ireid_main(args) == 1
    err = capsys.readouterr().err
    assert "1 missing image(s)" in err and "d.jpg" in err
    assert "1 unreadable image(s)" in err and "c.jpg" in err
    assert not (tmp_path / "out").exists(), "nothing is written when images are missing"
    assert ireid_main([*args, "--skip-missing"]) == 0
    out = capsys.readouterr().out
    assert "train: 2 images, 1 identities" in out and "skipped 2" in out


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ('[{"split": "train",', "malformed JSON at line 1"),
        (json.dumps({"split": "train"}), "expected a JSON list"),
        (json.dumps([{"split": "dev", "file_path": "a.jpg", "id": 1, "captions": ["x"]}]), "record 0: field 'split'"),
        (json.dumps([{"split": "train", "id": 1, "captions": ["x"]}]), "record 0: missing field 'file_path'"),
        (json.dumps([{"split": "train", "file_path": "a.jpg", "id": 1, "captions": [""]}]), "field 'captions[0]'"),
        (
            json.dumps([{"split": "train", "file_path": "../../etc/passwd", "id": 1, "captions": ["x"]}]),
            "leaves the image folder",
        ),
    ],
)
def test_malformed_annotations_name_file_and_record(tmp_path, content, message):
    (tmp_path / "reid_raw.json").write_text(content)
    with pytest.raises(ConversionError, match=re.escape(message)) as err:
        convert("cuhk-pedes", tmp_path, tmp_path / "out", progress=False)
    assert "reid_raw.json" in str(err.value)


def test_cli_reports_annotation_errors(tmp_path, capsys):
    (tmp_path / "reid_raw.json").write_text("[1, 2]")
    code = ireid_main(
        [
            "data",
            "convert",
            "--format",
            "cuhk-pedes",
            "--root",
            str(tmp_path),
            "--out",
            str(tmp_path / "out"),
            "--quiet",
        ]
    )
    assert code == 2 and "record 0: expected an object" in capsys.readouterr().err


def test_market1501(tmp_path):
    names = {
        "bounding_box_train": ["0002_c1s1_000451_03.jpg", "0002_c2s1_000301_01.jpg", "0007_c3s1_000551_01.jpg"],
        "bounding_box_test": [
            "0000_c1s1_000000_00.jpg",
            "-1_c1s1_000401_03.jpg",
            "0003_c2s1_000151_01.jpg",
            "0010_c5s1_000301_01.jpg",
        ],
        "query": ["0003_c1s1_000151_01.jpg", "0010_c6s1_000301_01.jpg"],
    }
    for folder, files in names.items():
        (tmp_path / "m" / folder).mkdir(parents=True)
        for f in files:
            (tmp_path / "m" / folder / f).write_bytes(jpeg())
    report = convert("market1501", tmp_path / "m", tmp_path / "out", progress=False)
    assert report.skipped_junk == 1 and report.counts == {"test": 5, "train": 3}
    train = load_records(tmp_path / "out", "train")
    assert [(r.pid, r.camid) for r in train] == [(0, 1), (0, 2), (1, 3)]
    test = load_records(tmp_path / "out", "test")
    by_role = {(r.role, r.orig_pid): (r.pid, r.camid) for r in test}
    assert by_role[("gallery", "-1")] == (-1, 1)
    assert by_role[("query", "3")][0] == by_role[("gallery", "3")][0] == 0
    assert by_role[("query", "10")] == (1, 6)


def test_market1501_bad_name(tmp_path):
    (tmp_path / "query").mkdir()
    (tmp_path / "query" / "img001.jpg").write_bytes(jpeg())
    with pytest.raises(ConversionError, match=r"img001\.jpg: file name"):
        convert("market1501", tmp_path, tmp_path / "out", progress=False)


def test_folder_of_person_folders(tmp_path):
    for rel, data in [("train/alice/1.jpg", jpeg()), ("train/alice/2.png", png()), ("train/bob/1.jpg", jpeg()),
                      ("test/carol/a.jpg", jpeg()), ("test/carol/notes.txt", b"not an image")]:  # fmt: skip
        (tmp_path / "f" / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / "f" / rel).write_bytes(data)
    (tmp_path / "f" / "train" / "alice" / "Thumbs.db").write_bytes(b"junk")
    report = convert("folder", tmp_path / "f", tmp_path / "out", progress=False)
    assert report.counts == {"test": 1, "train": 3}
    train = load_records(tmp_path / "out", "train")
    assert [(r.pid, r.orig_pid) for r in train] == [(0, "alice"), (0, "alice"), (1, "bob")]
    assert not train[0].captions and not train[0].initial_description  # text comes from build-interactive


@pytest.mark.parametrize(
    ("tree", "message"),
    [
        ({"people/a/1.jpg"}, "no train/, val/ or test/ folder"),
        ({"train/1.jpg"}, r"1\.jpg: a file directly in a split folder"),
        ({"train/a/1.jpg", "train/b/readme.txt"}, "b: a person folder without images"),
    ],
)
def test_folder_layout_errors_name_the_path(tmp_path, tree, message):
    for rel in tree:
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_bytes(jpeg())
    with pytest.raises(ConversionError, match=message):
        convert("folder", tmp_path, tmp_path / "out", progress=False)


def test_non_utf8_annotations_and_overlong_captions_name_the_file_and_field(tmp_path):
    pedes_tree(tmp_path / "a", "reid_raw.json", "file_path", CUHK[:1])
    raw = (tmp_path / "a" / "reid_raw.json").read_bytes()
    (tmp_path / "a" / "reid_raw.json").write_bytes(raw.replace(b"Another.", b"Anoth\xe9r."))  # Latin-1 bytes
    with pytest.raises(ConversionError, match=r"reid_raw\.json: not UTF-8 text \(byte \d+\)"):
        convert("cuhk-pedes", tmp_path / "a", tmp_path / "out", progress=False)
    entries = pedes_tree(tmp_path / "b", "reid_raw.json", "file_path", CUHK[:2])
    entries[1]["captions"][1] = "x" * 100_000
    (tmp_path / "b" / "reid_raw.json").write_text(json.dumps(entries))
    with pytest.raises(ConversionError, match=r"record 1: field 'captions\[1\]': 100000 characters, more than 8192"):
        convert("cuhk-pedes", tmp_path / "b", tmp_path / "out", progress=False)
    assert not (tmp_path / "out").exists()  # nothing written


def test_a_record_the_loader_would_refuse_is_never_made():
    from ireid.core.records import Record, RecordError

    with pytest.raises(RecordError, match=r"field 'captions\[0\]': text of 9000 characters"):
        Record(key="k", pid=0, split="train", source="s", captions=["x" * 9000])
    with pytest.raises(RecordError, match=r"field 'sub_captions\[1\]': empty text"):
        Record(key="k", pid=0, split="train", source="s", sub_captions=["fine", ""])


def test_two_images_that_become_one_key_are_refused_naming_both(tmp_path):
    pedes_tree(tmp_path / "src", "reid_raw.json", "file_path", [(1, "train", "a/x.jpg"), (2, "train", "a/x.png")])
    with pytest.raises(ConversionError, match=r"record 0 and .*record 1: both become sample key 'cuhk-pedes/imgs/a/x'"):
        convert("cuhk-pedes", tmp_path / "src", tmp_path / "out", progress=False)
    assert not (tmp_path / "out").exists()


def test_a_failed_write_leaves_no_temporary_shard(tmp_path, monkeypatch):
    from ireid.core import shards

    pedes_tree(tmp_path / "src", "reid_raw.json", "file_path", CUHK)

    def fail_midway(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(shards.ShardWriter, "_finish_shard", fail_midway)
    with pytest.raises(OSError, match="disk full"):
        convert("cuhk-pedes", tmp_path / "src", tmp_path / "out", progress=False, shard_size=2)
    assert not list((tmp_path / "out").glob("*.tmp"))

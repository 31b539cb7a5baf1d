"""Converters of the visible-infrared data sets (SYSU-MM01, RegDB) and UFine6926, on tiny trees in their layouts."""

import io
import json
import re

import pytest
from PIL import Image

from ireid.core.converters.cli import convert
from ireid.core.converters.common import ConversionError
from ireid.core.loader import load_records


def image(path, fmt="JPEG", shade=90):
    path.parent.mkdir(parents=True, exist_ok=True)
    buf = io.BytesIO()
    Image.new("RGB", (4, 8), (shade, shade, shade)).save(buf, format=fmt)
    path.write_bytes(buf.getvalue())


# ------------------------------------------------------------------------------------------------------ SYSU-MM01

SYSU_IDS = {"train_id.txt": "12,3\n", "val_id.txt": "5", "test_id.txt": "7,9\n"}
# person -> cameras with one image each
SYSU_IMAGES = {12: (1, 3), 3: (2, 6), 5: (4, 6), 7: (1, 3, 6), 9: (5, 3)}


def sysu_tree(root):
    for cam in range(1, 7):
        (root / f"cam{cam}").mkdir(parents=True, exist_ok=True)
    for pid, cams in SYSU_IMAGES.items():
        for cam in cams:
            image(root / f"cam{cam}" / f"{pid:04d}" / "0001.jpg")
    (root / "cam1" / "0012" / "Thumbs.db").write_bytes(b"junk")
    (root / "cam1" / "0012" / ".DS_Store").write_bytes(b"junk")
    (root / "exp").mkdir()
    for name, text in SYSU_IDS.items():
        (root / "exp" / name).write_text(text)
    return root


def test_sysu_mm01(tmp_path):
    root = sysu_tree(tmp_path / "sysu")
    report = convert("sysu-mm01", root, tmp_path / "out", progress=False)
    assert report.counts == {"test": 5, "train": 4, "val": 2}
    assert report.ids == {"test": 2, "train": 2, "val": 1}
    train = load_records(tmp_path / "out", "train")
    assert sorted((r.orig_pid, r.pid, r.camid, r.modality, r.role) for r in train) == [
        ("12", 1, 1, "rgb", None),
        ("12", 1, 3, "infrared", None),
        ("3", 0, 2, "rgb", None),
        ("3", 0, 6, "infrared", None),
    ]
    test = load_records(tmp_path / "out", "test")
    # all-search: infrared images query, visible ones are the gallery
    assert sorted((r.orig_pid, r.pid, r.camid, r.role) for r in test) == [
        ("7", 0, 1, "gallery"),
        ("7", 0, 3, "query"),
        ("7", 0, 6, "query"),
        ("9", 1, 3, "query"),
        ("9", 1, 5, "gallery"),
    ]
    assert all((r.modality == "infrared") == (r.role == "query") for r in test)
    assert {r.key for r in test} >= {"sysu-mm01/cam3/0007/0001", "sysu-mm01/cam5/0009/0001"}


@pytest.mark.parametrize(
    ("damage", "file", "message"),
    [
        (lambda r: (r / "cam4").rename(r / "cam4_old"), "cam4", "folder not found (expected the SYSU-MM01 layout"),
        (lambda r: (r / "exp" / "val_id.txt").unlink(), "exp/val_id.txt", "list file not found"),
        (lambda r: (r / "exp" / "test_id.txt").write_text("7,9\n10,x\n"), "exp/test_id.txt", "line 2: 'x' is not"),
        (lambda r: (r / "exp" / "test_id.txt").write_text("7,9,7"), "exp/test_id.txt", "line 1: person 7 listed twice"),
        (lambda r: (r / "exp" / "test_id.txt").write_text(" \n"), "exp/test_id.txt", "no person ids"),
        (lambda r: (r / "exp" / "test_id.txt").write_text("7,12"), "exp/test_id.txt", "person 12 is also listed in"),
        (lambda r: (r / "exp" / "test_id.txt").write_text("7,9,44"), "exp/test_id.txt", "person 44 has no images"),
        (lambda r: (r / "exp" / "train_id.txt").write_bytes(b"12,\xff3"), "exp/train_id.txt", "not UTF-8"),
    ],
)
def test_sysu_mm01_bad_input(tmp_path, damage, file, message):
    root = sysu_tree(tmp_path / "sysu")
    damage(root)
    with pytest.raises(ConversionError, match=re.escape(message)) as err:
        convert("sysu-mm01", root, tmp_path / "out", progress=False)
    assert str(err.value).startswith(f"{root / file}: ")
    assert not (tmp_path / "out").exists()


# ---------------------------------------------------------------------------------------------------------- RegDB

# split -> (folder id, label) of the people, two images per person and modality
REGDB = {"train": [(1, 0), (4, 1)], "test": [(2, 0), (3, 1)]}


def regdb_tree(root):
    for split, people in REGDB.items():
        for folder, kind in (("Visible", "visible"), ("Thermal", "thermal")):
            lines = []
            for pid, label in people:
                for frame in (1, 2):
                    rel = f"{folder}/{pid}/{kind}_{pid}_{frame}.bmp"
                    image(root / rel, fmt="BMP", shade=40 * frame)
                    lines.append(f"{rel} {label}")
            (root / "idx").mkdir(exist_ok=True)
            (root / "idx" / f"{split}_{kind}_1.txt").write_text("\n".join(lines) + "\n")
    return root


def test_regdb_trial_1(tmp_path):
    root = regdb_tree(tmp_path / "RegDB")
    (root / "idx" / "train_visible_2.txt").write_text("other trials are not read\n")
    report = convert("regdb", root, tmp_path / "out", progress=False)
    assert report.counts == {"test": 8, "train": 8} and report.ids == {"test": 2, "train": 2}
    test = load_records(tmp_path / "out", "test")
    by_key = {r.key: r for r in test}
    query = by_key["regdb/Visible/3/visible_3_1"]
    assert (query.pid, query.orig_pid, query.camid, query.modality, query.role) == (1, "1", 1, "rgb", "query")
    gallery = by_key["regdb/Thermal/3/thermal_3_2"]
    assert (gallery.pid, gallery.camid, gallery.modality, gallery.role) == (1, 2, "infrared", "gallery")
    assert gallery.image_path == "Thermal/3/thermal_3_2.bmp"
    train = load_records(tmp_path / "out", "train")
    assert {r.role for r in train} == {None}
    assert sorted((r.orig_pid, r.pid, r.modality) for r in train)[::2] == [
        ("0", 0, "infrared"),
        ("0", 0, "rgb"),
        ("1", 1, "infrared"),
        ("1", 1, "rgb"),
    ]


@pytest.mark.parametrize(
    ("file", "content", "message"),
    [
        ("train_visible_1.txt", "Visible/1/visible_1_1.bmp\n", "line 1: expected '<relative path> <label>'"),
        ("test_thermal_1.txt", "\nThermal/2/thermal_2_1.bmp zero\n", "line 2: expected '<relative path> <label>'"),
        ("test_visible_1.txt", "../secret.bmp 0\n", "line 1: '../secret.bmp' leaves the data set folder"),
        ("test_visible_1.txt", "/etc/secret.bmp 0\n", "line 1: '/etc/secret.bmp' leaves the data set folder"),
        ("train_thermal_1.txt", "", "no images listed"),
        ("train_thermal_1.txt", b"Thermal/1/thermal_1_1.bmp 0\n\xe9\n", "not UTF-8"),
    ],
)
def test_regdb_bad_list(tmp_path, file, content, message):
    root = regdb_tree(tmp_path / "RegDB")
    path = root / "idx" / file
    path.write_bytes(content if isinstance(content, bytes) else content.encode())
    with pytest.raises(ConversionError, match=re.escape(message)) as err:
        convert("regdb", root, tmp_path / "out", progress=False)
    assert str(err.value).startswith(f"{path}: ")


def test_regdb_person_without_images_of_a_modality(tmp_path):
    root = regdb_tree(tmp_path / "RegDB")
    (root / "idx" / "test_thermal_1.txt").write_text("Thermal/2/thermal_2_1.bmp 0\n")
    with pytest.raises(ConversionError, match=r"no image of person 1, who is listed in .*test_visible_1\.txt") as err:
        convert("regdb", root, tmp_path / "out", progress=False)
    assert str(err.value).startswith(f"{root / 'idx' / 'test_thermal_1.txt'}: ")


@pytest.mark.parametrize("missing", ["idx/test_visible_1.txt", "Thermal"])
def test_regdb_missing_layout(tmp_path, missing):
    root = regdb_tree(tmp_path / "RegDB")
    target = root / missing
    target.rename(target.with_name("moved"))
    with pytest.raises(ConversionError, match="expected the RegDB layout") as err:
        convert("regdb", root, tmp_path / "out", progress=False)
    assert str(err.value).startswith(f"{target}: ")


# ------------------------------------------------------------------------------------------------------ UFine6926


def test_ufine6926(tmp_path):
    root = tmp_path / "UFine6926"
    records = [(1, "train", 1), (1, "train", 2), (8, "train", 3), (40, "test", 4), (41, "test", 5), (60, "val", 6)]
    entries = []
    for pid, split, n in records:
        image(root / "images" / f"{n}.jpg")
        captions = [f"A woman {n} with brown hair below her shoulders.", f"A woman {n} in a white jacket."]
        entries.append({"split": split, "id": pid, "file_path": f"images/{n}.jpg", "captions": captions})
    (root / "UFine6926.json").write_text(json.dumps(entries))
    report = convert("ufine6926", root, tmp_path / "out", progress=False)
    assert report.counts == {"test": 2, "train": 3, "val": 1}
    train = load_records(tmp_path / "out", "train")
    assert [(r.pid, r.orig_pid) for r in train] == [(0, "1"), (0, "1"), (1, "8")]
    assert train[0].image_path == "images/1.jpg" and train[0].key == "ufine6926/images/1"
    assert train[0].captions == ["A woman 1 with brown hair below her shoulders.", "A woman 1 in a white jacket."]
    assert train[0].initial_description == train[0].captions[0]
    assert [r.pid for r in load_records(tmp_path / "out", "test")] == [0, 1]


def test_ufine6926_missing_annotation(tmp_path):
    with pytest.raises(ConversionError, match=r"UFine6926\.json: annotation file not found"):
        convert("ufine6926", tmp_path, tmp_path / "out", progress=False)


@pytest.mark.parametrize(("fmt", "tree", "direction"), [("sysu-mm01", sysu_tree, "infrared-to-visible"),
                                                          ("regdb", regdb_tree, "visible-to-infrared")])  # fmt: skip
def test_converted_sets_pose_chatreids_visible_infrared_task(tmp_path, fmt, tree, direction):
    """The modalities and roles a converter writes are what ChatReID's visible-infrared evaluation reads."""
    from ireid.chatreid.eval_tasks import build_task

    convert(fmt, tree(tmp_path / "src"), tmp_path / "out", progress=False)
    records = {r.key: r for r in load_records(tmp_path / "out", "test")}
    task = build_task("visible-infrared", list(records.values()), direction=direction, where=fmt)
    query_side, gallery_side = direction.split("-to-")
    side = {"visible": "rgb", "infrared": "infrared"}
    assert task.queries and all(records[q.key].modality == side[query_side] for q in task.queries)
    assert {r.modality for r in task.gallery} == {side[gallery_side]}

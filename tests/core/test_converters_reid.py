"""Image Re-ID converters: MSMT17, CUHK03-NP, LTCC and PRCC on tiny trees in each one's published layout."""

import re

import pytest

from ireid.core.converters.cli import FORMAT_CHOICES, convert
from ireid.core.converters.common import ConversionError
from ireid.core.loader import load_records
from tests.helpers import jpeg, png

SIZE = (4, 8)  # width, height


def write_images(root, rels):
    """Tiny decodable images at `root/rel`, PNG or JPEG by extension; anything else is written as junk bytes."""
    for rel in rels:
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        if rel.endswith(".png"):
            path.write_bytes(png(size=SIZE))
        elif rel.endswith(".jpg"):
            path.write_bytes(jpeg(size=SIZE))
        else:
            path.write_bytes(b"not an image")


def fields(records, *names):
    return [tuple(getattr(r, n) for n in names) for r in records]


def test_formats_are_registered():
    assert {"msmt17", "cuhk03-labeled", "cuhk03-detected", "ltcc", "prcc"} <= set(FORMAT_CHOICES)


# --- MSMT17 ---

MSMT_LISTS = {
    "list_train.txt": [("0000/0000_000_01_0303morning_0015_0.jpg", 0), ("0005/0005_000_15_0303noon_0100_0.jpg", 5)],
    "list_val.txt": [("0000/0000_001_02_0303morning_0020_0.jpg", 0)],
    "list_query.txt": [("0000/0000_000_03_0113morning_0010_0.jpg", 0)],
    "list_gallery.txt": [("0000/0000_001_04_0113noon_0050_1.jpg", 0), ("0002/0002_000_05_0113noon_0070_0.jpg", 2)],
}


def msmt_tree(root, train="train", test="test"):
    for name, rows in MSMT_LISTS.items():
        folder = train if name in ("list_train.txt", "list_val.txt") else test
        write_images(root / folder, [rel for rel, _ in rows])
        (root / name).write_text("".join(f"{rel} {label}\n" for rel, label in rows))
    return root


@pytest.mark.parametrize(("train", "test"), [("train", "test"), ("mask_train_v2", "mask_test_v2")])
def test_msmt17(tmp_path, train, test):
    report = convert("msmt17", msmt_tree(tmp_path / "m", train, test), tmp_path / "out", progress=False)
    assert report.counts == {"test": 3, "train": 3} and report.skipped_junk == 0
    train_records = load_records(tmp_path / "out", "train")
    # list_val joins train (same people); the camera is the file name's third field
    assert fields(train_records, "pid", "orig_pid", "camid", "role") == [
        (0, "0", 1, None),
        (1, "5", 15, None),
        (0, "0", 2, None),
    ]
    assert train_records[0].image_path == f"{train}/0000/0000_000_01_0303morning_0015_0.jpg"
    test_records = load_records(tmp_path / "out", "test")
    assert fields(test_records, "pid", "camid", "role") == [(0, 3, "query"), (0, 4, "gallery"), (1, 5, "gallery")]
    assert {r.clothes_id for r in train_records + test_records} == {0}


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"0000/0000_000_03_x.jpg\n", "line 1: expected '<relative path> <label>'"),
        (b"\n0000/0000_000_03_x.jpg zero\n", "line 2: expected '<relative path> <label>'"),
        (b"../0000_000_03_x.jpg 0\n", "line 1: '../0000_000_03_x.jpg' leaves the image folder"),
        (b"/abs/0000_000_03_x.jpg 0\n", "line 1: '/abs/0000_000_03_x.jpg' leaves the image folder"),
        (b"0000/img.jpg 0\n", "line 1: file name 'img.jpg' does not follow"),
        (b"0000/0000_000_16_x.jpg 0\n", "line 1: camera 16"),
        (b"0000/0000_000_03_x.jpg 0\n0000/0000_000_03_x.jpg 0\n", "line 2: '0000/0000_000_03_x.jpg' is listed twice"),
        (b"0000/0000_000_03_\xff.jpg 0\n", "not UTF-8"),
        (b"\n", "no images listed"),
    ],
)
def test_msmt17_bad_list_names_file_and_line(tmp_path, content, message):
    (msmt_tree(tmp_path) / "list_query.txt").write_bytes(content)
    with pytest.raises(ConversionError, match=re.escape(message)) as err:
        convert("msmt17", tmp_path, tmp_path / "out", progress=False)
    assert "list_query.txt" in str(err.value)


def test_msmt17_missing_parts_say_what_layout_was_expected(tmp_path):
    (msmt_tree(tmp_path) / "list_val.txt").unlink()
    with pytest.raises(ConversionError, match=r"list_val\.txt: list file not found \(expected the MSMT17 layout"):
        convert("msmt17", tmp_path, tmp_path / "out", progress=False)
    (tmp_path / "test").rename(tmp_path / "images")
    with pytest.raises(ConversionError, match=r"no image folders found \(expected the MSMT17 layout: train/ and test/"):
        convert("msmt17", tmp_path, tmp_path / "out", progress=False)


def test_msmt17_listed_image_missing_is_reported_with_its_line(tmp_path):
    msmt_tree(tmp_path)
    (tmp_path / "test" / "0002" / "0002_000_05_0113noon_0070_0.jpg").unlink()
    report = convert("msmt17", tmp_path, tmp_path / "out", progress=False)
    assert len(report.missing) == 1 and "list_gallery.txt: line 2" in report.missing[0]
    assert not (tmp_path / "out").exists()


# --- CUHK03-NP ---

CUHK03 = {
    "labeled": {
        "bounding_box_train": ["0001_c1_1.png", "0001_c2_6.png", "0005_c1_2.png"],
        "bounding_box_test": ["0003_c1_21.png", "0003_c2_27.png", "0004_c2_30.png"],
        "query": ["0003_c1_22.png", "0003_c2_28.png", "Thumbs.db", ".DS_Store"],
    },
    "detected": {
        "bounding_box_train": ["0001_c1_1.png"],
        "bounding_box_test": ["0003_c1_21.png"],
        "query": ["0003_c2_28.png"],
    },
}


def cuhk03_tree(root):
    for subset, folders in CUHK03.items():
        for folder, names in folders.items():
            write_images(root / subset / folder, names)
    return root


def test_cuhk03_labeled_and_detected(tmp_path):
    root = cuhk03_tree(tmp_path / "cuhk03-np")
    report = convert("cuhk03-labeled", root, tmp_path / "lab", progress=False)
    assert report.counts == {"test": 5, "train": 3} and report.skipped_junk == 0
    assert fields(load_records(tmp_path / "lab", "train"), "pid", "orig_pid", "camid") == [
        (0, "1", 1),
        (0, "1", 2),
        (1, "5", 1),
    ]
    test = load_records(tmp_path / "lab", "test")
    assert sorted(fields(test, "role", "pid", "camid")) == [
        ("gallery", 0, 1),
        ("gallery", 0, 2),
        ("gallery", 1, 2),
        ("query", 0, 1),
        ("query", 0, 2),
    ]
    assert test[0].image_path.startswith("labeled/")
    assert convert("cuhk03-detected", root, tmp_path / "det", progress=False).counts == {"test": 2, "train": 1}
    assert load_records(tmp_path / "det", "train")[0].image_path == "detected/bounding_box_train/0001_c1_1.png"


def test_cuhk03_missing_subset_and_bad_name(tmp_path):
    write_images(tmp_path / "labeled" / "query", ["0003_1_22.png"])
    with pytest.raises(ConversionError, match=r"detected: folder not found \(expected the CUHK03-NP layout"):
        convert("cuhk03-detected", tmp_path, tmp_path / "out", progress=False)
    with pytest.raises(ConversionError, match=r"0003_1_22\.png: file name does not follow"):
        convert("cuhk03-labeled", tmp_path, tmp_path / "out", progress=False)


# --- LTCC ---

LTCC = {
    "train": ["001_1_c1_000100.png", "001_2_c2_000200.png", "003_1_c3_000300.png", "Thumbs.db"],
    "query": ["010_1_c1_000001.png"],
    "test": ["010_1_c2_000002.png", "010_2_c3_000003.png", "011_1_c4_000004.png", ".DS_Store"],
}


def ltcc_tree(root):
    for folder, names in LTCC.items():
        write_images(root / folder, names)
    return root


def test_ltcc(tmp_path):
    report = convert("ltcc", ltcc_tree(tmp_path / "LTCC_ReID"), tmp_path / "out", progress=False)
    assert report.counts == {"test": 4, "train": 3}
    train = load_records(tmp_path / "out", "train")
    # one clothes_id per (person, outfit): person 1's two outfits differ, person 3's first outfit is not person 1's
    assert fields(train, "pid", "orig_pid", "camid", "clothes_id") == [(0, "1", 1, 0), (0, "1", 2, 1), (1, "3", 3, 2)]
    test = {r.image_path.split("/")[-1]: r for r in load_records(tmp_path / "out", "test")}
    query, same, changed, other = (test[n] for n in ("010_1_c1_000001.png", *LTCC["test"][:3]))
    assert (query.role, same.role, other.role) == ("query", "gallery", "gallery")
    assert query.pid == same.pid == changed.pid != other.pid
    assert query.clothes_id == same.clothes_id != changed.clothes_id
    assert other.clothes_id not in (query.clothes_id, changed.clothes_id)
    assert (query.camid, same.camid, changed.camid) == (1, 2, 3)


def test_ltcc_missing_folder_and_bad_name(tmp_path):
    write_images(tmp_path / "train", ["094_c9_015923.png"])
    with pytest.raises(ConversionError, match=r"query: folder not found \(expected the LTCC layout"):
        convert("ltcc", tmp_path, tmp_path / "out", progress=False)
    (tmp_path / "query").mkdir()
    (tmp_path / "test").mkdir()
    with pytest.raises(ConversionError, match=r"094_c9_015923\.png: file name does not follow PPP_O_cC_FFFFFF\.png"):
        convert("ltcc", tmp_path, tmp_path / "out", progress=False)


# --- PRCC ---

PRCC = [
    "rgb/train/001/A_cropped_rgb001.jpg",
    "rgb/train/001/B_cropped_rgb002.jpg",
    "rgb/train/001/C_cropped_rgb003.jpg",
    "rgb/train/002/A_cropped_rgb001.jpg",
    "rgb/train/Thumbs.db",
    "rgb/val/004/B_cropped_rgb001.jpg",
    "rgb/val/004/C_cropped_rgb002.jpg",
    "rgb/test/A/010/cropped_rgb001.jpg",
    "rgb/test/B/010/cropped_rgb002.jpg",
    "rgb/test/C/010/cropped_rgb003.jpg",
    "rgb/test/A/011/cropped_rgb001.jpg",
    "rgb/test/C/011/.DS_Store",
    "rgb/test/C/011/cropped_rgb002.jpg",
]


def test_prcc(tmp_path):
    write_images(tmp_path, PRCC)
    report = convert("prcc", tmp_path, tmp_path / "out", progress=False)
    assert report.counts == {"test": 5, "train": 4, "val": 2}
    train = load_records(tmp_path / "out", "train")
    # cameras A and B see the same clothes, C other clothes
    assert fields(train, "pid", "camid", "clothes_id") == [(0, 1, 0), (0, 2, 0), (0, 3, 1), (1, 1, 2)]
    assert fields(load_records(tmp_path / "out", "val"), "pid", "orig_pid", "camid", "clothes_id") == [
        (0, "4", 2, 0),
        (0, "4", 3, 1),
    ]
    test = {r.image_path: r for r in load_records(tmp_path / "out", "test")}
    a, b, c = (test[f"rgb/test/{cam}/010/cropped_rgb00{i}.jpg"] for i, cam in enumerate("ABC", 1))
    # the benchmark's test: A is the gallery, B (same clothes) and C (other clothes) the queries
    assert fields([a, b, c], "role", "camid") == [("gallery", 1), ("query", 2), ("query", 3)]
    assert a.pid == b.pid == c.pid and a.clothes_id == b.clothes_id != c.clothes_id
    other_a, other_c = test["rgb/test/A/011/cropped_rgb001.jpg"], test["rgb/test/C/011/cropped_rgb002.jpg"]
    assert other_a.pid == other_c.pid != a.pid and other_a.clothes_id != other_c.clothes_id
    assert not {other_a.clothes_id, other_c.clothes_id} & {a.clothes_id, c.clothes_id}


@pytest.mark.parametrize(
    ("rels", "message"),
    [
        (PRCC[:4], r"rgb/val: folder not found \(expected the PRCC layout"),
        ([p for p in PRCC if "/C/" not in p], r"rgb/test/C: folder not found \(expected the PRCC layout"),
        ([*PRCC, "rgb/train/001/cropped_rgb009.jpg"], r"cropped_rgb009\.jpg: file name does not start with its camera"),
        ([*PRCC, "rgb/train/p001/A_x.jpg"], r"p001: not a person folder named by its id"),
        ([*PRCC, "rgb/test/B/010/notes.txt"], r"notes\.txt: not a \.jpg or \.png image"),
    ],
)
def test_prcc_bad_layout_names_the_path(tmp_path, rels, message):
    write_images(tmp_path, rels)
    with pytest.raises(ConversionError, match=message):
        convert("prcc", tmp_path, tmp_path / "out", progress=False)


def test_converted_cloth_changing_sets_pose_chatreids_cloth_changing_task(tmp_path):
    """The outfits a converter writes are what ChatReID's cloth-changing evaluation reads: the query's own outfit
    is not counted, the same person in other clothes is."""
    from ireid.chatreid.eval_tasks import build_task

    convert("ltcc", ltcc_tree(tmp_path / "LTCC_ReID"), tmp_path / "ltcc", progress=False)
    test = load_records(tmp_path / "ltcc", "test")
    task = build_task("cloth-changing", test, where="ltcc")
    [query] = task.queries
    counted = {
        r.image_path.split("/")[-1] for r, keep in zip(task.gallery, task.counted(query).tolist(), strict=True) if keep
    }
    assert counted == {"010_2_c3_000003.png", "011_1_c4_000004.png"}  # same outfit (and camera) left out
    write_images(tmp_path / "prcc-src", PRCC)
    convert("prcc", tmp_path / "prcc-src", tmp_path / "prcc", progress=False)
    prcc = build_task("cloth-changing", load_records(tmp_path / "prcc", "test"), where="prcc")
    assert {q.camid for q in prcc.queries} <= {2, 3} and prcc.queries  # B and C query the A gallery

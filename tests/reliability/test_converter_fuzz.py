"""A seeded fuzz of every converter that reads annotation or list files: valid trees with their annotations mutated
(bytes flipped, cut short, made non-UTF-8; fields deleted, retyped, emptied, made huge; records duplicated; paths
sent out of the folder). Every case must end as a conversion or one clear line: `ireid data convert` returns 0, 1
(images missing) or 2 (a user's mistake), never a traceback, and never leaves a half-written split behind."""

from __future__ import annotations

import json
import random
from collections.abc import Callable
from pathlib import Path

import pytest

from ireid.app.cli import main
from tests.core.test_converters import CUHK, pedes_tree
from tests.core.test_converters_cross import regdb_tree, sysu_tree
from tests.core.test_converters_reid import msmt_tree

CASES_PER_FORMAT = 30
JSON_FORMATS = {
    "cuhk-pedes": ("reid_raw.json", "file_path"),
    "icfg-pedes": ("ICFG-PEDES.json", "file_path"),
    "rstpreid": ("data_captions.json", "img_path"),
    "interactive-pedes": ("Interactive-PEDES_interactive_annos.json", "file_path"),
}
INTERACTIVE_FIELDS = {
    "initial_description": "I saw a person.",
    "fine-grained_description": "I saw a person in red.",
    "questions": ["Was she carrying a bag?", "Which coat? A) red B) blue C) green D) black"],
    "answers": ["No, nothing.", "A red coat."],
}
ODD_VALUES: list[object] = [None, 7, -1, 3.5, True, "", " ", "x" * 20_000, [], {}, ["a", 3], "../../etc/passwd",
                            "/etc/passwd", "imgs/\u202etxt.jpg", "caf\u00e9 \U0001f600"]  # fmt: skip


def mutate_bytes(data: bytes, rng: random.Random) -> bytes:
    kind = rng.choice(["flip", "cut", "latin1", "insert"])
    if kind == "cut":
        return data[: rng.randrange(len(data))]
    if kind == "latin1":
        at = rng.randrange(len(data))
        return data[:at] + b"\xe9\xff" + data[at:]
    if kind == "insert":
        at = rng.randrange(len(data))
        return data[:at] + bytes(rng.randrange(256) for _ in range(rng.randint(1, 8))) + data[at:]
    out = bytearray(data)
    for _ in range(rng.randint(1, 5)):
        out[rng.randrange(len(out))] = rng.randrange(256)
    return bytes(out)


def mutate_json(entries: list[dict], rng: random.Random) -> object:
    entries = json.loads(json.dumps(entries))
    kind = rng.choice(["delete", "retype", "duplicate", "not-a-list", "not-an-object", "split"])
    record = rng.choice(entries)
    if kind == "delete":
        record.pop(rng.choice(sorted(record)))
    elif kind == "retype":
        record[rng.choice(sorted(record))] = rng.choice(ODD_VALUES)
    elif kind == "duplicate":
        twin = dict(record)
        path_field = "img_path" if "img_path" in record else "file_path"
        twin[path_field] = str(record[path_field]).rsplit(".", 1)[0] + rng.choice([".png", ".jpg"])  # a key clash
        entries.append(twin)
    elif kind == "not-a-list":
        return {"records": entries}
    elif kind == "not-an-object":
        entries[rng.randrange(len(entries))] = rng.choice(ODD_VALUES)
    else:
        record["split"] = rng.choice(["TRAIN", "dev", 1, None, "other"])
    return entries


def json_tree(fmt: str) -> Callable[[Path], list[Path]]:
    annotation, path_field = JSON_FORMATS[fmt]

    def build(root: Path) -> list[Path]:
        extra = {i: dict(INTERACTIVE_FIELDS) for i in range(len(CUHK))} if fmt == "interactive-pedes" else None
        pedes_tree(root, annotation, path_field, CUHK, extra)
        return [root / annotation]

    return build


LIST_FORMATS: dict[str, Callable[[Path], list[Path]]] = {
    "msmt17": lambda root: [p for p in [msmt_tree(root)] for p in sorted(p.glob("list_*.txt"))],
    "regdb": lambda root: sorted(regdb_tree(root).glob("idx/*.txt")),
    "sysu-mm01": lambda root: sorted(sysu_tree(root).glob("exp/*_id.txt")),
}


def mutate_lines(data: bytes, rng: random.Random) -> bytes:
    lines = data.decode().splitlines()
    kind = rng.choice(["duplicate", "extra-field", "bad-label", "escape", "blank", "drop"])
    at = rng.randrange(len(lines)) if lines else 0
    if not lines:
        return b"\n"
    if kind == "duplicate":
        lines.insert(at, lines[at])
    elif kind == "extra-field":
        lines[at] += " 7 extra"
    elif kind == "bad-label":
        lines[at] = lines[at].rsplit(" ", 1)[0] + " " + rng.choice(["-3", "x", "1e3", "", "99999999999999999999"])
    elif kind == "escape":
        lines[at] = rng.choice(["../../etc/passwd 0", "/etc/passwd 0", "a,b,,c", "0001,,"])
    elif kind == "blank":
        lines[at] = "   "
    else:
        del lines[at]
    return ("\n".join(lines) + "\n").encode()


def run_case(fmt: str, root: Path, out: Path, capsys) -> None:
    code = main(["data", "convert", "--format", fmt, "--root", str(root), "--out", str(out), "--quiet"])
    err = capsys.readouterr().err
    assert code in (0, 1, 2), (fmt, code)
    assert "Traceback" not in err
    if code == 2:
        assert err.startswith("error: ") and len([line for line in err.splitlines() if line.strip()]) == 1, err
    if code != 0:  # nothing left that looks like a converted split
        assert not list(out.glob("*.manifest.json")) or all(
            not json.loads(m.read_text()).get("complete") for m in out.glob("*.manifest.json")
        )
    assert not list(out.glob("*.tmp")), "a temporary file was left behind"


@pytest.mark.parametrize("fmt", [*JSON_FORMATS, *LIST_FORMATS])
def test_mutated_annotations_never_end_in_a_traceback(fmt: str, tmp_path: Path, capsys) -> None:
    rng = random.Random(f"fuzz:{fmt}")
    build = json_tree(fmt) if fmt in JSON_FORMATS else LIST_FORMATS[fmt]
    outcomes = []
    for case in range(CASES_PER_FORMAT):
        root = tmp_path / f"case{case}"
        files = build(root)
        target = rng.choice(files)
        data = target.read_bytes()
        if fmt in JSON_FORMATS and rng.random() < 0.6:
            data = json.dumps(mutate_json(json.loads(data), rng)).encode()
        elif fmt in LIST_FORMATS and rng.random() < 0.6:
            data = mutate_lines(data, rng)
        else:
            data = mutate_bytes(data, rng)
        target.write_bytes(data)
        run_case(fmt, root, tmp_path / f"out{case}", capsys)
        outcomes.append(case)
    assert len(outcomes) == CASES_PER_FORMAT

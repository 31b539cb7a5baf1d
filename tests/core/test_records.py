import pytest

from ireid.core.records import MAX_TEXT_CHARS, QA, Record, RecordError, make_key
from tests.helpers import make_record


def test_round_trip_keeps_every_field():
    rec = make_record(
        3,
        orig_pid="0042",
        role="query",
        sub_captions=["She wears a hat."],
        rda_groups=[["a", "b"], ["c"]],
        attributes={"hat": "cap"},
        image_path="x/y.jpg",
    )
    rec.qas.append(QA("Is it red?", "No, it is blue.", "yes_no"))
    rec.qas.append(QA("Which?", "It is blue.", "multiple_choice", options=("red", "blue", "green", "black")))
    back = Record.from_dict(rec.to_dict())
    assert back == rec


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"pid": "7"}, "pid"),
        ({"split": "training"}, "split"),
        ({"captions": ["ok", "  "]}, "captions[1]"),
        ({"captions": ["x" * (MAX_TEXT_CHARS + 1)]}, "captions[0]"),
        ({"role": "probe"}, "role"),
        ({"key": "a.b"}, "key"),
        ({"qas": [{"question": "Which?", "answer": "A.", "qtype": "multiple_choice", "options": ["a"]}]}, "options"),
        ({"qas": [{"question": "Q?", "answer": "A.", "qtype": "open"}]}, "qtype"),
        ({"attributes": {"hat": 3}}, "attributes"),
        ({"colour": "red"}, "unknown field"),
    ],
)
def test_errors_name_the_record_and_field(change, field):
    d = make_record(1).to_dict() | change
    with pytest.raises(RecordError) as err:
        Record.from_dict(d, where="file.json: record 5")
    assert "file.json: record 5" in str(err.value)
    assert field in str(err.value)


def test_missing_required_field():
    d = make_record(1).to_dict()
    del d["split"]
    with pytest.raises(RecordError, match="missing field 'split'"):
        Record.from_dict(d, where="r")


def test_make_key_is_webdataset_safe():
    assert make_key("cuhk-pedes", "CUHK01/0363004.png") == "cuhk-pedes/CUHK01/0363004_png"
    assert "." not in make_key("a.b", "c.d/e")


def test_texts_fall_back_to_fine_description():
    rec = make_record(0, captions=[])
    assert rec.texts == [rec.fine_description]

import json

import pytest

from ireid.core.loader import load_records
from ireid.core.shards import DatasetWriter, ShardError, ShardWriter, shard_paths
from tests.helpers import jpeg, png


def image_for(record):
    """JPEG for odd ids, PNG for even ones, so both encodings travel."""
    shade = record.pid * 20 % 255
    return (jpeg((shade, 0, 0)), "jpg") if record.pid % 2 else (png((0, shade, 0)), "png")


def write_all(out, records, shard_size=3):
    writer = DatasetWriter(out, max_samples=shard_size)
    for r in records:
        writer.write(r, *image_for(r))
    return writer.close()


def test_round_trip_and_shard_layout(tmp_path, records):
    counts = write_all(tmp_path, records)
    assert counts == {"train": 10}
    assert [p.name for p in shard_paths(tmp_path, "train")] == [f"train-{i:06d}.tar" for i in range(4)]
    assert [r.to_dict() for r in load_records(tmp_path, "train")] == [r.to_dict() for r in records]
    manifest = json.loads((tmp_path / "train.manifest.json").read_text())
    assert manifest["complete"] and manifest["count"] == 10


def test_same_input_gives_identical_bytes(tmp_path, records):
    write_all(tmp_path / "a", records)
    write_all(tmp_path / "b", records)
    for a in sorted((tmp_path / "a").glob("*.tar")):
        assert a.read_bytes() == (tmp_path / "b" / a.name).read_bytes()


def test_interrupted_job_keeps_finished_shards_and_resumes_identically(tmp_path, records):
    write_all(tmp_path / "ref", records)
    out = tmp_path / "run"
    with pytest.raises(KeyboardInterrupt), ShardWriter(out, "train", max_samples=3) as w:
        for i, r in enumerate(records):
            if i == 7:
                assert (out / "train-000002.tar.tmp").exists()
                assert not (out / "train-000002.tar").exists()  # unfinished shard is never visible
                raise KeyboardInterrupt
            w.write(r, *image_for(r))
    assert sorted(p.name for p in out.iterdir()) == ["train-000000.tar", "train-000001.tar", "train.manifest.json"]
    with pytest.raises(ShardError, match="did not finish"):
        shard_paths(out, "train")
    with pytest.raises(ShardError, match="resume"):
        ShardWriter(out, "train", max_samples=3)
    resumed = DatasetWriter(out, max_samples=3, resume=True)
    skipped = 0
    for r in records:
        skipped += resumed.is_written(r)
        resumed.write(r, *image_for(r))
    resumed.close()
    assert skipped == 6
    for ref in sorted((tmp_path / "ref").iterdir()):
        assert ref.read_bytes() == (out / ref.name).read_bytes(), ref.name


def test_duplicate_key_and_bad_extension_are_errors(tmp_path, records):
    w = ShardWriter(tmp_path, "train", max_samples=5)
    w.write(records[0], jpeg())
    with pytest.raises(ShardError, match="duplicate"):
        w.write(records[0], jpeg())
    with pytest.raises(ShardError, match="extension"):
        w.write(records[1], jpeg(), "gif")


def test_missing_split_is_a_clear_error(tmp_path):
    with pytest.raises(ShardError, match="no manifest for split 'val'"):
        shard_paths(tmp_path, "val")

"""A shard whose tar structure is damaged: what could not be read is reported with the shard and counted, and an
evaluation refuses to score a partial split unless told to."""

from __future__ import annotations

import shutil
import tarfile
from pathlib import Path

import pytest

from ireid.app.cli import main
from ireid.core.loader import ShardDataset, SkipCounter, check_complete, split_urls
from ireid.core.shards import ShardError


def damage_middle_header(shard: Path) -> None:
    """Overwrite the tar header of the shard's middle member: everything after it becomes unreadable."""
    with tarfile.open(shard) as tar:
        members = tar.getmembers()
    offset = members[len(members) // 2].offset
    data = bytearray(shard.read_bytes())
    data[offset : offset + 100] = b"\x00damaged" * 12 + b"\x00" * 4
    shard.write_bytes(bytes(data))


@pytest.fixture
def damaged_world(tiny_world: Path, tmp_path: Path) -> Path:
    world = tmp_path / "world"
    shutil.copytree(tiny_world, world)
    damage_middle_header(Path(split_urls(world, "test")[0]))
    return world


def test_lost_samples_are_reported_with_the_shard_and_counted(damaged_world: Path, caplog) -> None:
    skips = SkipCounter()
    read = sum(1 for _ in ShardDataset(split_urls(damaged_world, "test"), rank_world=(0, 1), skip_counter=skips))
    assert 0 < read < 12 and skips.value == 12 - read  # 6 test ids × 2 images listed
    assert f"{12 - read} of its 12 samples lost" in skips.messages[0] and "test-000000.tar" in skips.messages[0]
    assert "samples lost" in caplog.text
    with pytest.raises(ShardError, match=rf"read {read} of the 12 samples its manifest lists.*--allow-partial"):
        check_complete(damaged_world, "test", read)
    assert "read" in check_complete(damaged_world, "test", read, allow_partial=True)
    assert check_complete(damaged_world, "train", 24) is None


def test_an_evaluation_of_a_partial_split_fails_unless_allowed_and_then_says_so(
    damaged_world: Path, tower_file: Path, tmp_path: Path, capsys
) -> None:
    ckpt = str(tower_file.parent / "retriever.ckpt")
    args = ["eval", "interactive", "--data", str(damaged_world), "--retriever-ckpt", ckpt, "--strategies", "initial",
            "--rounds", "1", "--out", str(tmp_path / "eval")]  # fmt: skip
    assert main(args) == 2
    [error] = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error: ")]
    assert "read 6 of the 12 samples its manifest lists" in error and "--allow-partial" in error
    assert main([*args, "--allow-partial"]) == 0
    assert "partial data" in (tmp_path / "eval" / "report.md").read_text()

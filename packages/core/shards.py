"""Writing WebDataset shards atomically and resumably.

A shard is written under a temporary name and renamed only when complete; a manifest (also replaced
atomically) lists the finished shards and their keys. An interrupted job re-run with `resume=True`
skips the keys already written and continues with the next shard, so its output is byte-identical
to an uninterrupted run over the same input order.
"""

from __future__ import annotations

import io
import json
import os
import tarfile
from pathlib import Path
from typing import Any

from ireid.core.records import Record

MANIFEST_SUFFIX = ".manifest.json"
IMAGE_EXTENSIONS = ("jpg", "png")


class ShardError(RuntimeError):
    """A shard folder that cannot be written or read as asked."""


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write to a temporary sibling, flush it to disk, then rename: readers never see half a file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def atomic_write_json(path: Path, obj: Any) -> None:
    atomic_write_bytes(Path(path), (json.dumps(obj, indent=1, sort_keys=True) + "\n").encode())


def _tar_member(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    # Fixed metadata so the same samples give byte-identical shards.
    info = tarfile.TarInfo(name)
    info.size = len(data)
    info.mtime = 0
    info.mode = 0o644
    info.uname = info.gname = ""
    tar.addfile(info, io.BytesIO(data))


class ShardWriter:
    """Writes `{prefix}-{index:06d}.tar` shards of at most `max_samples` samples into `out_dir`."""

    def __init__(self, out_dir: Path | str, prefix: str, max_samples: int = 1000, resume: bool = False):
        if max_samples < 1:
            raise ValueError("max_samples must be at least 1")
        self.out_dir = Path(out_dir)
        self.prefix = prefix
        self.max_samples = max_samples
        self.manifest_path = self.out_dir / f"{prefix}{MANIFEST_SUFFIX}"
        self.out_dir.mkdir(parents=True, exist_ok=True)
        self.shards: list[dict[str, Any]] = []
        if self.manifest_path.exists():
            if not resume:
                raise ShardError(
                    f"{self.manifest_path} exists: pass resume=True (--resume) to continue it, "
                    "or write to an empty folder"
                )
            manifest = json.loads(self.manifest_path.read_text())
            if manifest.get("max_samples") != max_samples:
                raise ShardError(
                    f"{self.manifest_path}: written with max_samples={manifest.get('max_samples')}, "
                    f"asked to resume with {max_samples}"
                )
            self.shards = manifest["shards"]
        for stale in self.out_dir.glob(f"{prefix}-*.tar.tmp"):
            stale.unlink()
        self.written_keys: set[str] = {k for s in self.shards for k in s["keys"]}
        self._tar: tarfile.TarFile | None = None
        self._tmp_path: Path | None = None
        self._keys: list[str] = []
        self.complete = False

    @property
    def count(self) -> int:
        return len(self.written_keys) + len(self._keys)

    def write(self, record: Record, image: bytes, image_ext: str = "jpg") -> None:
        """Add one record with its image; keys already finished (on resume) are ignored."""
        if image_ext not in IMAGE_EXTENSIONS:
            raise ShardError(f"sample {record.key!r}: image extension {image_ext!r} not in {IMAGE_EXTENSIONS}")
        self.write_sample(record.key, {image_ext: image, "json": json.dumps(record.to_dict(), sort_keys=True).encode()})

    def write_sample(self, key: str, members: dict[str, bytes]) -> None:
        """Add one sample of any members (`{key}.{extension}` each, in the given order); finished keys are ignored."""
        if key in self.written_keys:
            return
        if key in self._keys:
            raise ShardError(f"sample {key!r}: duplicate key in {self.prefix}")
        if self._tar is None:
            self._open_next()
        assert self._tar is not None
        for extension, data in members.items():
            _tar_member(self._tar, f"{key}.{extension}", data)
        self._keys.append(key)
        if len(self._keys) >= self.max_samples:
            self._finish_shard()

    def close(self) -> list[Path]:
        """Finish the last shard, mark the manifest complete and return the shard paths."""
        if self._tar is not None:
            self._finish_shard()
        self.complete = True
        self._write_manifest()
        return [self.out_dir / s["name"] for s in self.shards]

    def __enter__(self) -> ShardWriter:
        return self

    def __exit__(self, exc_type: object, *_: object) -> None:
        if exc_type is None:
            self.close()
        elif self._tar is not None:  # leave finished shards and the manifest; drop the partial one
            self._tar.close()
            assert self._tmp_path is not None
            self._tmp_path.unlink(missing_ok=True)
            self._tar = None

    def _open_next(self) -> None:
        name = f"{self.prefix}-{len(self.shards):06d}.tar"
        self._tmp_path = self.out_dir / (name + ".tmp")
        self._tar = tarfile.open(self._tmp_path, "w", format=tarfile.GNU_FORMAT)  # noqa: SIM115 (spans writes)
        self._keys = []

    def _finish_shard(self) -> None:
        assert self._tar is not None and self._tmp_path is not None
        self._tar.close()
        with open(self._tmp_path, "rb") as fh:
            os.fsync(fh.fileno())
        final = self._tmp_path.with_name(self._tmp_path.name.removesuffix(".tmp"))
        os.replace(self._tmp_path, final)
        self.shards.append({"name": final.name, "count": len(self._keys), "keys": self._keys})
        self.written_keys.update(self._keys)
        self._tar, self._tmp_path, self._keys = None, None, []
        self._write_manifest()

    def _write_manifest(self) -> None:
        atomic_write_json(
            self.manifest_path,
            {
                "prefix": self.prefix,
                "max_samples": self.max_samples,
                "complete": self.complete,
                "count": sum(s["count"] for s in self.shards),
                "shards": self.shards,
            },
        )


class DatasetWriter:
    """One `ShardWriter` per split (`train-*.tar`, `test-*.tar`, ...) in one folder."""

    def __init__(self, out_dir: Path | str, max_samples: int = 1000, resume: bool = False):
        self.out_dir = Path(out_dir)
        self.max_samples = max_samples
        self.resume = resume
        self.writers: dict[str, ShardWriter] = {}
        self.closed = False

    def writer(self, split: str) -> ShardWriter:
        if split not in self.writers:
            self.writers[split] = ShardWriter(self.out_dir, split, self.max_samples, self.resume)
        return self.writers[split]

    def is_written(self, record: Record) -> bool:
        return record.key in self.writer(record.split).written_keys

    def write(self, record: Record, image: bytes, image_ext: str = "jpg") -> None:
        self.writer(record.split).write(record, image, image_ext)

    def close(self) -> dict[str, int]:
        """Finish every split; returns the number of samples per split."""
        counts = {}
        for split, w in sorted(self.writers.items()):
            if not w.complete:
                w.close()
            counts[split] = w.count
        self.closed = True
        return counts

    def __enter__(self) -> DatasetWriter:
        return self

    def __exit__(self, exc_type: object, *rest: object) -> None:
        """Close on success; on an error drop every split's partial shard (finished shards stay, for --resume)."""
        if exc_type is None:
            if not self.closed:
                self.close()
            return
        for writer in self.writers.values():
            writer.__exit__(exc_type, *rest)


def read_manifest(root: Path | str, split: str) -> dict[str, Any]:
    path = Path(root) / f"{split}{MANIFEST_SUFFIX}"
    if not path.exists():
        raise ShardError(f"{path}: no manifest for split '{split}' (is {root} a shard folder written by ireid?)")
    manifest = json.loads(path.read_text())
    if not manifest.get("complete"):
        raise ShardError(f"{path}: the writing job did not finish; re-run it with --resume")
    return manifest


def shard_paths(root: Path | str, split: str) -> list[Path]:
    """The finished shards of a split, in order; a clear error if there are none."""
    manifest = read_manifest(root, split)
    paths = [Path(root) / s["name"] for s in manifest["shards"]]
    missing = [str(p) for p in paths if not p.exists()]
    if missing:
        raise ShardError(f"{root}: manifest of split '{split}' lists missing shards {missing[:3]}")
    if not paths:
        raise ShardError(f"{root}: split '{split}' has no samples")
    return paths

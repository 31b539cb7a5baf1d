"""The one shard loader every LightningDataModule uses.

Shards are split across processes (rank) and DataLoader workers; with fewer shards than readers the
split falls back to samples, so every reader gets data and every sample is read exactly once per epoch.
Shuffling is explicit and seeded (shard order and a sample buffer, re-seeded by `set_epoch`); without
it the order is deterministic, which evaluation relies on. Undecodable samples are skipped, warned
about with their shard and key, and counted in a `SkipCounter` shared with worker processes.

`cache_in_memory` keeps a reader's decoded samples after its first complete pass: later passes skip tar
reading, JSON parsing and image decoding (most of a small model's data time on CPU) and are shuffled
whole instead of through the buffer.
"""

from __future__ import annotations

import io
import json
import logging
import multiprocessing as mp
import random
from collections import Counter, OrderedDict
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import webdataset as wds
from PIL import Image

from ireid.core.records import Record
from ireid.core.shards import IMAGE_EXTENSIONS, MANIFEST_SUFFIX, ShardError, read_manifest, shard_paths

log = logging.getLogger(__name__)


@dataclass
class Sample:
    key: str
    record: Record
    image: Image.Image | bytes  # bytes when images are not decoded
    url: str


class SkipCounter:
    """Number of samples skipped as undecodable, summed over worker processes (shared memory)."""

    def __init__(self) -> None:
        self._value = mp.Value("q", 0)
        self.messages: list[str] = []  # the first few seen in this process (workers keep their own)

    def add(self, message: str, count: int = 1) -> None:
        with self._value.get_lock():
            self._value.value += count
        if len(self.messages) < 20:
            self.messages.append(message)

    @property
    def value(self) -> int:
        return int(self._value.value)

    def reset(self) -> None:
        with self._value.get_lock():
            self._value.value = 0


def decode_sample(raw: dict[str, Any], decode_image: bool = True) -> Sample:
    """Turn WebDataset's raw bytes into a `Sample`; raises with the shard and key on bad input."""
    key, url = raw.get("__key__", "?"), raw.get("__url__", "?")
    where = f"{url}: sample {key!r}"
    if "json" not in raw:
        raise ValueError(f"{where}: no .json member")
    try:
        meta = json.loads(raw["json"])
    except json.JSONDecodeError as exc:
        raise ValueError(f"{where}: malformed JSON ({exc})") from exc
    record = Record.from_dict(meta, where)
    ext = next((e for e in IMAGE_EXTENSIONS if e in raw), None)
    if ext is None:
        raise ValueError(f"{where}: no image member ({'/'.join(IMAGE_EXTENSIONS)})")
    image: Image.Image | bytes = raw[ext]
    if decode_image:
        try:
            with Image.open(io.BytesIO(raw[ext])) as im:
                image = im.convert("RGB")
        except Exception as exc:  # PIL raises several types for corrupt data
            raise ValueError(f"{where}: undecodable .{ext} image ({exc})") from exc
    return Sample(key=key, record=record, image=image, url=url)


def _process_info() -> tuple[int, int]:
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_rank(), torch.distributed.get_world_size()
    return 0, 1


def _worker_info() -> tuple[int, int]:
    info = torch.utils.data.get_worker_info()
    return (info.id, info.num_workers) if info is not None else (0, 1)


class ShardDataset(torch.utils.data.IterableDataset):
    """Iterates the samples of a list of shards for this process and worker.

    `transform` maps a `Sample` to what the DataModule batches. `samples_per_epoch` (per process) makes
    every process yield the same number of samples by cycling its part, as DDP training needs.
    `cache_in_memory` holds this reader's decoded samples from its first complete pass on (in the process
    that iterates: the main process, or persistent DataLoader workers).
    """

    def __init__(
        self,
        urls: Sequence[str | Path],
        *,
        transform: Callable[[Sample], Any] | None = None,
        shuffle: bool = False,
        shuffle_buffer: int = 1000,
        seed: int = 0,
        decode_images: bool = True,
        samples_per_epoch: int | None = None,
        skip_counter: SkipCounter | None = None,
        rank_world: tuple[int, int] | None = None,
        cache_in_memory: bool = False,
    ):
        super().__init__()
        if not urls:
            raise ValueError("ShardDataset needs at least one shard")
        self.urls = [str(u) for u in urls]
        self.transform = transform
        self.shuffle = shuffle
        self.shuffle_buffer = shuffle_buffer
        self.seed = seed
        self.decode_images = decode_images
        self.samples_per_epoch = samples_per_epoch
        self.skips = skip_counter or SkipCounter()
        self.rank_world = rank_world
        self.cache_in_memory = cache_in_memory
        self._cache: dict[tuple[int, int], list[Sample]] = {}  # (reader, readers) → its complete pass
        self._reported_lost: set[str] = set()
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """Re-seed shuffling (Lightning calls this on the dataset before each epoch)."""
        self.epoch = epoch

    def _readers(self) -> tuple[int, int]:
        rank, world = self.rank_world or _process_info()
        worker, workers = _worker_info()
        return rank * workers + worker, world * workers

    def _raw_samples(self, shards: list[str], keep: Callable[[int], bool]) -> Iterator[dict[str, Any]]:
        """The raw tar samples of `shards` whose running index `keep` accepts; unreadable tar data is counted."""

        def on_tar_error(exc: Exception) -> bool:
            log.warning("unreadable shard data: %s", exc)
            return True

        seen: Counter[str] = Counter()
        for index, raw in enumerate(wds.tarfile_samples([{"url": u} for u in shards], handler=on_tar_error)):
            seen[raw.get("__url__", "?")] += 1
            if keep(index):
                yield raw
        self._count_lost(shards, seen)

    def _count_lost(self, shards: list[str], seen: Counter[str]) -> None:
        """Samples a shard's manifest lists that its tar data no longer gives (a damaged header ends the shard
        there): reported with the shard and counted as skips, never dropped silently."""
        for url, listed in manifest_counts(shards).items():
            lost = listed - seen[url]
            if lost > 0 and url not in self._reported_lost:  # once per shard, however many passes read it
                self._reported_lost.add(url)
                message = f"{url}: {lost} of its {listed} samples lost (damaged tar data: the rest is unreadable)"
                self.skips.add(message, lost)
                log.warning(message)

    def _samples(self, shards: list[str], keep: Callable[[int], bool]) -> Iterator[Sample]:
        for raw in self._raw_samples(shards, keep):
            try:
                yield decode_sample(raw, self.decode_images)
            except Exception as exc:
                self.skips.add(str(exc))
                log.warning("skipping sample: %s", exc)

    def _one_pass(self, epoch: int, reader: int, readers: int) -> Iterator[Sample]:
        cached = self._cache.get((reader, readers))
        if cached is not None:
            samples = list(cached)
            if self.shuffle:
                random.Random(f"{self.seed}:{epoch}:{reader}").shuffle(samples)
            return iter(samples)
        stream = self._read_pass(epoch, reader, readers)
        return self._filling_cache(stream, (reader, readers)) if self.cache_in_memory else stream

    def _filling_cache(self, stream: Iterator[Sample], slot: tuple[int, int]) -> Iterator[Sample]:
        """Yield the pass and keep it; only a pass read to its end becomes the cache."""
        seen: list[Sample] = []
        for sample in stream:
            seen.append(sample)
            yield sample
        self._cache[slot] = seen

    def _read_pass(self, epoch: int, reader: int, readers: int) -> Iterator[Sample]:
        shards = list(self.urls)
        if self.shuffle:
            random.Random(f"{self.seed}:{epoch}").shuffle(shards)
        if len(shards) >= readers:
            return self._samples(shards[reader::readers], lambda _: True)
        # fewer shards than readers: everyone reads everything and keeps every readers-th sample
        return self._samples(shards, lambda i: i % readers == reader)

    def __iter__(self) -> Iterator[Any]:
        reader, readers = self._readers()
        cached = (reader, readers) in self._cache  # already shuffled whole
        stream = self._stream(reader, readers)
        if self.shuffle and self.shuffle_buffer > 1 and not cached:
            stream = self._buffer_shuffle(stream, random.Random(f"{self.seed}:{self.epoch}:{reader}"))
        for sample in stream:
            yield self.transform(sample) if self.transform else sample

    def _stream(self, reader: int, readers: int) -> Iterator[Sample]:
        if self.samples_per_epoch is None:
            yield from self._one_pass(self.epoch, reader, readers)
            return
        _, workers = _worker_info()
        worker = reader % workers
        quota = self.samples_per_epoch // workers + (1 if worker < self.samples_per_epoch % workers else 0)
        produced, cycle = 0, 0
        while produced < quota:
            got_any = False
            for sample in self._one_pass(self.epoch * 1_000_003 + cycle, reader, readers):
                got_any = True
                yield sample
                produced += 1
                if produced >= quota:
                    return
            if not got_any:
                raise RuntimeError(f"reader {reader} of {readers} got no decodable sample from {self.urls}")
            cycle += 1

    def _buffer_shuffle(self, stream: Iterator[Sample], rng: random.Random) -> Iterator[Sample]:
        buffer: list[Sample] = []
        for sample in stream:
            if len(buffer) < self.shuffle_buffer:
                buffer.append(sample)
                continue
            i = rng.randrange(len(buffer))
            buffer[i], sample = sample, buffer[i]
            yield sample
        rng.shuffle(buffer)
        yield from buffer


def manifest_counts(urls: Sequence[str]) -> dict[str, int]:
    """url -> the number of samples its split's manifest lists, for the shards written by ireid (others: absent)."""
    counts: dict[str, int] = {}
    manifests: dict[Path, dict[str, int]] = {}
    for url in urls:
        path = Path(url)
        manifest = path.parent / f"{path.name.rsplit('-', 1)[0]}{MANIFEST_SUFFIX}"
        if manifest not in manifests:
            try:
                shards = json.loads(manifest.read_text(encoding="utf-8")).get("shards", [])
                manifests[manifest] = {s["name"]: int(s["count"]) for s in shards}
            except (OSError, ValueError, KeyError, TypeError, AttributeError):
                manifests[manifest] = {}
        if path.name in manifests[manifest]:
            counts[url] = manifests[manifest][path.name]
    return counts


def check_complete(root: Path | str, split: str, read: int, allow_partial: bool = False) -> str | None:
    """None when `read` samples are all the split's manifest lists; else the shortfall in one line, raised as a
    `ShardError` unless `allow_partial` (then returned, for the report to say so)."""
    listed = int(read_manifest(root, split).get("count", 0))
    if read >= listed:
        return None
    message = (f"{root}: split '{split}': read {read} of the {listed} samples its manifest lists "
               f"({listed - read} lost or undecodable; the warnings name the shards)")  # fmt: skip
    if not allow_partial:
        raise ShardError(f"{message}; pass --allow-partial to go on with what was read")
    return message


def split_urls(root: Path | str, split: str) -> list[str]:
    """Shard paths of one split of a dataset folder written by ireid."""
    return [str(p) for p in shard_paths(root, split)]


def iter_samples(root: Path | str, split: str, decode_images: bool = True) -> Iterator[Sample]:
    """Every sample of a split, in written order, in this process (for indexing, statistics, evaluation)."""
    yield from ShardDataset(split_urls(root, split), decode_images=decode_images, rank_world=(0, 1))


# (folder, split) -> (the split's file stamps, its samples), most recently used last
_UNDECODED: OrderedDict[tuple[str, str], tuple[tuple[Any, ...], list[Sample]]] = OrderedDict()
UNDECODED_SPLITS_KEPT = 4


def _split_stamp(root: Path | str, split: str) -> tuple[Any, ...]:
    shards = shard_paths(root, split)  # a missing manifest is a ShardError naming it
    files = [Path(root) / f"{split}{MANIFEST_SUFFIX}", *shards]
    return tuple((str(path), stat.st_mtime_ns, stat.st_size) for path in files for stat in [path.stat()])


def undecoded_samples(root: Path | str, split: str) -> list[Sample]:
    """Every sample of a split with its image left encoded (bytes), read once per process while the split's files
    stay as they are: one command's steps (the demo's tokenizers, retriever, targets, questioner data and
    evaluation) read the same split many times. The list is shared; do not change it."""
    key = (str(Path(root).resolve()), split)
    stamp = _split_stamp(root, split)
    kept = _UNDECODED.get(key)
    if kept is not None and kept[0] == stamp:
        _UNDECODED.move_to_end(key)
        return kept[1]
    samples = list(iter_samples(root, split, decode_images=False))
    _UNDECODED[key] = (stamp, samples)
    while len(_UNDECODED) > UNDECODED_SPLITS_KEPT:
        _UNDECODED.popitem(last=False)
    return samples


def load_records(root: Path | str, split: str) -> list[Record]:
    """The records of a split without decoding images (a new list; the records are shared, see
    `undecoded_samples`)."""
    return [s.record for s in undecoded_samples(root, split)]

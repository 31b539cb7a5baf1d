import io
import json
import logging
import tarfile

import torch

from ireid.core.loader import ShardDataset, SkipCounter, iter_samples
from ireid.core.shards import DatasetWriter
from tests.helpers import jpeg, make_record


def write_dataset(root, n=12, shard_size=4):
    writer = DatasetWriter(root, max_samples=shard_size)
    for i in range(n):
        writer.write(make_record(i), jpeg((i * 20, 0, 0)))
    writer.close()
    return sorted(root.glob("train-*.tar"))


def keys(dataset):
    return [s.key for s in dataset]


def test_eval_order_is_the_written_order(tmp_path):
    urls = write_dataset(tmp_path)
    expected = [make_record(i).key for i in range(12)]
    assert keys(ShardDataset(urls, rank_world=(0, 1))) == expected
    assert keys(iter_samples(tmp_path, "train")) == expected
    sample = next(iter(iter_samples(tmp_path, "train")))
    assert sample.image.mode == "RGB" and sample.image.size == (16, 32)
    assert sample.record == make_record(0)


def test_processes_get_disjoint_parts_that_cover_everything(tmp_path):
    for n_shards, world in ((3, 2), (3, 3), (1, 2), (2, 4)):
        root = tmp_path / f"{n_shards}-{world}"
        urls = write_dataset(root, n=12, shard_size=12 // n_shards)
        parts = [keys(ShardDataset(urls, rank_world=(r, world))) for r in range(world)]
        flat = [k for p in parts for k in p]
        assert sorted(flat) == sorted(make_record(i).key for i in range(12)), (n_shards, world)
        assert len(flat) == len(set(flat))
        assert all(parts), "every process gets data even with fewer shards than processes"


def test_dataloader_workers_read_each_sample_once(tmp_path):
    urls = write_dataset(tmp_path)
    ds = ShardDataset(urls, transform=lambda s: s.key, rank_world=(0, 1))
    loader = torch.utils.data.DataLoader(ds, batch_size=None, num_workers=2)
    got = list(loader)
    assert sorted(got) == sorted(make_record(i).key for i in range(12))
    assert list(loader) == got, "same order on every pass without shuffling"


def test_shuffle_is_seeded_and_changes_with_epoch(tmp_path):
    urls = write_dataset(tmp_path, n=24, shard_size=4)
    ds = ShardDataset(urls, shuffle=True, shuffle_buffer=8, seed=1, rank_world=(0, 1))
    first = keys(ds)
    assert keys(ds) == first
    ds.set_epoch(1)
    second = keys(ds)
    assert second != first and sorted(second) == sorted(first)
    assert keys(ShardDataset(urls, shuffle=True, shuffle_buffer=8, seed=2, rank_world=(0, 1))) != first


def test_samples_per_epoch_equalises_processes(tmp_path):
    urls = write_dataset(tmp_path, n=10, shard_size=3)  # shards of 3, 3, 3, 1 samples
    counts = [len(keys(ShardDataset(urls, samples_per_epoch=7, rank_world=(r, 2)))) for r in range(2)]
    assert counts == [7, 7]


def _add(tar, name, data):
    info = tarfile.TarInfo(name)
    info.size = len(data)
    tar.addfile(info, io.BytesIO(data))


def test_bad_samples_are_skipped_warned_and_counted_across_workers(tmp_path, caplog):
    urls = write_dataset(tmp_path / "good", n=8, shard_size=4)
    bad = tmp_path / "bad-000000.tar"
    with tarfile.open(bad, "w") as tar:
        _add(tar, "x/corrupt.jpg", b"\xff\xd8\xff not really a jpeg")
        _add(tar, "x/corrupt.json", json.dumps(make_record(90, key="x/corrupt").to_dict()).encode())
        _add(tar, "x/badjson.jpg", jpeg())
        _add(tar, "x/badjson.json", b"{not json")
        _add(tar, "x/badfield.jpg", jpeg())
        _add(tar, "x/badfield.json", json.dumps(make_record(91, key="x/badfield").to_dict() | {"split": "?"}).encode())
        _add(tar, "x/fine.jpg", jpeg())
        _add(tar, "x/fine.json", json.dumps(make_record(92, key="x/fine").to_dict()).encode())
    counter = SkipCounter()
    ds = ShardDataset([*urls, bad], transform=lambda s: s.key, skip_counter=counter, rank_world=(0, 1))
    with caplog.at_level(logging.WARNING):
        single = list(ds)
    assert counter.value == 3 and len(single) == 9 and "x/fine" in single
    assert any("corrupt" in m and "bad-000000.tar" in m for m in caplog.messages)
    assert any("malformed JSON" in m for m in counter.messages)
    assert any("field 'split'" in m for m in counter.messages)
    counter.reset()
    got = list(torch.utils.data.DataLoader(ds, batch_size=None, num_workers=2))
    assert sorted(got) == sorted(single)
    assert counter.value == 3, "skips in worker processes reach the caller"


def test_memory_cache_serves_later_epochs_without_reading_the_shards(tmp_path):
    urls = write_dataset(tmp_path, n=12, shard_size=4)
    ds = ShardDataset(urls, shuffle=True, shuffle_buffer=4, seed=0, rank_world=(0, 1), cache_in_memory=True)
    first = keys(ds)
    for url in urls:  # from now on only the cache can serve the samples
        url.rename(url.with_suffix(".moved"))
    passes = []
    for epoch in (1, 2):
        ds.set_epoch(epoch)
        passes.append(keys(ds))
    assert all(sorted(p) == sorted(first) for p in passes)
    assert passes[0] != passes[1], "each epoch reshuffles the cached samples"
    ds.set_epoch(1)
    assert keys(ds) == passes[0], "the cached order is seeded by the epoch"


def test_an_unfinished_pass_is_not_cached(tmp_path):
    urls = write_dataset(tmp_path, n=12, shard_size=4)
    ds = ShardDataset(urls, rank_world=(0, 1), cache_in_memory=True)
    stream = iter(ds)
    partial = [next(stream).key for _ in range(5)]
    del stream
    assert keys(ds) == [make_record(i).key for i in range(12)], "the next pass reads the shards again, whole"
    assert partial == [make_record(i).key for i in range(5)]
    for url in urls:
        url.rename(url.with_suffix(".moved"))
    assert len(keys(ds)) == 12, "that complete pass became the cache"


def test_a_split_is_read_once_until_its_files_change(tmp_path, monkeypatch):
    from ireid.core import loader
    from ireid.core.images import ImageStore

    write_dataset(tmp_path, n=6, shard_size=4)
    reads = []
    original = loader.iter_samples
    monkeypatch.setattr(loader, "iter_samples", lambda *a, **k: reads.append(a) or original(*a, **k))
    first = loader.load_records(tmp_path, "train")
    again = loader.load_records(tmp_path, "train")
    store = ImageStore.from_shards(tmp_path, "train")
    assert len(reads) == 1, "records and encoded images of one split come from one read"
    assert again == first and again is not first and len(store) == 6
    assert store.encoded(first[0].key) == jpeg((0, 0, 0))
    for path in tmp_path.iterdir():  # the split rewritten in place: read again
        path.unlink()
    write_dataset(tmp_path, n=3, shard_size=4)
    assert len(loader.load_records(tmp_path, "train")) == 3 and len(reads) == 2

"""GalleryIndex: backends agree, IVF recall, persistence and its errors, building from an image folder."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from ireid.core.loader import SkipCounter
from ireid.retriever.index import GalleryIndex, GalleryIndexError, iter_image_folder
from tests.helpers import jpeg, png


def random_rows(n: int, dim: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((n, dim)).astype(np.float32)


def around(centers: np.ndarray, n: int, seed: int) -> np.ndarray:
    """n points scattered around randomly picked centers (clustered, like real embeddings)."""
    rng = np.random.default_rng(seed)
    noise = 0.5 * rng.standard_normal((n, centers.shape[1]))
    return (centers[rng.integers(len(centers), size=n)] + noise).astype(np.float32)


def keys_for(n: int) -> list[str]:
    return [f"img/{i:05d}.jpg" for i in range(n)]


def test_faiss_and_torch_backends_agree():
    gallery, queries = random_rows(5000, 64), random_rows(40, 64, seed=1)
    results = {}
    for backend in ("faiss", "torch"):
        index = GalleryIndex.from_embeddings(gallery, keys_for(5000), backend=backend)
        results[backend] = index.search(torch.from_numpy(queries), k=10)
    (fs, fi), (ts, ti) = results["faiss"], results["torch"]
    assert fs.dtype == torch.float32 and fi.dtype == torch.int64 and fi.shape == (40, 10)
    assert torch.allclose(fs, ts, atol=1e-5)
    # Scores are cosine similarities with the fp16-stored, normalised rows.
    stored = torch.from_numpy(GalleryIndex.from_embeddings(gallery, keys_for(5000)).embeddings.astype(np.float32))
    q = torch.nn.functional.normalize(torch.from_numpy(queries), dim=1)
    exact = q @ stored.T
    assert torch.allclose(fs, exact.gather(1, fi), atol=1e-5)
    # FAISS's BLAS and torch's sum in different orders, and the order depends on the CPU's vector width (AVX2 or
    # AVX-512 kernels): two rows closer than float32 rounding may swap. Every other position must agree.
    separated = torch.ones_like(fi, dtype=torch.bool)
    gaps = (ts[:, :-1] - ts[:, 1:]).abs() < 1e-5
    separated[:, :-1] &= ~gaps
    separated[:, 1:] &= ~gaps
    assert separated.float().mean() > 0.9 and torch.equal(fi[separated], ti[separated])


@pytest.mark.parametrize("chunk_rows", [7, 64, 65536])  # chunks smaller than k, larger than k, one chunk
def test_ties_at_the_kth_place(monkeypatch: pytest.MonkeyPatch, chunk_rows: int):
    # Gallery rows are basis vectors (~6 copies of each of 32): a score is one query coordinate, exact in any
    # summation order, so equal rows tie exactly and most top-10 lists cut through a group of ties.
    monkeypatch.setattr("ireid.retriever.gallery_rows.CHUNK_ROWS", chunk_rows)  # read by every chunked loop
    gallery = np.eye(32, dtype=np.float32)[np.random.default_rng(0).integers(32, size=200)]
    queries = random_rows(30, 32, seed=1)  # 30 ≥ 20 queries: FAISS's BLAS path
    fs, fi = GalleryIndex.from_embeddings(gallery, keys_for(200), backend="faiss").search(queries, k=10)
    index = GalleryIndex.from_embeddings(gallery, keys_for(200), backend="torch")
    ts, ti = index.search(queries, k=10)
    assert torch.allclose(fs, ts, atol=1e-5)
    # torch: exactly the first 10 of the stable order (descending score, then ascending index).
    full = (
        torch.nn.functional.normalize(torch.from_numpy(queries), dim=1)
        @ torch.from_numpy(index.embeddings.astype(np.float32)).T
    )
    expected = np.lexsort((np.broadcast_to(np.arange(200), full.shape), -full.numpy()), axis=1)[:, :10]
    assert ti.tolist() == expected.tolist()
    # FAISS picks among the tied items at the 10th place in its own way; everything above the tie agrees.
    for f_row, t_row, s_row in zip(fi.tolist(), ti.tolist(), ts.tolist(), strict=True):
        above = [i for i, s in zip(t_row, s_row, strict=True) if s > s_row[-1] + 1e-5]
        assert f_row[: len(above)] == above


@pytest.mark.parametrize("backend", ["faiss", "torch"])
def test_ties_come_in_index_order_and_k_is_capped(backend: str):
    a, b = [1.0, 0.0], [0.0, 1.0]
    index = GalleryIndex.from_embeddings(np.array([a, b, a, a]), ["w", "x", "y", "z"], backend=backend)
    scores, ids = index.search(np.array([a]), k=10)
    assert ids.tolist() == [[0, 2, 3, 1]]
    assert scores[0, :3].tolist() == [1.0, 1.0, 1.0]
    assert index.search_keys(np.array([a, b]), k=2) == [["w", "y"], ["x", "w"]]


def test_ivf_recall_against_flat():
    centers = random_rows(200, 64)
    gallery, queries = around(centers, 20_000, seed=1), around(centers, 200, seed=2)
    flat = GalleryIndex.from_embeddings(gallery, keys_for(20_000), backend="faiss")
    ivf = GalleryIndex.from_embeddings(gallery, keys_for(20_000), backend="faiss-ivf", nprobe=8)  # 8 of 566 lists
    assert ivf.nlist == 566  # ≈ 4·√20000
    _, exact = flat.search(queries, k=10)
    _, approx = ivf.search(queries, k=10)
    recall = np.mean([len(set(e) & set(a)) / 10 for e, a in zip(exact.tolist(), approx.tolist(), strict=True)])
    assert recall >= 0.9
    ivf.nprobe = 1
    _, coarse = ivf.search(queries, k=10)
    assert np.mean([len(set(e) & set(a)) / 10 for e, a in zip(exact.tolist(), coarse.tolist(), strict=True)]) < recall


def test_save_load_round_trip(tmp_path: Path):
    gallery = random_rows(300, 32)
    index = GalleryIndex.from_embeddings(gallery, keys_for(300), pids=np.arange(300) // 3, backend="torch")
    index.save(tmp_path / "g")
    meta = json.loads((tmp_path / "g" / "index.json").read_text())
    assert {k: meta[k] for k in ("count", "dim", "dtype", "backend")} == {
        "count": 300,
        "dim": 32,
        "dtype": "float16",
        "backend": "torch",
    }
    stored = np.load(tmp_path / "g" / meta["files"]["embeddings"], mmap_mode="r")
    assert isinstance(stored, np.memmap) and stored.dtype == np.float16
    loaded = GalleryIndex.load(tmp_path / "g")
    assert isinstance(loaded.embeddings, np.memmap) and loaded.embeddings.dtype == np.float16
    assert np.array_equal(loaded.embeddings, index.embeddings)
    assert loaded.keys == index.keys and np.array_equal(loaded.pids, index.pids)
    assert loaded.backend == "torch"
    q = random_rows(5, 32, seed=9)
    assert all(torch.equal(x, y) for x, y in zip(loaded.search(q, 7), index.search(q, 7), strict=True))
    assert GalleryIndex.load(tmp_path / "g", backend="faiss").backend == "faiss"


def test_resave_replaces_the_previous_generation(tmp_path: Path):
    GalleryIndex.from_embeddings(random_rows(10, 8), keys_for(10), pids=range(10)).save(tmp_path)
    GalleryIndex.from_embeddings(random_rows(4, 8, seed=1), keys_for(4)).save(tmp_path)
    meta = json.loads((tmp_path / "index.json").read_text())
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["index.json", *meta["files"].values()])
    loaded = GalleryIndex.load(tmp_path)
    assert len(loaded) == 4 and loaded.pids is None


def test_ivf_training_is_saved_and_reused(tmp_path: Path):
    centers = random_rows(30, 16)
    gallery = around(centers, 3000, seed=1)
    index = GalleryIndex.from_embeddings(gallery, keys_for(3000), backend="faiss-ivf", nprobe=4)
    index.save(tmp_path)
    loaded = GalleryIndex.load(tmp_path)
    assert loaded.backend == "faiss-ivf" and loaded.nprobe == 4 and loaded.nlist == index.nlist
    q = around(centers, 20, seed=2)
    assert all(torch.equal(x, y) for x, y in zip(loaded.search(q, 5), index.search(q, 5), strict=True))


@pytest.fixture
def saved(tmp_path: Path) -> Path:
    GalleryIndex.from_embeddings(random_rows(20, 8), keys_for(20), pids=range(20)).save(tmp_path)
    return tmp_path


def _file(folder: Path, role: str) -> Path:
    return folder / json.loads((folder / "index.json").read_text())["files"][role]


@pytest.mark.parametrize(
    ("damage", "named"),
    [
        (lambda d: (d / "index.json").unlink(), "index.json"),
        (lambda d: (d / "index.json").write_text("{not json"), "index.json"),
        (lambda d: _file(d, "embeddings").unlink(), "embeddings-"),
        (lambda d: _file(d, "embeddings").write_bytes(_file(d, "embeddings").read_bytes()[:200]), "embeddings-"),
        (lambda d: _file(d, "embeddings").write_bytes(b"garbage"), "embeddings-"),
        (lambda d: _file(d, "keys").write_text('["a", "b"]'), "keys-"),
        (lambda d: _file(d, "keys").write_text("[broken"), "keys-"),
        (lambda d: _file(d, "pids").unlink(), "pids-"),
    ],
    ids=["no-index", "bad-index", "no-emb", "short-emb", "bad-emb", "few-keys", "bad-keys", "no-pids"],
)
def test_damaged_folders_name_the_file(saved: Path, damage, named: str):
    damage(saved)
    with pytest.raises(GalleryIndexError, match=named):
        GalleryIndex.load(saved)


def test_index_json_cannot_point_outside_the_folder(saved: Path):
    meta = json.loads((saved / "index.json").read_text())
    meta["files"]["keys"] = "../elsewhere.json"
    (saved / "index.json").write_text(json.dumps(meta))
    with pytest.raises(GalleryIndexError, match="plain name"):
        GalleryIndex.load(saved)


def test_bad_inputs_are_rejected():
    with pytest.raises(ValueError, match="unique"):
        GalleryIndex.from_embeddings(random_rows(2, 4), ["a", "a"])
    with pytest.raises(ValueError, match="backend"):
        GalleryIndex.from_embeddings(random_rows(2, 4), ["a", "b"], backend="annoy")
    index = GalleryIndex.from_embeddings(random_rows(2, 4), ["a", "b"])
    with pytest.raises(ValueError, match="dimension"):
        index.search(random_rows(1, 5), k=1)


# --- building from an image folder ------------------------------------------------------------------

COLOURS = {"a/red.jpg": (220, 20, 20), "a/green.png": (20, 220, 20), "b/blue.jpeg": (20, 20, 220)}


def mean_colour(images: list[Image.Image]) -> torch.Tensor:
    """A stand-in encoder: the mean RGB of each image (distinct colours give distinct directions)."""
    return torch.stack([torch.from_numpy(np.asarray(im, dtype=np.float32)).mean(dim=(0, 1)) for im in images])


@pytest.fixture
def image_folder(tmp_path: Path) -> Path:
    root = tmp_path / "gallery"
    for rel, colour in COLOURS.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(png(colour) if rel.endswith(".png") else jpeg(colour))
    (root / "b" / "broken.jpg").write_bytes(b"\xff\xd8 not really a jpeg")
    (root / "notes.txt").write_text("ignored")
    return root


def test_build_from_image_folder_skips_corrupt_images(image_folder: Path, tmp_path: Path):
    skips = SkipCounter()
    items = ((key, image, None) for key, image in iter_image_folder(image_folder, skips))
    index = GalleryIndex.build(mean_colour, items, tmp_path / "out", batch_size=2, progress=False)
    assert skips.value == 1 and "b/broken.jpg" in skips.messages[0]
    assert sorted(index.keys) == sorted(COLOURS) and index.pids is None
    assert isinstance(index.embeddings, np.memmap) and index.embeddings.dtype == np.float16
    loaded = GalleryIndex.load(tmp_path / "out")
    assert loaded.keys == index.keys and np.array_equal(loaded.embeddings, index.embeddings)
    queries = mean_colour([Image.new("RGB", (4, 4), COLOURS["b/blue.jpeg"]), Image.new("RGB", (4, 4), (200, 40, 30))])
    assert [row[0] for row in loaded.search_keys(queries, k=2)] == ["b/blue.jpeg", "a/red.jpg"]


def test_symlink_outside_the_folder_is_refused(image_folder: Path, tmp_path: Path):
    secret = tmp_path / "secret.jpg"
    secret.write_bytes(jpeg())
    (image_folder / "a" / "zz_link.jpg").symlink_to(secret)
    with pytest.raises(GalleryIndexError, match="outside the gallery folder"):
        list(iter_image_folder(image_folder))
    (image_folder / "a" / "zz_link.jpg").unlink()
    (image_folder / "linked_dir").symlink_to(tmp_path, target_is_directory=True)
    with pytest.raises(GalleryIndexError, match="linked_dir"):
        list(iter_image_folder(image_folder))


def test_symlink_inside_the_folder_is_followed(image_folder: Path):
    (image_folder / "alias.jpg").symlink_to(image_folder / "a" / "red.jpg")
    keys = [key for key, _ in iter_image_folder(image_folder)]
    assert keys == ["alias.jpg", "a/green.png", "a/red.jpg", "b/blue.jpeg"]


@pytest.mark.parametrize("total", [None, 2, 50])  # growing from a small hint, trimming a large one
def test_build_grows_and_trims_the_memmap(tmp_path: Path, total: int | None):
    rows = random_rows(37, 6)
    items = ((f"k{i}", Image.new("RGB", (2, 2)), i % 5) for i in range(37))
    by_key = {f"k{i}": torch.from_numpy(rows[i]) for i in range(37)}
    counter = iter(range(37))

    def embed(images: list[Image.Image]) -> torch.Tensor:
        return torch.stack([by_key[f"k{next(counter)}"] for _ in images])

    index = GalleryIndex.build(embed, items, tmp_path, batch_size=4, total=total, backend="torch", progress=False)
    expected = GalleryIndex.from_embeddings(rows, [f"k{i}" for i in range(37)]).embeddings
    loaded = GalleryIndex.load(tmp_path)
    assert loaded.embeddings.shape == (37, 6) and np.array_equal(loaded.embeddings, expected)
    assert loaded.pids.tolist() == [i % 5 for i in range(37)]
    assert np.array_equal(index.embeddings, expected)
    assert not list(tmp_path.glob("*.tmp"))


def test_build_requires_all_or_no_pids(tmp_path: Path):
    items = [("a", Image.new("RGB", (2, 2)), 1), ("b", Image.new("RGB", (2, 2)), None)]
    with pytest.raises(ValueError, match="all or none"):
        GalleryIndex.build(mean_colour, items, tmp_path, progress=False)
    assert not list(tmp_path.iterdir())  # nothing half-written is left behind

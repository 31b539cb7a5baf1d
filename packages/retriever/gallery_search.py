"""Top-k search backends over a gallery's normalised fp16 rows: torch flat, FAISS flat and FAISS IVF.

`faiss` (exact, IndexFlatIP), `faiss-ivf` (approximate, IVF-Flat with nlist ≈ 4·√N and `nprobe` lists visited,
for millions of images) and `torch` (exact, chunked matmul + top-k, the reference). Each holds a float32 copy
of the embeddings in RAM (4·D bytes per image) and returns (scores, ids) for float32 queries that are already
normalised; `GalleryIndex.search` puts the rows into their final order. When equal scores straddle the k-th
place, `torch` returns the lowest indices among them; the FAISS backends return an unspecified subset of them
(their heaps' choice).

FAISS is imported when a FAISS backend is built, so the torch backend works where faiss-cpu is not installed.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import Tensor

from ireid.retriever.gallery_rows import chunks, upcast

BACKENDS = ("faiss", "faiss-ivf", "torch")
TRAIN_POINTS_PER_LIST = 40  # FAISS warns below 39 training points per IVF list
DEFAULT_NPROBE = 32


def default_nlist(count: int) -> int:
    """≈ 4·√N IVF lists (a common FAISS rule of thumb), at most one per item."""
    return max(1, min(count, round(4 * math.sqrt(count))))


def _top_k_first(scores: Tensor, k: int) -> tuple[Tensor, Tensor]:
    """Per-row top-k (scores, column positions); ties at the k-th place keep the lowest columns.

    torch.topk breaks such ties arbitrarily. A (k+1)-th value equal to the k-th reveals one; only those rows
    (rare with real embeddings) take the exact but slower path over the whole row.
    """
    k = min(k, scores.shape[1])
    top = scores.topk(min(k + 1, scores.shape[1]), dim=1)
    values, positions = top.values[:, :k].clone(), top.indices[:, :k].clone()
    if top.values.shape[1] > k:
        tied = (top.values[:, k] == top.values[:, k - 1]).nonzero().flatten()
        if len(tied):
            rows, kth = scores[tied], values[tied, -1:]
            above, level = rows > kth, rows == kth
            keep = above | (level & (level.cumsum(dim=1) <= k - above.sum(dim=1, keepdim=True)))
            positions[tied] = keep.nonzero()[:, 1].view(len(tied), k)
            values[tied] = rows.gather(1, positions[tied])
    return values, positions


def _best_first(scores: Tensor, ids: Tensor, k: int) -> tuple[Tensor, Tensor]:
    """The first k candidates in (descending score, ascending id) order: two stable sorts of a few columns."""
    order = ids.argsort(dim=1, stable=True)
    scores, ids = scores.gather(1, order), ids.gather(1, order)
    order = scores.argsort(dim=1, descending=True, stable=True)[:, :k]
    return scores.gather(1, order), ids.gather(1, order)


class TorchSearch:
    """Exact search by float32 matmul over gallery chunks, merging per-chunk top-k."""

    def __init__(self, embeddings: np.ndarray):
        self.data = torch.from_numpy(upcast(embeddings))

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        q = torch.from_numpy(queries)
        best_scores = torch.empty(len(q), 0)
        best_ids = torch.empty(len(q), 0, dtype=torch.long)
        for start, stop in chunks(len(self.data)):
            scores, positions = _top_k_first(q @ self.data[start:stop].T, k)
            scores = torch.cat([best_scores, scores], dim=1)
            ids = torch.cat([best_ids, positions + start], dim=1)
            best_scores, best_ids = _best_first(scores, ids, k)
        return best_scores.numpy(), best_ids.numpy()


class FaissFlat:
    """Exact inner-product search with FAISS."""

    def __init__(self, embeddings: np.ndarray):
        import faiss

        self.index = faiss.IndexFlatIP(embeddings.shape[1])
        for start, stop in chunks(len(embeddings)):
            self.index.add(np.ascontiguousarray(embeddings[start:stop], dtype=np.float32))

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        return self.index.search(queries, k)


class FaissIVF:
    """IVF-Flat: k-means lists over the gallery; a query scans the `nprobe` lists nearest to it.

    Training (k-means on a sample of TRAIN_POINTS_PER_LIST·nlist rows) and list assignment dominate the
    cost; both results are saved, so loading a saved IVF gallery only copies vectors into their lists.
    """

    def __init__(
        self,
        embeddings: np.ndarray,
        nlist: int,
        nprobe: int,
        centroids: np.ndarray | None = None,
        lists: np.ndarray | None = None,
    ):
        import faiss

        self.faiss = faiss
        dim = embeddings.shape[1]
        self.quantizer = faiss.IndexFlatIP(dim)
        self.index = faiss.IndexIVFFlat(self.quantizer, dim, nlist, faiss.METRIC_INNER_PRODUCT)
        if centroids is None:
            sample = min(len(embeddings), TRAIN_POINTS_PER_LIST * nlist)
            rows = np.sort(np.random.default_rng(0).choice(len(embeddings), sample, replace=False))
            self.index.train(np.ascontiguousarray(embeddings[rows], dtype=np.float32))
        else:
            self.quantizer.add(np.ascontiguousarray(centroids, dtype=np.float32))
            self.index.is_trained = True
        self.lists = np.empty(len(embeddings), dtype=np.int64)
        for start, stop in chunks(len(embeddings)):
            x = np.ascontiguousarray(embeddings[start:stop], dtype=np.float32)
            if lists is None:
                self.lists[start:stop] = self.quantizer.search(x, 1)[1].ravel()
            else:
                self.lists[start:stop] = lists[start:stop]
            assigned = np.ascontiguousarray(self.lists[start:stop])
            self.index.add_core(len(x), faiss.swig_ptr(x), None, faiss.swig_ptr(assigned))
        self.nprobe = nprobe

    @property
    def nprobe(self) -> int:
        return self.index.nprobe

    @nprobe.setter
    def nprobe(self, value: int) -> None:
        self.index.nprobe = max(1, min(value, self.index.nlist))

    def centroids(self) -> np.ndarray:
        return self.quantizer.reconstruct_n(0, self.index.nlist)

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Fewer than k items in the visited lists pad the row with index -1 and score -3.4e38."""
        return self.index.search(queries, k)


Searcher = TorchSearch | FaissFlat | FaissIVF


def make_searcher(
    backend: str,
    embeddings: np.ndarray,
    nlist: int,
    nprobe: int,
    ivf_state: tuple[np.ndarray, np.ndarray] | None = None,
) -> Searcher:
    """The backend named `backend` over `embeddings`; `ivf_state` (centroids, lists) skips IVF training."""
    if backend == "torch":
        return TorchSearch(embeddings)
    if backend == "faiss":
        return FaissFlat(embeddings)
    centroids, lists = ivf_state or (None, None)
    return FaissIVF(embeddings, nlist, nprobe, centroids, lists)

"""Selector training data: per dialogue state, the dialogue embedding and its retrieved candidates.

A data file is a `torch.save`d dict of three tensors (read back with `weights_only=True`):

- `dialogue` [N, D] float: the retriever's text embedding of each dialogue state;
- `candidates` [N, K, D] float: the embeddings of its top-K gallery images, in retriever rank order;
- `mask` [N, K] bool: True for a real candidate; padding (shorter lists) comes after the real ones.

Rank order carries the warm-up targets: the first c real candidates are the retriever's own top c.

Lists of a look-forward file shrink round by round (ceil(200 / t) candidates), so batches are drawn from rows of
one length (`SameLengthBatches`) and cut to their longest list (`trim_padding`): a batch of round-5 rows then
attends over 40 candidates, not 200. Padding is masked anyway, so what is learned does not change.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from pathlib import Path

import lightning as L
import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset, Sampler, default_collate

from ireid.core.checkpoints import read_torch_file, save_torch_file

FIELDS = {"dialogue": 2, "candidates": 3, "mask": 2}


def check_selector_tensors(tensors: Mapping[str, object], source: str) -> dict[str, Tensor]:
    """The three fields, validated; errors name `source` and the field."""
    missing = [name for name in FIELDS if name not in tensors]
    if missing:
        raise ValueError(f"{source}: missing field(s) {missing}; expected {list(FIELDS)}")
    out = {}
    for name, ndim in FIELDS.items():
        value = tensors[name]
        if not isinstance(value, Tensor) or value.ndim != ndim:
            shape = tuple(value.shape) if isinstance(value, Tensor) else type(value).__name__
            raise ValueError(f"{source}: field {name!r} must be a {ndim}-d tensor, got {shape}")
        out[name] = value
    n, k, d = out["candidates"].shape
    if out["dialogue"].shape != (n, d):
        raise ValueError(f"{source}: field 'dialogue' has shape {tuple(out['dialogue'].shape)}, expected {(n, d)}")
    if out["mask"].shape != (n, k) or out["mask"].dtype != torch.bool:
        raise ValueError(
            f"{source}: field 'mask' must be bool of shape {(n, k)}, got {out['mask'].dtype} {tuple(out['mask'].shape)}"
        )
    if not out["dialogue"].is_floating_point() or not out["candidates"].is_floating_point():
        raise ValueError(f"{source}: fields 'dialogue' and 'candidates' must be floating point")
    if n and not out["mask"].any(dim=1).all():
        raise ValueError(f"{source}: field 'mask' has rows without any real candidate")
    return out


def load_selector_tensors(path: str | Path) -> dict[str, Tensor]:
    return check_selector_tensors(read_torch_file(path, "selector data file", mmap=True), str(path))


def save_selector_tensors(path: str | Path, tensors: Mapping[str, Tensor]) -> None:
    """Written whole or not at all (a reader never sees half a file)."""
    save_torch_file(path, check_selector_tensors(tensors, str(path)))


def synthetic_batch(
    n: int,
    num_candidates: int = 20,
    dim: int = 32,
    min_candidates: int | None = None,
    generator: torch.Generator | None = None,
) -> dict[str, Tensor]:
    """Retrieval lists whose rank order is a function of the inputs: candidates ranked by cosine to the dialogue.

    Each candidate mixes the dialogue direction (random share) with noise, so similarities spread widely;
    lists have between `min_candidates` (default all) and `num_candidates` real entries, zero padding after.
    """
    fewest = num_candidates if min_candidates is None else min_candidates
    if not 1 <= fewest <= num_candidates:
        raise ValueError(f"need 1 <= min_candidates <= num_candidates, got {min_candidates}, {num_candidates}")
    dialogue = torch.nn.functional.normalize(torch.randn(n, dim, generator=generator), dim=-1)
    share = torch.rand(n, num_candidates, 1, generator=generator)
    noise = torch.nn.functional.normalize(torch.randn(n, num_candidates, dim, generator=generator), dim=-1)
    candidates = torch.nn.functional.normalize(share * dialogue.unsqueeze(1) + (1 - share) * noise, dim=-1)
    lengths = torch.randint(fewest, num_candidates + 1, (n, 1), generator=generator)
    mask = torch.arange(num_candidates).unsqueeze(0) < lengths
    similarity = torch.einsum("nkd,nd->nk", candidates, dialogue).masked_fill(~mask, float("-inf"))
    order = similarity.argsort(dim=1, descending=True)
    candidates = candidates.gather(1, order.unsqueeze(-1).expand_as(candidates)) * mask.unsqueeze(-1)
    return {"dialogue": dialogue, "candidates": candidates, "mask": mask}


class SelectorDataset(Dataset):
    """Rows of a validated tensor dict, each a dict of the three fields."""

    def __init__(self, tensors: Mapping[str, Tensor]):
        self.tensors = dict(tensors)

    def __len__(self) -> int:
        return len(self.tensors["dialogue"])

    def __getitem__(self, index: int) -> dict[str, Tensor]:
        return {name: value[index] for name, value in self.tensors.items()}


class SameLengthBatches(Sampler[list[int]]):
    """Batches of row indices whose lists have the same number of real candidates.

    With `shuffle`, each epoch shuffles the rows within each length and the order of the batches (drawn from the
    global torch generator, as `RandomSampler` is, so `seed_everything` repeats it); `drop_last` drops each
    length's last short batch unless that would drop every batch of a length.

    Under torch.distributed it shards the batches itself (the configs set `use_distributed_sampler: false`: a
    sampler of batches cannot be rebuilt around Lightning's `DistributedSampler`): every rank draws the same order
    from `seed` and its epoch count and takes every world-th batch, the same number on every rank.
    """

    def __init__(self, mask: Tensor, batch_size: int, shuffle: bool, drop_last: bool = False, seed: int = 0):
        if batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {batch_size}")
        lengths = mask.sum(dim=1)
        self.groups = [torch.nonzero(lengths == n).flatten() for n in torch.unique(lengths).tolist()]
        self.batch_size, self.shuffle, self.drop_last, self.seed = batch_size, shuffle, drop_last, seed
        self.epoch = 0

    def _batches(self, generator: torch.Generator | None) -> list[list[int]]:
        batches = []
        for rows in self.groups:
            if self.shuffle:
                rows = rows[torch.randperm(len(rows), generator=generator)]
            chunks = [rows[i : i + self.batch_size].tolist() for i in range(0, len(rows), self.batch_size)]
            if self.drop_last and len(chunks) > 1 and len(chunks[-1]) < self.batch_size:
                chunks.pop()
            batches += chunks
        if self.shuffle:
            batches = [batches[i] for i in torch.randperm(len(batches), generator=generator).tolist()]
        return batches

    @staticmethod
    def _rank_world() -> tuple[int, int]:
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            return torch.distributed.get_rank(), torch.distributed.get_world_size()
        return 0, 1

    def _shard(self, batches: list[list[int]], rank: int, world: int) -> list[list[int]]:
        return batches[rank::world][: len(batches) // world] if world > 1 else batches

    def __iter__(self) -> Iterator[list[int]]:
        rank, world = self._rank_world()
        generator = None
        if self.shuffle:
            seed = self.seed + self.epoch if world > 1 else int(torch.empty((), dtype=torch.int64).random_().item())
            generator = torch.Generator().manual_seed(seed)
        self.epoch += 1
        return iter(self._shard(self._batches(generator), rank, world))

    def __len__(self) -> int:
        return len(self._shard(self._batches(torch.Generator().manual_seed(0)), *self._rank_world()))


def trim_padding(rows: list[dict[str, Tensor]]) -> dict[str, Tensor]:
    """Collate rows, then cut the candidate lists to the batch's longest (padding comes after the real ones)."""
    batch = default_collate(rows)
    width = int(batch["mask"].sum(dim=1).max())
    batch["candidates"], batch["mask"] = batch["candidates"][:, :width], batch["mask"][:, :width]
    return batch


class SelectorData(L.LightningDataModule):
    """Train and validation rows held as tensors; subclasses say where they come from.

    `feature_dim` (D) is known once constructed, so the CLI sizes the selector's input from it.
    """

    def __init__(self, train: Mapping[str, Tensor], val: Mapping[str, Tensor], batch_size: int, num_workers: int):
        super().__init__()
        if train["dialogue"].shape[1] != val["dialogue"].shape[1]:
            raise ValueError(
                f"train and val embeddings differ in width: {train['dialogue'].shape[1]} vs {val['dialogue'].shape[1]}"
            )
        self.train_set, self.val_set = SelectorDataset(train), SelectorDataset(val)
        self.batch_size, self.num_workers = batch_size, num_workers

    @property
    def feature_dim(self) -> int:
        return int(self.train_set.tensors["dialogue"].shape[1])

    def _loader(self, rows: SelectorDataset, shuffle: bool) -> DataLoader:
        sampler = SameLengthBatches(rows.tensors["mask"], self.batch_size, shuffle, drop_last=shuffle)
        return DataLoader(rows, batch_sampler=sampler, collate_fn=trim_padding, num_workers=self.num_workers)

    def train_dataloader(self) -> DataLoader:
        return self._loader(self.train_set, shuffle=True)

    def val_dataloader(self) -> DataLoader:
        return self._loader(self.val_set, shuffle=False)


class SelectorTensorData(SelectorData):
    """Rows from two data files (see the module docstring), memory-mapped."""

    def __init__(self, train_file: str, val_file: str, batch_size: int = 64, num_workers: int = 0):
        super().__init__(load_selector_tensors(train_file), load_selector_tensors(val_file), batch_size, num_workers)


class SyntheticSelectorData(SelectorData):
    """Generated rows (`synthetic_batch`), deterministic for a seed: a smoke test of the training loop."""

    def __init__(
        self,
        num_train: int = 4096,
        num_val: int = 512,
        num_candidates: int = 20,
        dim: int = 32,
        min_candidates: int | None = None,
        seed: int = 0,
        batch_size: int = 64,
        num_workers: int = 0,
    ):
        generator = torch.Generator().manual_seed(seed)
        train = synthetic_batch(num_train, num_candidates, dim, min_candidates, generator)
        val = synthetic_batch(num_val, num_candidates, dim, min_candidates, generator)
        super().__init__(train, val, batch_size, num_workers)

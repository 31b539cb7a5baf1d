"""Selector data: the tensor-file format (round trip, errors naming file and field) and generated lists."""

import pytest
import torch

from ireid.selector.data import (
    SameLengthBatches,
    SelectorTensorData,
    SyntheticSelectorData,
    load_selector_tensors,
    save_selector_tensors,
    synthetic_batch,
    trim_padding,
)
from ireid.selector.model import Selector


def test_synthetic_lists_are_in_retriever_rank_order_with_padding_last():
    batch = synthetic_batch(50, num_candidates=9, dim=12, min_candidates=3, generator=torch.Generator().manual_seed(0))
    dialogue, candidates, mask = batch["dialogue"], batch["candidates"], batch["mask"]
    assert dialogue.shape == (50, 12) and candidates.shape == (50, 9, 12) and mask.dtype == torch.bool
    lengths = mask.sum(dim=1)
    assert lengths.min() >= 3 and torch.equal(mask, torch.arange(9) < lengths.unsqueeze(1)), "real first, padding last"
    assert not candidates[~mask].any()
    similarity = torch.einsum("nkd,nd->nk", candidates, dialogue)
    for row, n in zip(similarity, lengths.tolist(), strict=True):
        assert torch.all(row[: n - 1] >= row[1:n]), "candidates are ranked by cosine to the dialogue"
    again = synthetic_batch(50, num_candidates=9, dim=12, min_candidates=3, generator=torch.Generator().manual_seed(0))
    assert all(torch.equal(batch[k], again[k]) for k in batch)


def test_tensor_file_round_trip(tmp_path):
    batch = synthetic_batch(6, num_candidates=5, dim=4, min_candidates=2, generator=torch.Generator().manual_seed(1))
    save_selector_tensors(tmp_path / "train.pt", batch)
    loaded = load_selector_tensors(tmp_path / "train.pt")
    assert all(torch.equal(loaded[k], batch[k]) for k in batch)
    assert not list(tmp_path.glob("*.tmp"))


def test_tensor_file_errors_name_file_and_field(tmp_path):
    batch = synthetic_batch(4, num_candidates=5, dim=4)
    path = tmp_path / "bad.pt"
    torch.save({"dialogue": batch["dialogue"], "candidates": batch["candidates"]}, path)
    with pytest.raises(ValueError, match=r"bad\.pt: missing field\(s\) \['mask'\]"):
        load_selector_tensors(path)
    torch.save({**batch, "mask": batch["mask"].float()}, path)
    with pytest.raises(ValueError, match=r"bad\.pt: field 'mask' must be bool"):
        load_selector_tensors(path)
    torch.save({**batch, "dialogue": batch["dialogue"][:, :3]}, path)
    with pytest.raises(ValueError, match=r"bad\.pt: field 'dialogue' has shape \(4, 3\), expected \(4, 4\)"):
        load_selector_tensors(path)
    with pytest.raises(ValueError, match="field 'candidates' must be a 3-d tensor"):
        save_selector_tensors(path, {**batch, "candidates": batch["dialogue"]})
    with pytest.raises(FileNotFoundError, match=r"nope\.pt"):
        load_selector_tensors(tmp_path / "nope.pt")
    (tmp_path / "text.pt").write_text("not tensors")
    with pytest.raises(ValueError, match=r"text\.pt: not a torch file \(\w+\) \(expected a selector data file\)"):
        load_selector_tensors(tmp_path / "text.pt")


def test_data_modules_batch_rows_of_one_length_cut_to_it(tmp_path):
    """Each batch holds lists of one length, cut to it; validation sees every row once, training shuffles."""
    generator = torch.Generator().manual_seed(2)
    train, val = synthetic_batch(40, 6, 8, 2, generator), synthetic_batch(9, 6, 8, 2, generator)
    save_selector_tensors(tmp_path / "train.pt", train)
    save_selector_tensors(tmp_path / "val.pt", val)
    files = SelectorTensorData(str(tmp_path / "train.pt"), str(tmp_path / "val.pt"), batch_size=4)
    assert files.feature_dim == 8
    seen = []
    for batch in files.val_dataloader():
        width = batch["candidates"].shape[1]
        assert batch["mask"].all() and batch["mask"].shape[1] == width and batch["mask"].dtype == torch.bool
        seen += [row for row in range(9) if any(torch.equal(val["dialogue"][row], d) for d in batch["dialogue"])]
        assert all(int(val["mask"][row].sum()) == width for row in seen[-len(batch["dialogue"]) :])
    assert sorted(seen) == list(range(9))
    torch.manual_seed(0)
    epochs = [[b["dialogue"][0].tolist() for b in files.train_dataloader()] for _ in range(2)]
    assert epochs[0] != epochs[1] and len(epochs[0]) == len(files.train_dataloader())
    assert all(b["mask"].all() and len(b["dialogue"]) <= 4 for b in files.train_dataloader())
    selector = Selector(dim=8, layers=1, heads=2).eval()
    padded = {k: v[:3] for k, v in train.items()}
    lengths = padded["mask"].sum(dim=1)
    row = int(torch.nonzero(lengths == lengths.min())[0])
    cut = trim_padding([{k: v[row] for k, v in padded.items()}])
    with torch.no_grad():
        full = selector(
            padded["dialogue"][row : row + 1], padded["candidates"][row : row + 1], padded["mask"][row : row + 1]
        )
        short = selector(cut["dialogue"], cut["candidates"], cut["mask"])
    assert torch.allclose(full[:, : short.shape[1]], short, atol=1e-5), "padding never changes the scores"
    synthetic = SyntheticSelectorData(num_train=8, num_val=4, num_candidates=5, dim=6, batch_size=4)
    assert synthetic.feature_dim == 6 and next(iter(synthetic.val_dataloader()))["dialogue"].shape == (4, 6)


def test_batches_shard_across_processes_disjoint_and_even(monkeypatch) -> None:
    mask = torch.zeros(50, 6, dtype=torch.bool)
    for row in range(50):
        mask[row, : 3 + row % 3] = True
    shards = []
    for rank in range(2):
        monkeypatch.setattr(SameLengthBatches, "_rank_world", staticmethod(lambda rank=rank: (rank, 2)))
        sampler = SameLengthBatches(mask, 4, shuffle=True, drop_last=True, seed=7)
        shards.append([tuple(b) for b in sampler])
        assert len(sampler) == len(shards[-1])
    assert len(shards[0]) == len(shards[1]) > 0
    assert not set(shards[0]) & set(shards[1])  # the same order drawn on both ranks, every other batch each
    for batch in shards[0] + shards[1]:
        assert len({int(mask[i].sum()) for i in batch}) == 1

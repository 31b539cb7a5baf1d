"""A base model's saved similarities (LLaVA-ReID Table 2): lookup by key, refusals naming the file and field, and
`--rerank-scores` giving the same re-ranked figures as `--rerank-ckpt` over the same model."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from ireid.app.cli import main
from ireid.interactive.similarity_file import SimilarityFile, save_similarity


def test_rows_and_columns_are_looked_up_by_key(tmp_path: Path) -> None:
    path = tmp_path / "s.npz"
    save_similarity(path, np.arange(6, dtype=np.float32).reshape(2, 3), ["q0", "q1"], ["g0", "g1", "g2"])
    saved = SimilarityFile(path)
    assert torch.equal(saved.lookup(["q1", "q0"], ["g2", "g0"]), torch.tensor([[5.0, 3.0], [2.0, 0.0]]))
    with pytest.raises(
        ValueError, match=r"s\.npz: field 'gallery_keys' lacks 1 key\(s\) of this evaluation, first 'g9'"
    ):
        saved.lookup(["q0"], ["g0", "g9"])
    with pytest.raises(ValueError, match="scores of shape"):
        save_similarity(path, np.zeros((2, 2)), ["q0", "q1"], ["g0", "g1", "g2"])


@pytest.mark.parametrize(
    "arrays, says",
    [
        ({"scores": np.zeros((1, 1))}, "field 'query_keys' missing"),
        ({"scores": np.zeros(3), "query_keys": np.array(["a"]), "gallery_keys": np.array(["b"])}, "2-D float"),
        ({"scores": np.zeros((2, 1)), "query_keys": np.array(["a", "a"]), "gallery_keys": np.array(["b"])}, "repeats"),
        ({"scores": np.zeros((1, 1)), "query_keys": np.array(["a"]), "gallery_keys": np.array([7])}, "strings"),
        ({"scores": np.full((1, 1), np.nan), "query_keys": np.array(["a"]), "gallery_keys": np.array(["b"])}, "NaN"),
        (
            {
                "scores": np.zeros((1, 1)),
                "query_keys": np.array([{"a": 1}], dtype=object),
                "gallery_keys": np.array(["b"]),
            },
            "not a NumPy .npz similarity file",
        ),
    ],
)
def test_bad_files_are_refused_naming_the_field(arrays: dict, says: str, tmp_path: Path) -> None:
    path = tmp_path / "bad.npz"
    np.savez(path, **arrays)
    with pytest.raises(ValueError, match=says):
        SimilarityFile(path)


def test_saved_scores_rerank_as_the_checkpoint_does(tiny_world: Path, tower_file: Path, tmp_path: Path) -> None:
    ckpt = str(tower_file.parent / "retriever.ckpt")
    scores = tmp_path / "base.npz"
    assert main(["eval", "similarity", "--retriever-ckpt", ckpt, "--data", str(tiny_world), "--out", str(scores)]) == 0
    common = ["eval", "interactive", "--data", str(tiny_world), "--retriever-ckpt", ckpt, "--strategies", "simirv",
              "--rounds", "2"]  # fmt: skip
    assert main([*common, "--rerank-ckpt", ckpt, "--out", str(tmp_path / "ckpt")]) == 0
    assert main([*common, "--rerank-scores", str(scores), "--out", str(tmp_path / "scores")]) == 0

    def reranked(folder: str) -> list:
        return json.loads((tmp_path / folder / "results.json").read_text())["strategies"][0]["reranked_rounds"]

    by_file, by_ckpt = reranked("scores"), reranked("ckpt")
    assert len(by_file) == len(by_ckpt) == 3
    for a, b in zip(by_file, by_ckpt, strict=True):
        assert a == pytest.approx(b, abs=1e-6)
    assert main([*common, "--rerank-ckpt", ckpt, "--rerank-scores", str(scores), "--out", str(tmp_path / "x")]) == 2

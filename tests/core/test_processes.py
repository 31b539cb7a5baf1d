"""Work shared among forked processes comes back in order, computed as one process would."""

from __future__ import annotations

import os

import pytest
import torch

from ireid.core.processes import ordered_map


class Job:
    def __init__(self, weights: torch.Tensor) -> None:
        self.weights = weights  # inherited by the forked processes, never sent to them

    def __call__(self, item: int) -> tuple[int, int, list[float]]:
        return item, os.getpid(), (self.weights * item).tolist()


def test_results_come_back_in_order_from_other_processes_and_equal_one_process() -> None:
    job = Job(torch.linspace(0, 1, 5))
    here = list(ordered_map(job, range(12)))
    forked = list(ordered_map(job, range(12), processes=2))
    assert [r[0] for r in forked] == list(range(12))
    assert [r[2] for r in forked] == [r[2] for r in here]
    assert os.getpid() not in {r[1] for r in forked} and {r[1] for r in here} == {os.getpid()}
    with pytest.raises(ValueError, match="processes must be at least 1"):
        list(ordered_map(job, range(3), processes=0))

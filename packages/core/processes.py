"""Work shared among forked processes of one thread each, results back in order: what makes `--processes N` of the
look-forward builder and the gallery indexer write the same bytes as one thread.

The job (a callable holding the models and the data) is left in a module global before the pool forks, so each
process inherits it instead of receiving it pickled per item; only the item arguments and the results travel.
Each process runs one thread, as DataLoader workers do: a forked process must not re-enter its parent's OpenMP
pool, and the arithmetic is then the same in every process.
"""

from __future__ import annotations

import multiprocessing
import os
from collections.abc import Callable, Iterator, Sequence
from typing import Any, TypeVar

T = TypeVar("T")

_JOB: Callable[[Any], Any] | None = None  # the job of this forked process


def _run(item: Any) -> Any:
    assert _JOB is not None
    return _JOB(item)


def available_cores() -> int:
    """The CPU cores this process may run on (its affinity where the platform has one): a default process count."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def _one_thread() -> None:
    import torch  # here, so that importing this module (as the torch-free world generator does) loads no torch

    torch.set_num_threads(1)


def ordered_map(job: Callable[[Any], T], items: Sequence[Any], processes: int = 1) -> Iterator[T]:
    """`job(item)` for each item, in order: here (`processes` 1, or a single item) or in forked processes."""
    if processes < 1:
        raise ValueError(f"processes must be at least 1, got {processes}")
    if processes == 1 or len(items) < 2:
        yield from map(job, items)
        return
    global _JOB
    _JOB = job
    try:
        with multiprocessing.get_context("fork").Pool(processes, initializer=_one_thread) as pool:
            yield from pool.imap(_run, items)
    finally:
        _JOB = None

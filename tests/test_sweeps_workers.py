"""Worker processes: the pool the driver keeps (the sweeps through it are in test_sweeps.py)."""

from __future__ import annotations

import os

import pytest

from sweeps.driver import WORKER_ENV
from sweeps.workers import FAILED_STARTS, WorkerError, WorkerPool


def test_workers_that_cannot_start_stop_the_sweep_with_one_line() -> None:
    """A worker that dies before asking for a trial is replaced; three in a row mean every one would."""
    env = {k: v for k, v in os.environ.items() if k != "OMP_NUM_THREADS"}
    pool = WorkerPool(FAILED_STARTS, {**env, WORKER_ENV: "{not json"}, gpus=0)
    assert pool.env["OMP_NUM_THREADS"] == str(max(1, (os.cpu_count() or 1) // FAILED_STARTS))  # cores shared
    for _ in range(FAILED_STARTS):
        pool.spawn()
    with pytest.raises(WorkerError, match=f"{FAILED_STARTS} worker processes in a row exited .status 1. before running a trial"):
        for _ in range(600):
            pool.wait(timeout=0.5)
    pool.close(timeout=10)
    assert not pool.procs

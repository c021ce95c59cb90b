"""Worker processes on this machine, and the line protocol between them and the driver.

A worker (`python -m sweeps worker`) imports torch, MLflow and scikit-learn, opens the stores and
loads the data once (about 10 s on a 2-core machine), then runs trials for as long as the driver
grants them: before each trial it writes ``ready`` and waits for ``go`` or ``stop`` on its stdin.
The driver grants a trial only while the study's budget has room, so one machine's workers stop at
exactly ``sweep.n_trials``. A worker whose driver is gone reads end-of-file and stops after its
trial. The protocol has its own pipe: the worker's stdout goes to stderr, so a library that prints
cannot garble it.
"""

from __future__ import annotations

import os
import selectors
import subprocess
import sys
from typing import IO

READY, GO, STOP = "ready", "go", "stop"
FAILED_STARTS = 3  # workers in a row that exit with an error before asking for a trial: they all would


class WorkerError(RuntimeError):
    """Worker processes cannot start (their own error is on stderr, above)."""


class WorkerPool:
    """Up to `size` worker processes, each on GPU i mod `gpus` (when there are several) and with an
    even share of the CPU cores (OMP_NUM_THREADS, unless set)."""

    def __init__(self, size: int, env: dict[str, str], gpus: int) -> None:
        self.size, self.gpus = size, gpus
        threads = {} if "OMP_NUM_THREADS" in env else {"OMP_NUM_THREADS": str(max(1, (os.cpu_count() or 1) // size))}
        self.env = {**env, **threads}
        self.procs: dict[int, subprocess.Popen[str]] = {}
        self._selector = selectors.DefaultSelector()
        self._spawned = 0
        self._asked: set[int] = set()  # workers that asked for a trial at least once
        self._failed_starts = 0

    def spawn(self) -> int:
        """Start one more worker; its pid."""
        env = {**self.env, "CUDA_VISIBLE_DEVICES": str(self._spawned % self.gpus)} if self.gpus > 1 else self.env
        p = subprocess.Popen([sys.executable, "-m", "sweeps", "worker"], env=env, text=True, bufsize=1,
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                             start_new_session=True)  # the terminal's Ctrl-C reaches the driver alone: `interrupt`  # fmt: skip
        self.procs[p.pid] = p
        assert p.stdout is not None
        self._selector.register(p.stdout, selectors.EVENT_READ, p.pid)
        self._spawned += 1
        return p.pid

    def wait(self, timeout: float) -> tuple[list[int], dict[int, int]]:
        """Wait up to `timeout` s for messages: (pids that asked for a trial, {pid: exit status} of those that exited)."""
        ready = []
        for key, _ in self._selector.select(timeout):
            line = key.fileobj.readline()  # type: ignore[union-attr]
            if line.strip() == READY:
                ready.append(key.data)
            elif not line:  # end of file: the worker is exiting
                self._selector.unregister(key.fileobj)
        exited = {pid: p.returncode for pid, p in self.procs.items() if p.poll() is not None}
        for pid in exited:
            self._forget(self.procs.pop(pid))
        self._asked |= set(ready)
        failed = [rc for pid, rc in exited.items() if rc != 0 and pid not in self._asked]
        self._failed_starts = 0 if ready else self._failed_starts + len(failed)
        if self._failed_starts >= FAILED_STARTS:
            raise WorkerError(f"{self._failed_starts} worker processes in a row exited (status {failed[-1]}) before "
                              "running a trial: their error is printed above")
        return [pid for pid in ready if pid not in exited], exited

    def answer(self, pid: int, go: bool) -> None:
        """Grant worker `pid` one trial, or tell it to stop."""
        p = self.procs[pid]
        try:
            assert p.stdin is not None
            p.stdin.write(f"{GO if go else STOP}\n")
            p.stdin.flush()
        except BrokenPipeError:  # it died meanwhile: the next wait() reaps it
            pass

    def interrupt(self, sig: int) -> None:
        """Pass the driver's Ctrl-C (SIGINT) or SIGTERM on to every worker: each marks its trial interrupted and
        exits. Workers run in sessions of their own, so a terminal's Ctrl-C reaches them only this way, once."""
        for p in self.procs.values():
            if p.poll() is None:
                p.send_signal(sig)

    def close(self, timeout: float) -> None:
        """Close every worker's stdin (a worker stops after its trial) and wait up to `timeout` s each, then kill."""
        for p in self.procs.values():
            try:
                if p.stdin is not None:
                    p.stdin.close()
            except BrokenPipeError:
                pass
        for p in self.procs.values():
            try:
                p.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
            self._forget(p)
        self.procs.clear()

    def _forget(self, p: subprocess.Popen[str]) -> None:
        if p.stdout is not None:
            try:
                self._selector.unregister(p.stdout)
            except (KeyError, ValueError):
                pass
            p.stdout.close()


class DriverChannel:
    """The worker's side: ask the driver for each trial."""

    def __init__(self) -> None:
        self._out: IO[str] = os.fdopen(os.dup(1), "w", buffering=1)
        os.dup2(2, 1)  # anything printed from here on goes to stderr, not into the protocol

    def granted(self) -> bool:
        """Ask for one more trial: True on ``go``; False on ``stop`` or when the driver is gone."""
        try:
            self._out.write(f"{READY}\n")
            self._out.flush()
        except (BrokenPipeError, OSError):
            return False
        return sys.stdin.readline().strip() == GO

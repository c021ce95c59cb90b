"""Typed errors a caller of the training loop can record (the sweep maps each to a trial state)."""

from __future__ import annotations

import signal


def describe(e: BaseException) -> str:
    """`KeyError: 'x'`: an exception's type and the first line of its message, for one-line reports."""
    text = str(e).strip()
    return f"{type(e).__name__}: {text.splitlines()[0]}" if text else type(e).__name__


class TrainingError(Exception):
    """Base of every error the training package raises on purpose."""


class DataError(TrainingError):
    """The dataset is missing, malformed or cannot be split as asked; raised before training starts."""


class NonFiniteLoss(TrainingError):
    """The loss became NaN or infinite; the epochs recorded before it are kept by the caller."""

    def __init__(self, epoch: int, step: int, value: float) -> None:
        super().__init__(f"loss became {value} at epoch {epoch}, step {step}")
        self.epoch, self.step, self.value = epoch, step, value


class OutOfMemory(TrainingError):
    """The device ran out of memory (a smaller batch or model may fit)."""


class Terminated(KeyboardInterrupt):
    """SIGTERM (`kill`, a batch scheduler's time limit or preemption), raised where Ctrl-C's
    KeyboardInterrupt is, so the process stops as cleanly: epochs kept, trials marked interrupted, runs closed."""


def stop_cleanly_on_sigterm() -> None:
    """From now on SIGTERM raises `Terminated` in the main thread, once: a second one (a scheduler signals
    every process of a job, and a sweep passes it on to its workers) cannot cut the clean-up short."""

    def handler(signum: int, frame: object) -> None:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        raise Terminated

    signal.signal(signal.SIGTERM, handler)


def interruption(e: KeyboardInterrupt) -> tuple[str, int]:
    """What stopped the process, in words, and its exit status: Ctrl-C 130, SIGTERM 143 (128 + the signal)."""
    if isinstance(e, Terminated):
        return "terminated (SIGTERM)", 128 + signal.SIGTERM
    return "interrupted (Ctrl-C)", 130

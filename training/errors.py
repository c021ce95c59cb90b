"""Typed errors a caller of the training loop can record (the sweep maps each to a trial state)."""

from __future__ import annotations


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

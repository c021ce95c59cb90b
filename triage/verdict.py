"""The result of triaging one run: a label, a confidence and a one-sentence reason with numbers."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

HEALTHY = "healthy"
DIVERGING = "diverging"
PLATEAU = "plateau"
OVERFIT = "overfit"
OSCILLATING = "oscillating"
UNCONVERGED = "unconverged"
CRASHED = "crashed"
UNDETERMINED = "undetermined"  # too few epochs for a shape (e.g. pruned after one): neither failed nor healthy

#: Every label, in the order reports list them (failures first).
LABELS: tuple[str, ...] = (DIVERGING, CRASHED, PLATEAU, OSCILLATING, OVERFIT, UNCONVERGED, UNDETERMINED, HEALTHY)
#: Labels that mean the trial went wrong (a search-space region is sought for each).
FAILURE_LABELS: tuple[str, ...] = (DIVERGING, CRASHED, PLATEAU, OSCILLATING, OVERFIT)

#: What to change for each label; reports quote it next to the rules.
ADVICE: dict[str, str] = {
    DIVERGING: "lower the learning rate or enable gradient clipping",
    CRASHED: "read the error; reduce the batch size if out of memory",
    PLATEAU: "raise the learning rate or reduce regularization",
    OSCILLATING: "lower the learning rate or raise the batch size",
    OVERFIT: "add regularization or augmentation, or stop earlier",
    UNCONVERGED: "train for more epochs",
    UNDETERMINED: "nothing to judge yet: train it for more epochs to see its shape",
    HEALTHY: "nothing",
}


@dataclass(frozen=True)
class Verdict:
    """Triage of one run.

    Attributes:
        label: one of ``LABELS``.
        confidence: 0..1, how clearly the deciding statistic passed its threshold.
        reason: one sentence with the numbers behind the label.
        rule: the name of the rule that decided (e.g. ``nonfinite``, ``dead``, ``stuck``).
        evidence: the statistics the rule used (plain floats/ints/strings).
    """

    label: str
    confidence: float
    reason: str
    rule: str = ""
    evidence: dict[str, Any] = field(default_factory=dict, compare=False)


def count_noun(n: int, noun: str) -> str:
    """``1 epoch``, ``3 epochs``."""
    return f"{n} {noun}{'' if n == 1 else 's'}"

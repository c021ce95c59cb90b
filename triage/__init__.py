"""Triage: label every run of an MLflow experiment by the shape of its curves, and explain failures.

Public API::

    classify(curves, thresholds=None) -> Verdict        # one run, offline
    classify_many(runs, thresholds=None) -> [Verdict]   # many runs, vectorized
    online_verdict(curves, thresholds=None) -> Verdict | None   # during training: diverging or None
    summarize(experiment_name, tracking_uri=None, out_dir=None, ...) -> Summary   # read, tag, report
    triage_tags(verdict) -> dict                        # the triage* tags / Optuna user attrs of a verdict
    Thresholds, load_thresholds()                       # conf/triage/default.yaml
    thresholds_from_mapping(cfg.triage)                 # the same, from a composed Hydra config (overrides)
    MetricNames                                         # map an experiment's metric names to canonical ones
    LABELS, FAILURE_LABELS, Verdict

Importing ``triage`` loads NumPy and OmegaConf only; MLflow, scikit-learn and matplotlib are
imported when ``summarize`` is first used. It never imports ``training`` or torch.
"""

from __future__ import annotations

from typing import Any

from .rules import classify, classify_many, online_verdict
from .thresholds import Thresholds, load_thresholds, thresholds_from_mapping
from .verdict import ADVICE, FAILURE_LABELS, LABELS, Verdict

__version__ = "1.1"  # 1.1: the label undetermined (too short to judge; was healthy with a confidence ≤ 0.3)

__all__ = [
    "ADVICE", "FAILURE_LABELS", "LABELS", "EpochsSaved", "MetricNames", "Summary", "Thresholds", "Verdict",
    "classify", "classify_many", "load_thresholds", "online_verdict", "summarize", "thresholds_from_mapping",
    "triage_tags",
]


def __getattr__(name: str) -> Any:  # lazy: keep `import triage` light for the training loop
    if name in ("summarize", "Summary", "triage_tags", "EpochsSaved"):
        from . import summary
        return getattr(summary, name)
    if name == "MetricNames":
        from .names import MetricNames
        return MetricNames
    raise AttributeError(f"module 'triage' has no attribute {name!r}")

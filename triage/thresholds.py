"""Typed schema of the triage thresholds, loaded from ``conf/triage/default.yaml``.

The YAML file is the only place the threshold values are written: the dataclass below declares
names and types, OmegaConf checks the file against it. ``load_thresholds()`` is cached, so calling
``classify`` in a loop does not re-read the file.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, fields
from functools import lru_cache
from pathlib import Path
from typing import Any, Mapping

from omegaconf import MISSING, OmegaConf

from triage.names import CONF_DIR

DEFAULT_PATH = CONF_DIR / "triage" / "default.yaml"


@dataclass(frozen=True)
class Thresholds:
    """Thresholds of the curve rules; see the comments in ``conf/triage/default.yaml``."""

    tail_fraction: float = MISSING
    tail_max: int = MISSING
    recent_fraction: float = MISSING
    diverge_rise_min: float = MISSING
    diverge_rise: float = MISSING
    diverge_lost: float = MISSING
    spike_ratio: float = MISSING
    explode_ratio: float = MISSING
    dead_settle_epochs: int = MISSING
    dead_acc_tol: float = MISSING
    dead_acc_max: float = MISSING
    dead_flat_tol: float = MISSING
    dead_flat_share: float = MISSING
    dead_min_flat: int = MISSING
    dead_short_ratio: float = MISSING
    grad_explode_ratio: float = MISSING
    frozen_grad_ratio: float = MISSING
    collapse_acc_drop: float = MISSING
    collapse_acc_share: float = MISSING
    osc_variation: float = MISSING
    osc_amplitude: float = MISSING
    osc_min_ups: int = MISSING
    overfit_val_rise: float = MISSING
    overfit_min_epochs_after: int = MISSING
    overfit_train_fall: float = MISSING
    plateau_min_gain: float = MISSING
    plateau_max_gain: float = MISSING
    plateau_recent: float = MISSING
    plateau_early: float = MISSING
    plateau_learning: float = MISSING
    unconverged_recent_gain: float = MISSING
    unconverged_pace: float = MISSING
    acc_learning: float = MISSING
    vanishing_grad_ratio: float = MISSING
    clip_held_fraction: float = MISSING
    clip_growth: float = MISSING
    stall_lr_ratio: float = MISSING
    peer_explode_ratio: float = MISSING
    peer_min_runs: int = MISSING
    online_explode_ratio: float = MISSING
    online_min_flat: int = MISSING
    short_epochs: int = MISSING
    short_penalty: float = MISSING

    def replace(self, **changes: Any) -> "Thresholds":
        """A copy with some values changed (unknown names raise ``TypeError``)."""
        return Thresholds(**{**asdict(self), **changes})

    def fingerprint(self) -> str:
        """Short hash of the values, recorded in the ``triage.version`` tag."""
        return _fingerprint(self)


@lru_cache(maxsize=32)
def _fingerprint(th: Thresholds) -> str:
    blob = json.dumps(asdict(th), sort_keys=True).encode()
    return hashlib.sha1(blob).hexdigest()[:8]


def thresholds_from_mapping(values: Mapping[str, Any]) -> Thresholds:
    """Validate a mapping (e.g. Hydra's ``cfg.triage``) against the schema and build ``Thresholds``.

    Keys that are not thresholds are ignored; a missing threshold or a wrongly typed value raises.
    """
    names = {f.name for f in fields(Thresholds)}
    schema = OmegaConf.structured(Thresholds)
    merged = OmegaConf.merge(schema, {k: v for k, v in dict(values).items() if k in names})
    missing = sorted(k for k in names if OmegaConf.is_missing(merged, k))
    if missing:
        raise ValueError(f"triage thresholds missing: {', '.join(missing)}")
    return Thresholds(**OmegaConf.to_container(merged))  # type: ignore[arg-type]


@lru_cache(maxsize=8)
def load_thresholds(path: str | Path | None = None) -> Thresholds:
    """Load the thresholds from ``path`` (default: ``conf/triage/default.yaml`` of this project)."""
    cfg = OmegaConf.load(Path(path) if path is not None else DEFAULT_PATH)
    return thresholds_from_mapping(OmegaConf.to_container(cfg))  # type: ignore[arg-type]

"""Typed schemas of the config groups the sweep reads besides the training ones: `sweep`
(`conf/sweep/_common.yaml` and one file per sweep), `storage`, `tracking` and `triage`
(`triage.Thresholds`).

`check_settings` merges a composed job onto them, so a value of the wrong type
(`sweep.n_trials=abc`, `sweep.online_triage=maybe`), a key nothing reads (`+sweep.n_trial=3`) or a
negative count, period or threshold is one line before anything is created, and returns the job
with those groups typed. The search space (`space`) is checked by `sweeps.space`, the sampler and
pruner values by the driver that builds them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from omegaconf import MISSING, OmegaConf

from triage import Thresholds
from training.config import ConfigError, config_errors


@dataclass
class ObjectiveSettings:
    metric: str = "val_acc"
    direction: str = "maximize"


@dataclass
class SamplerSettings:
    name: str = "tpe"
    seed: int | None = 0
    n_startup_trials: int = 10


@dataclass
class PrunerSettings:
    name: str = "median"
    n_startup_trials: int = 2
    n_warmup_steps: int = 1
    percentile: float = 75.0
    min_resource: Any = 1  # epochs, or "auto" (successive_halving)
    reduction_factor: int = 3


@dataclass
class SweepSettings:
    study_name: str = MISSING
    n_trials: int = 30
    storage: str = MISSING
    objective: ObjectiveSettings = field(default_factory=ObjectiveSettings)
    sampler: SamplerSettings = field(default_factory=SamplerSettings)
    pruner: PrunerSettings = field(default_factory=PrunerSettings)
    online_triage: bool = True
    n_workers: int = 1
    pack: int = 1
    max_repeated_failures: int = 3
    space: dict[str, Any] = field(default_factory=dict)


@dataclass
class StorageSettings:
    url: str = MISSING
    heartbeat_interval: int | None = None  # seconds between a running trial's heartbeats (RDB storages)
    grace_period: int | None = None  # seconds of silence after which a trial is failed as stale


@dataclass
class TrackingSettings:
    uri: str = MISSING
    artifact_location: str | None = None
    trial_plots: str = "flagged"


@dataclass
class _Job:
    sweep: SweepSettings = field(default_factory=SweepSettings)
    storage: StorageSettings = field(default_factory=StorageSettings)
    tracking: TrackingSettings = field(default_factory=TrackingSettings)
    triage: Thresholds = field(default_factory=Thresholds)


def check_settings(job: dict[str, Any]) -> dict[str, Any]:
    """`job` with its sweep, storage, tracking and triage groups typed and checked; ConfigError in one line."""
    schema = OmegaConf.structured(_Job)
    OmegaConf.set_readonly(schema.triage, False)  # Thresholds is frozen; a schema to merge onto must not be
    groups = {k: job[k] for k in ("sweep", "storage", "tracking", "triage")}
    with config_errors():
        typed = OmegaConf.to_container(OmegaConf.merge(schema, groups), throw_on_missing=True)
    assert isinstance(typed, dict)
    _check_sweep(typed["sweep"])
    for key in ("heartbeat_interval", "grace_period"):
        if (seconds := typed["storage"][key]) is not None and seconds <= 0:
            raise ConfigError(f"storage.{key}={seconds} must be > 0 seconds")
    for key, value in typed["triage"].items():
        if value < 0:
            raise ConfigError(f"triage.{key}={value} must be >= 0 (conf/triage/default.yaml says what it means)")
    return {**job, **typed}


def _check_sweep(typed: dict[str, Any]) -> None:
    """The values of the typed `sweep` group that no sweep can run with."""
    if not typed["study_name"].strip():
        raise ConfigError("sweep.study_name is empty: name the study (it is also the MLflow experiment)")
    for key, low in (("n_trials", 1), ("n_workers", 1), ("pack", 1), ("max_repeated_failures", 0)):
        if typed[key] < low:
            raise ConfigError(f"sweep.{key}={typed[key]} must be >= {low}")
    if typed["sampler"]["n_startup_trials"] < 0:
        raise ConfigError(f"sweep.sampler.n_startup_trials={typed['sampler']['n_startup_trials']} must be >= 0")

"""The `sweep` config group's typed schema (`conf/sweep/_common.yaml` and one file per sweep).

`check_settings` merges a composed `sweep` node onto it, so a value of the wrong type
(`sweep.n_trials=abc`, `sweep.online_triage=maybe`) or a key no sweep reads is one line before
anything is created, and returns the node with its values typed. The search space (`space`) is
checked by `sweeps.space`, the sampler and pruner values by the driver that builds them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from omegaconf import MISSING, OmegaConf
from omegaconf.errors import ConfigKeyError

from training.compose import not_a_key
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
    space: dict[str, Any] = field(default_factory=dict)


@dataclass
class _Job:
    sweep: SweepSettings = field(default_factory=SweepSettings)  # keys in errors read `sweep.…`


def check_settings(sweep: dict[str, Any]) -> dict[str, Any]:
    """`sweep` merged onto `SweepSettings` (types checked), with the counts checked; ConfigError in one line."""
    schema = OmegaConf.structured(_Job)
    try:
        with config_errors():
            typed = OmegaConf.to_container(OmegaConf.merge(schema, {"sweep": sweep}), throw_on_missing=True)["sweep"]
    except ConfigError as e:
        if isinstance(key_error := e.__context__, ConfigKeyError) and key_error.full_key:  # `+sweep.n_trial=3`
            parent = key_error.full_key.rpartition(".")[0]
            raise ConfigError(not_a_key(key_error.full_key, parent, list(OmegaConf.select(schema, parent)))) from None
        raise
    assert isinstance(typed, dict)
    if not str(typed["study_name"]).strip():
        raise ConfigError("sweep.study_name is empty: name the study (it is also the MLflow experiment)")
    for key, low in (("n_trials", 1), ("n_workers", 1), ("pack", 1)):
        if typed[key] < low:
            raise ConfigError(f"sweep.{key}={typed[key]} must be >= {low}")
    if typed["sampler"]["n_startup_trials"] < 0:
        raise ConfigError(f"sweep.sampler.n_startup_trials={typed['sampler']['n_startup_trials']} must be >= 0")
    return typed

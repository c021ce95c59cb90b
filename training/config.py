"""Typed configuration of one trial, and its validation.

The dataclasses are the schema of the `conf/` groups they are named after (`data`, `model`,
`optimizer`, `scheduler`, `train`); the YAML files there hold the values. `TrialConfig.from_omegaconf`
type-checks a composed Hydra config against this schema and `validate` rejects values no trial
could run with, so bad input fails in one line before any data is read or any model is built.
"""

from __future__ import annotations

import copy
import difflib
import math
import os
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field, fields, is_dataclass
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import ConfigKeyError, OmegaConfBaseException

MODELS = ("convnet", "convnet_bn")
OPTIMIZERS = ("sgd", "adam", "adamw")
SCHEDULERS = ("none", "step", "exponential", "cosine", "piecewise")
PRECISIONS = ("fp32", "bf16")
TRIAL_GROUPS = ("data", "model", "optimizer", "scheduler", "train")


class ConfigError(ValueError):
    """A configuration value no trial can run with; the message says which and how to fix it."""


@dataclass
class DataConfig:
    root: str = "./data"
    cache_dir: str = "~/.sweeps/cache"
    train_size: int | None = None  # first N of a fixed shuffled order; None = all
    val_size: int = 5000  # class-stratified split held out of the training set
    augment: bool = False  # random crop (4-pixel padding) + horizontal flip
    mean: tuple[float, float, float] = (0.5, 0.5, 0.5)
    std: tuple[float, float, float] = (0.5, 0.5, 0.5)
    download: bool = True  # try torchvision's download when nothing is at `root`


@dataclass
class ModelConfig:
    name: str = "convnet"


@dataclass
class OptimizerConfig:
    name: str = "sgd"
    lr: float = 0.01
    weight_decay: float = 0.0
    momentum: float = 0.9  # sgd only
    nesterov: bool = False  # sgd only
    betas: tuple[float, float] = (0.9, 0.999)  # adam, adamw


@dataclass
class SchedulerConfig:
    """Per-epoch learning-rate schedule; the parameters a schedule does not use are ignored."""

    name: str = "none"
    warmup_epochs: int = 0  # linear warm-up from lr/warmup_epochs, before the schedule proper
    step_size: int = 10  # step
    gamma: float = 0.1  # step, exponential
    eta_min: float = 0.0  # cosine: lr at the last epoch
    milestones: list[int] = field(default_factory=lambda: [10, 20])  # piecewise
    values: list[float] = field(default_factory=lambda: [1.0, 0.1, 0.01])  # piecewise: lr multipliers


@dataclass
class TrainConfig:
    epochs: int = 10
    batch_size: int = 128
    clip_theta: float | None = None  # global L2 gradient-norm threshold; None = no clipping
    l1: float = 0.0  # λ of λ·Σ|w| over weights (not biases)
    l2: float = 0.0  # λ of λ·Σw² over weights (not biases)
    seed: int = 0
    device: str = "auto"  # auto = cuda, then mps, then cpu
    precision: str = "fp32"  # fp32 or bf16 (autocast)
    channels_last: bool = True  # NHWC: the CPU's max-pool is 4x slower on NCHW; tensor cores want NHWC too
    compile: bool = False
    eval_batch_size: int = 250  # a CPU evaluates fastest when a batch's activations fit its cache


@dataclass
class TrialConfig:
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    optimizer: OptimizerConfig = field(default_factory=OptimizerConfig)
    scheduler: SchedulerConfig = field(default_factory=SchedulerConfig)
    train: TrainConfig = field(default_factory=TrainConfig)

    @classmethod
    def from_omegaconf(cls, cfg: DictConfig | dict[str, Any]) -> TrialConfig:
        """Type-check the trial's groups of a composed config and return them validated."""
        return cls.from_typed(cls.typed(cfg))

    @classmethod
    def typed(cls, cfg: DictConfig | dict[str, Any]) -> DictConfig:
        """The trial's groups of a composed config merged onto this schema (types checked, not values)."""
        groups = {k: cfg[k] for k in TRIAL_GROUPS if k in cfg}
        with config_errors():
            return OmegaConf.merge(OmegaConf.structured(cls), groups)

    @staticmethod
    def from_typed(typed: DictConfig, values: Mapping[str, Any] | None = None) -> TrialConfig:
        """A validated TrialConfig from `typed` (see `typed`, left unchanged) with `values` set at their dotted keys."""
        with config_errors():
            if values:
                typed = copy.deepcopy(typed)  # far cheaper than merging onto the schema again
                for key, value in values.items():
                    OmegaConf.update(typed, key, value, force_add=False)
            trial = OmegaConf.to_object(typed)
        assert isinstance(trial, TrialConfig)
        trial.validate()
        return trial

    def validate(self) -> None:
        """Raise ConfigError naming the first value no trial can run with."""
        d, o, s, t = self.data, self.optimizer, self.scheduler, self.train
        _one_of("model.name", self.model.name, MODELS)
        _one_of("optimizer.name", o.name, OPTIMIZERS)
        _one_of("scheduler.name", s.name, SCHEDULERS)
        _one_of("train.precision", t.precision, PRECISIONS)
        _positive("optimizer.lr", o.lr)
        _positive("train.epochs", t.epochs)
        _positive("train.batch_size", t.batch_size)
        _positive("train.eval_batch_size", t.eval_batch_size)
        _non_negative("optimizer.weight_decay", o.weight_decay)
        if o.name == "sgd":
            _non_negative("optimizer.momentum", o.momentum)
            if o.nesterov and o.momentum == 0:
                raise ConfigError("optimizer.nesterov=true needs optimizer.momentum > 0")
        elif len(o.betas) != 2 or not all(0 <= b < 1 for b in o.betas):
            raise ConfigError(f"optimizer.betas={list(o.betas)}: give two numbers in [0, 1), e.g. [0.9,0.999]")
        _non_negative("train.l1", t.l1)
        _non_negative("train.l2", t.l2)
        _non_negative("scheduler.warmup_epochs", s.warmup_epochs)
        if t.clip_theta is not None:
            _positive("train.clip_theta", t.clip_theta, hint="or null to turn clipping off")
        if d.train_size is not None:
            _positive("data.train_size", d.train_size, hint="or null for the whole training set")
        _positive("data.val_size", d.val_size)
        for key, values in (("data.mean", d.mean), ("data.std", d.std)):
            if len(values) != 3 or not all(math.isfinite(v) for v in values):
                raise ConfigError(f"{key}={list(values)}: give one number per channel (R, G, B), e.g. [0.5,0.5,0.5]")
        if any(v <= 0 for v in d.std):
            raise ConfigError(f"data.std={list(d.std)}: every channel's std must be > 0")
        if s.name == "step":
            _positive("scheduler.step_size", s.step_size)
        if s.name in ("step", "exponential"):
            _positive("scheduler.gamma", s.gamma)
        if s.name == "cosine":
            _non_negative("scheduler.eta_min", s.eta_min)
        if s.name == "piecewise":
            if len(s.values) != len(s.milestones) + 1:
                raise ConfigError(
                    f"scheduler.values has {len(s.values)} entries for {len(s.milestones)} milestones: "
                    "give one lr multiplier per piece (len(milestones) + 1)"
                )
            if list(s.milestones) != sorted(set(s.milestones)) or any(m <= 0 for m in s.milestones):
                raise ConfigError(f"scheduler.milestones={list(s.milestones)}: use strictly increasing epochs > 0")
            if any(v <= 0 for v in s.values):
                raise ConfigError(f"scheduler.values={list(s.values)}: lr multipliers must be > 0")


@contextmanager
def config_errors() -> Iterator[None]:
    """OmegaConf's type errors as one-line ConfigErrors naming the key; a key the schema lacks
    (`+sweep.n_trial=3`) reads as `not_a_key` does, with the schema's keys."""
    try:
        yield
    except ConfigKeyError as e:
        if e.full_key and isinstance(e.object_type, type) and is_dataclass(e.object_type):
            parent = e.full_key.rpartition(".")[0]
            raise ConfigError(not_a_key(e.full_key, parent, [f.name for f in fields(e.object_type)])) from None
        raise ConfigError(_one_line(e)) from None
    except OmegaConfBaseException as e:
        raise ConfigError(_one_line(e)) from None


def _one_line(e: OmegaConfBaseException) -> str:
    key = getattr(e, "full_key", None)
    msg = str(e).splitlines()[0]
    return f"{key}: {msg}" if key else msg


def not_a_key(key: str, parent: str, keys: list[str]) -> str:
    """`optimizer.lrr is not a config key; did you mean optimizer.lr? optimizer has: name, lr, ...`"""
    close = difflib.get_close_matches(key.rpartition(".")[2], keys, n=1)
    meant = f"did you mean {(parent + '.') if parent else ''}{close[0]}? " if close else ""
    return f"{key} is not a config key; {meant}{parent or 'the config'} has: {', '.join(keys)}"


def _one_of(key: str, value: str, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        raise ConfigError(f"{key}={value!r} is unknown; choose one of: {', '.join(allowed)}")


def _positive(key: str, value: float, hint: str = "") -> None:
    if not value > 0:
        raise ConfigError(f"{key}={value} must be > 0" + (f" ({hint})" if hint else ""))
    _finite(key, value)


def _non_negative(key: str, value: float) -> None:
    if not value >= 0:
        raise ConfigError(f"{key}={value} must be >= 0 (0 turns it off)")
    _finite(key, value)


def _finite(key: str, value: float) -> None:
    if value == math.inf:
        raise ConfigError(f"{key}={value} must be a finite number")


def check_dir(path: Path, what: str) -> None:
    """ConfigError when the folder `path` (named by `what`: the key or variable behind it) could not be created
    (a file on its way, or a folder that cannot be written); creates nothing."""
    for p in (path, *path.parents):
        if p.exists():
            if not p.is_dir() or not os.access(p, os.W_OK | os.X_OK):
                raise ConfigError(f"cannot create {path} ({what}): {p} is {'no folder' if not p.is_dir() else 'not writable'}; "
                                  f"point {what} at a folder that can be written")
            return


def make_dir(path: Path, what: str) -> None:
    """``mkdir -p path``; ConfigError in one line, naming `what`, when it cannot be made."""
    check_dir(path, what)
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise ConfigError(f"cannot create {path} ({what}): {e.strerror or e}; point {what} at a folder that can be written") from None

"""Search spaces written in YAML, turned into `trial.suggest_*` calls that yield config overrides.

A space is a tree whose leaves are parameter specs; a leaf's path is the config key it sets:

    space:
      optimizer:
        lr: {type: float, low: 1.0e-5, high: 10, log: true}
      scheduler:
        name: {type: categorical, choices: [step, cosine]}
        step_size: {type: int, low: 1, high: 5, when: {scheduler.name: step}}
      train:
        clip_theta: {type: float, low: 0.1, high: 10, log: true, off_value: null}

`when` makes a parameter conditional on earlier ones (value or list of values). `off_value` adds the
choice "off": Optuna first samples `<key>.on` (true/false) and the key takes `off_value` when off, so
"θ ∈ off ∪ [0.1, 10]" or "λ ∈ {0} ∪ [1e-6, 1e-2]" are one entry each. `grid: [...]` lists a leaf's
values for the grid sampler.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import optuna

from training.config import ConfigError

TYPES = ("float", "int", "categorical")


@dataclass(frozen=True)
class Param:
    key: str
    type: str
    low: float | None = None
    high: float | None = None
    log: bool = False
    step: float | None = None
    choices: tuple[Any, ...] = ()
    when: Mapping[str, tuple[Any, ...]] = field(default_factory=dict)
    optional: bool = False
    off_value: Any = None
    grid: tuple[Any, ...] = ()

    def suggest(self, trial: optuna.Trial) -> Any:
        if self.optional and not trial.suggest_categorical(f"{self.key}.on", [True, False]):
            return self.off_value
        if self.type == "categorical":
            if self._primitive():
                return trial.suggest_categorical(self.key, list(self.choices))
            # Optuna stores only primitive choices: sample a list-valued choice by its text
            texts = [str(c) for c in self.choices]
            return self.choices[texts.index(trial.suggest_categorical(self.key, texts))]
        if self.type == "int":
            return trial.suggest_int(self.key, int(self.low), int(self.high), step=int(self.step or 1), log=self.log)  # type: ignore[arg-type]
        return trial.suggest_float(self.key, self.low, self.high, step=self.step, log=self.log)  # type: ignore[arg-type]

    def as_sampled(self, value: Any) -> Any:
        """`value` as Optuna holds it for this param: a list-valued choice by its text (see `suggest`)."""
        return value if self.type != "categorical" or self._primitive() else str(value)

    def _primitive(self) -> bool:
        return all(c is None or isinstance(c, bool | int | float | str) for c in self.choices)


@dataclass(frozen=True)
class SearchSpace:
    params: tuple[Param, ...]

    @classmethod
    def from_config(cls, space: Mapping[str, Any]) -> SearchSpace:
        """Parse and check a space; ConfigError names the first malformed entry."""
        params = tuple(_parse(key, spec) for key, spec in _leaves(space, ""))
        if not params:
            raise ConfigError("sweep.space is empty: choose a sweep with +sweep=NAME (lr, schedule, clip, reg, full)")
        known: set[str] = set()
        for p in params:
            for dep in p.when:
                if dep not in known:
                    raise ConfigError(f"sweep.space.{p.key}.when refers to {dep!r}, which is not an earlier parameter")
            known.add(p.key)
        return cls(params)

    @property
    def keys(self) -> list[str]:
        return [p.key for p in self.params]

    def suggest(self, trial: optuna.Trial) -> dict[str, Any]:
        """Sample one point: {config key: value} for every parameter whose conditions hold."""
        values: dict[str, Any] = {}
        for p in self.params:
            if all(values.get(dep) in allowed for dep, allowed in p.when.items()):
                values[p.key] = p.suggest(trial)
        return values

    def values_of(self, params: Mapping[str, Any], in_range: bool = False) -> dict[str, Any] | None:
        """The config values of a trial, from its Optuna `params` (what `suggest` returned then); None
        when the space has gained a parameter since that trial, or with `in_range` when a value lies
        outside a since-narrowed range (else it is still the trial's value)."""
        with warnings.catch_warnings():
            warnings.simplefilter("error" if in_range else "ignore")  # FixedTrial warns of a value out of range
            try:
                return self.suggest(optuna.trial.FixedTrial(dict(params)))
            except (ValueError, UserWarning):  # missing, not among the choices, or (in_range) out of range
                return None

    def contains(self, params: Mapping[str, Any]) -> bool:
        """Whether a trial's Optuna `params` are a point of this space (a resume may have narrowed it)."""
        return self.values_of(params, in_range=True) is not None

    def grid(self) -> dict[str, list[Any]]:
        """The grid sampler's search space; every parameter needs `grid` values and no conditions."""
        bad = [p.key for p in self.params if not p.grid or p.when or p.optional]
        if bad:
            raise ConfigError(f"the grid sampler needs `grid: [...]` and no when/off_value on: {', '.join(bad)} "
                              f"(e.g. '+sweep.space.{bad[0]}.grid=[v1,v2,v3]')")
        for p in self.params:
            if p.type == "categorical" and (odd := [v for v in p.grid if v not in p.choices]):
                raise ConfigError(f"sweep.space.{p.key}.grid: {odd[0]} is not one of its choices "
                                  f"({', '.join(map(str, p.choices))})")
        return {p.key: [p.as_sampled(v) for v in p.grid] for p in self.params}


def _leaves(node: Mapping[str, Any], prefix: str) -> list[tuple[str, Mapping[str, Any]]]:
    out = []
    for name, child in node.items():
        key = f"{prefix}{name}"
        if not isinstance(child, Mapping):
            raise ConfigError(f"sweep.space.{key}: expected a parameter spec such as {{type: float, low: 0.1, high: 1}}")
        out += [(key, child)] if "type" in child else _leaves(child, key + ".")
    return out


def _parse(key: str, spec: Mapping[str, Any]) -> Param:
    where = f"sweep.space.{key}"
    unknown = set(spec) - {"type", "low", "high", "log", "step", "choices", "when", "off_value", "grid"}
    if unknown:
        raise ConfigError(f"{where}: unknown field(s) {', '.join(sorted(unknown))}")
    kind = spec["type"]
    if kind not in TYPES:
        raise ConfigError(f"{where}.type={kind!r} is unknown; choose one of: {', '.join(TYPES)}")
    when = {k: tuple(v) if isinstance(v, list | tuple) else (v,) for k, v in dict(spec.get("when") or {}).items()}
    common = dict(when=when, optional="off_value" in spec, off_value=spec.get("off_value"), grid=tuple(spec.get("grid") or ()))
    if kind == "categorical":
        choices = tuple(spec.get("choices") or ())
        if not choices:
            raise ConfigError(f"{where}: a categorical parameter needs a non-empty `choices` list")
        return Param(key, kind, choices=choices, **common)  # type: ignore[arg-type]
    low, high = spec.get("low"), spec.get("high")
    if not isinstance(low, int | float) or not isinstance(high, int | float) or not low < high:
        raise ConfigError(f"{where}: needs numbers low < high (got low={low}, high={high})")
    log = bool(spec.get("log", False))
    if log and low <= 0:
        raise ConfigError(f"{where}: a log range needs low > 0 (got {low}); use off_value: 0 to allow zero")
    return Param(key, kind, low=low, high=high, log=log, step=spec.get("step"), **common)  # type: ignore[arg-type]

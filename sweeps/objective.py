"""One Optuna trial: sample → configure → train → log every epoch → report, prune, stop diverging runs.

The trial's MLflow run mirrors its outcome: COMPLETE → FINISHED, PRUNED → KILLED (tags say at which
epoch and why: the pruner, or `diverging`: triage's online verdict or a loss that became NaN/inf),
FAIL → FAILED (tags say why: oom, exception, interrupted; the traceback is an artifact).

A diverged trial is PRUNED, not FAIL, because Optuna's samplers learn only from COMPLETE and
PRUNED trials: told FAIL, TPE kept proposing learning rates that blow up (8 of the lr sweep's first
10 model-guided trials in one measured study, bench/sweep_efficiency.py --trace).
"""

from __future__ import annotations

import math
import time
import traceback
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import cached_property
from typing import Any

import optuna
from omegaconf import DictConfig

import triage
from sweeps.budget import FAILURE_ATTR, RETRY_ATTR
from sweeps.plots import CurvePlot, plot_mode, wants_plot
from sweeps.space import SearchSpace
from sweeps.tracking import Tracker, TrackingError, flatten
from training import Dataset, OutOfMemory, TrialConfig, load_data, resolve_device, train_epochs
from training.config import DataConfig
from training.errors import describe, interruption
from triage.names import CANONICAL

RUN_ID_ATTR = "mlflow_run_id"
TRIAGE_ATTRS = ("triage", "triage.reason")  # the verdict's tags also kept as the trial's user attrs
METRICS_EVERY_S = 5.0  # a trial's epochs reach MLflow at most this often, and at its end: a call costs 10 ms


class StopTrial(optuna.TrialPruned):
    """Pruned at `epoch` by `reason` ('pruner' or 'diverging')."""

    def __init__(self, epoch: int, reason: str, detail: str) -> None:
        super().__init__(f"pruned at epoch {epoch} by {reason}: {detail}")
        self.epoch, self.reason, self.detail = epoch, reason, detail

    def tags(self) -> dict[str, Any]:
        return {"sweep.pruned_epoch": self.epoch, "sweep.pruned_reason": self.reason, "sweep.error": self.detail}


@dataclass
class Objective:
    """Callable objective of a study; holds what every trial of this process shares (data included)."""

    job: dict[str, Any]  # the composed job config as plain containers (masked where it is logged)
    space: SearchSpace
    tracker: Tracker
    parent_run_id: str
    typed: DictConfig  # the job's training groups merged onto the schema once (`TrialConfig.typed`)
    on_epoch: Callable[[optuna.Trial, Mapping[str, float]], None] | None = None
    _data: tuple[DataConfig, Dataset] | None = None

    def __post_init__(self) -> None:
        self.thresholds = triage.thresholds.thresholds_from_mapping(self.job["triage"])
        self._params = flatten({k: v for k, v in self.job.items() if k != "sweep"})  # every run's config params
        self._plots = plot_mode(self.job["tracking"])
        self._unsent: dict[str, list[tuple[int, Mapping[str, float]]]] = {}  # run id → (timestamp ms, record)
        self._sent_at: dict[str, float] = {}  # run id → time.monotonic() of its last send

    @property
    def sweep(self) -> dict[str, Any]:
        return self.job["sweep"]

    def trial_config(self, values: Mapping[str, Any]) -> TrialConfig:
        """The base config with the sampled values set at their keys, validated."""
        return TrialConfig.from_typed(self.typed, values)

    def data(self, cfg: TrialConfig) -> Dataset:
        """Load once per process; reload only when a trial's data settings differ."""
        if self._data is None or self._data[0] != cfg.data:
            self._data = (cfg.data, load_data(cfg.data, resolve_device(cfg.train.device)))
        return self._data[1]

    def __call__(self, trial: optuna.Trial) -> float:
        try:
            values, run_id = self.start(trial)
        except Exception as e:
            # sampling failed (a queued point the space cannot give): a FAIL by itself, so it counts and repeats stop
            # the sweep; with no failure named it read as interrupted, and was queued again without end
            if not isinstance(e, TrackingError):
                trial.set_user_attr(FAILURE_ATTR, "exception")
                trial.set_user_attr("error", describe(e))
            raise
        records: list[Mapping[str, float]] = []
        state, tags = "FAIL", {}
        try:
            value = self._train(trial, values, run_id, records)
            state = "COMPLETE"
            return value
        except StopTrial as e:
            state, tags = "PRUNED", e.tags()
            raise
        except BaseException as e:
            tags = self.failure_tags(run_id, e)
            raise
        finally:
            self.close_trial(trial, run_id, state, tags, records)

    def start(self, trial: optuna.Trial) -> tuple[dict[str, Any], str]:
        """Sample the trial's values and open its child run: (values, run id)."""
        values = self.space.suggest(trial)
        run_id = self.tracker.start_trial(self.parent_run_id, self.sweep["study_name"], trial.number, list(values))
        trial.set_user_attr(RUN_ID_ATTR, run_id)
        retry = {"sweep.retry_of": trial.user_attrs[RETRY_ATTR]} if RETRY_ATTR in trial.user_attrs else {}
        self.tracker.later(self.tracker.log_params, run_id, {**self._params, **values, "sweep.trial": trial.number, **retry})
        return values, run_id

    def failure_tags(self, run_id: str, e: BaseException) -> dict[str, Any]:
        """The tags of a trial ended by `e` (call inside its `except`: the traceback is logged)."""
        if isinstance(e, KeyboardInterrupt):  # Ctrl-C or SIGTERM
            return {"sweep.failure": "interrupted", "sweep.error": interruption(e)[0]}
        if isinstance(e, TrackingError):  # not the trial's doing: it is re-run when the sweep resumes
            return {"sweep.failure": "interrupted", "sweep.error": str(e)}
        kind = "oom" if isinstance(e, OutOfMemory) else "exception"
        self.tracker.log_text(run_id, traceback.format_exc(), "traceback.txt")
        return {"sweep.failure": kind, "sweep.error": describe(e)}

    def _train(self, trial: optuna.Trial, values: Mapping[str, Any], run_id: str,
               records: list[Mapping[str, float]]) -> float:  # fmt: skip
        cfg = self.trial_config(values)
        value = math.nan
        for record in train_epochs(cfg, self.data(cfg)):
            value = self.after_epoch(trial, run_id, record, records, cfg.train.epochs, cfg.scheduler.warmup_epochs)
        return value

    def after_epoch(self, trial: optuna.Trial, run_id: str, record: Mapping[str, float],
                    records: list[Mapping[str, float]], epochs: int, warmup: int = 0) -> float:  # fmt: skip
        """Append and log one epoch; raise StopTrial when the loss went NaN/inf, triage's online stop or
        the pruner ends the trial (not during its `warmup` epochs of lr warm-up: the pruner would compare
        it with trials at their full lr). Returns the objective metric's value."""
        metric = self.sweep["objective"]["metric"]
        epoch = int(record["epoch"])
        records.append(record)
        self._queue_epoch(run_id, record)
        if self.on_epoch is not None:
            self.on_epoch(trial, record)
        value = record[metric]
        for key in dict.fromkeys(("train_loss", metric)):  # the loop would end it next / Optuna would FAIL it
            if not math.isfinite(record[key]):
                raise StopTrial(epoch, "diverging", f"{key} became {record[key]} at epoch {epoch}")
        if self.sweep["online_triage"] and (verdict := triage.online_verdict(curves_of(records), self.thresholds)) is not None:
            raise StopTrial(epoch, "diverging", verdict.reason)
        trial.report(value, epoch)
        if warmup < epoch < epochs and trial.should_prune():  # after the last epoch there is nothing to save
            raise StopTrial(epoch, "pruner", f"{metric}={value:.4g} at epoch {epoch} trails the other trials")
        return value

    def _queue_epoch(self, run_id: str, record: Mapping[str, float]) -> None:
        """Queue an epoch for MLflow; send the queue when its run's last send is METRICS_EVERY_S old."""
        self._unsent.setdefault(run_id, []).append((int(time.time() * 1000), dict(record)))
        if time.monotonic() - self._sent_at.get(run_id, -math.inf) >= METRICS_EVERY_S:  # at once for a first epoch
            self._send_epochs(run_id)

    def _send_epochs(self, run_id: str) -> None:
        if epochs := self._unsent.pop(run_id, None):
            self.tracker.later(self.tracker.log_epochs, run_id, epochs)
        self._sent_at[run_id] = time.monotonic()

    def close_trial(self, trial: optuna.Trial, run_id: str, state: str, tags: dict[str, Any],
                    records: list[Mapping[str, float]]) -> None:  # fmt: skip
        """Epochs still queued sent, triage's verdict as user attrs and run tags, curve plot (see
        `tracking.trial_plots`), run closed."""
        self._send_epochs(run_id)
        del self._sent_at[run_id]
        by_pruner = tags.get("sweep.pruned_reason") in (None, "pruner")  # triage's own stop gets no pruner note
        verdict = triage.classify(curves_of(records), self.thresholds, failure=tags.get("sweep.failure"),
                                  error=tags.get("sweep.error"), pruned=state == "PRUNED",
                                  note=None if by_pruner else "")  # fmt: skip
        verdict_tags = triage.triage_tags(verdict, self.thresholds)
        for key in TRIAGE_ATTRS:  # the rest of the verdict is on the run: each attr is a storage write
            trial.set_user_attr(key, verdict_tags[key])
        if "sweep.error" in tags:  # why it was pruned or failed, for the driver's line per trial
            trial.set_user_attr("error", tags["sweep.error"])
        if "sweep.failure" in tags:  # whether it counts toward sweep.n_trials (sweeps.budget)
            trial.set_user_attr(FAILURE_ATTR, tags["sweep.failure"])
        title = f"{self.sweep['study_name']} trial {trial.number} ({state.lower()}, {verdict.label})"
        plot = bool(records) and wants_plot(self._plots, verdict.label)
        tags = {**tags, **verdict_tags, "sweep.seconds": f"{_elapsed(records):.1f}"}
        self.tracker.later(self._publish, run_id, state, tags, list(records) if plot else [], title)

    def _publish(self, run_id: str, state: str, tags: dict[str, Any], records: list[Mapping[str, float]], title: str) -> None:
        """Plot (when given records) and close the run, on the tracking thread: the next trial starts meanwhile."""
        if records:
            self.tracker.client.log_figure(run_id, self._curve_plot.draw(records, title), "curves.png")
        self.tracker.finish(run_id, state, tags)

    @cached_property
    def _curve_plot(self) -> CurvePlot:
        """The figure redrawn for each plotted trial: built on the tracking thread, the only one that draws."""
        return CurvePlot()

    def close(self) -> None:
        """Wait until every trial's run is published and closed; raise a write that failed."""
        self.tracker.flush()


def curves_of(records: list[Mapping[str, float]]) -> dict[str, list[float]]:
    """The per-epoch curves triage reads, by their canonical names."""
    return {k: [r[k] for r in records] for k in CANONICAL}


def _elapsed(records: list[Mapping[str, float]]) -> float:
    return sum(r["epoch_seconds"] for r in records)


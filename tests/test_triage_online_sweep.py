"""A real Optuna sweep with online triage: high-lr trials diverge and are stopped early, the epochs
saved are reported, and no trial that would have ended healthy is ever stopped.

The trials train a least-squares model by minibatch SGD (NumPy): above lr ≈ 2/curvature the loss
grows geometrically until it overflows, below it the loss falls to the noise floor. The sweep logs
to MLflow with the sweep's conventions (step = epoch, non-finite points omitted and tagged,
``sweep.*`` tags, KILLED + ``sweep.pruned_reason=diverging`` for a triage stop).
"""

from __future__ import annotations

import math
import time
from pathlib import Path

import numpy as np
import pytest

optuna = pytest.importorskip("optuna")
mlflow = pytest.importorskip("mlflow")
from mlflow.entities import Metric, Param, RunTag  # noqa: E402
from mlflow.tracking import MlflowClient  # noqa: E402

import triage  # noqa: E402
from triage.summary import triage_tags  # noqa: E402

EPOCHS = 10


def train(lr: float, seed: int = 0):
    """Yield per-epoch records of least squares trained by minibatch SGD."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(400, 8))
    y = x @ rng.normal(size=8) + 0.3 * rng.normal(size=400)
    xt, yt, xv, yv = x[:300], y[:300], x[300:], y[300:]
    w = np.zeros(8)
    with np.errstate(all="ignore"):
        for _ in range(EPOCHS):
            losses, norms = [], []
            for i in range(0, 300, 20):
                r = xt[i:i + 20] @ w - yt[i:i + 20]
                g = 2 * xt[i:i + 20].T @ r / 20
                losses.append(float(np.mean(r * r)))
                norms.append(float(np.sqrt(g @ g)))
                w = w - lr * g
            yield {"train_loss": float(np.mean(losses)), "val_loss": float(np.mean((xv @ w - yv) ** 2)),
                   "grad_norm": float(np.mean(norms))}


def full_curves(lr: float) -> dict[str, list[float]]:
    curves: dict[str, list[float]] = {}
    for rec in train(lr):
        for k, v in rec.items():
            curves.setdefault(k, []).append(v)
    return curves


def run_sweep(uri: str, n_trials: int = 16) -> tuple[optuna.Study, dict[int, int]]:
    client = MlflowClient(uri)
    exp = client.create_experiment("online")
    parent = client.create_run(exp, tags={"sweep.role": "parent"}).info.run_id
    stopped_at: dict[int, int] = {}

    def objective(trial: optuna.Trial) -> float:
        lr = trial.suggest_float("optimizer.lr", 1e-3, 3.0, log=True)
        run = client.create_run(exp, tags={"mlflow.parentRunId": parent, "sweep.trial": str(trial.number),
                                           "sweep.space": "optimizer.lr"}).info.run_id
        client.log_batch(run, params=[Param("optimizer.lr", repr(lr)), Param("train.epochs", str(EPOCHS))])
        curves: dict[str, list[float]] = {}
        for epoch, rec in enumerate(train(lr), start=1):
            for k, v in rec.items():
                curves.setdefault(k, []).append(v)
            ts = int(time.time() * 1000)
            finite = [Metric(k, v, ts, epoch) for k, v in rec.items() if math.isfinite(v)]
            bad = [f"{k}@{epoch}" for k, v in rec.items() if not math.isfinite(v)]
            client.log_batch(run, metrics=finite, tags=[RunTag("sweep.nonfinite", ",".join(bad))] if bad else [])
            verdict = triage.online_verdict(curves)
            if verdict is not None:  # what the sweep driver does on a confident divergence
                stopped_at[trial.number] = epoch
                for k, v in triage_tags(verdict).items():
                    trial.set_user_attr(k, v)
                client.log_batch(run, tags=[RunTag("sweep.state", "PRUNED"), RunTag("sweep.pruned_epoch", str(epoch)),
                                            RunTag("sweep.pruned_reason", "diverging")])
                client.set_terminated(run, "KILLED")
                raise optuna.TrialPruned(verdict.reason)
        for k, v in triage_tags(triage.classify(curves)).items():
            trial.set_user_attr(k, v)
        client.set_tag(run, "sweep.state", "COMPLETE")
        client.set_terminated(run, "FINISHED")
        return curves["val_loss"][-1]

    study = optuna.create_study(direction="minimize", sampler=optuna.samplers.RandomSampler(seed=3))
    study.optimize(objective, n_trials=n_trials)
    client.set_terminated(parent, "FINISHED")
    return study, stopped_at


def test_online_stop_saves_epochs_and_never_stops_a_healthy_trial(tmp_path: Path) -> None:
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    study, stopped_at = run_sweep(uri)
    from rich.console import Console

    s = triage.summarize("online", uri, tmp_path / "out", study=study, console=Console(quiet=True))
    assert stopped_at, "no trial diverged: widen the lr range"
    assert s.epochs.by_reason.get("diverging") == sum(EPOCHS - e for e in stopped_at.values()) > 0
    assert s.epochs.trials_by_reason["diverging"] == len(stopped_at)
    by_trial = {r.trial: s.verdicts[r.run_id] for r in s.runs}
    for trial in study.trials:
        full = triage.classify(full_curves(trial.params["optimizer.lr"]))
        if trial.number in stopped_at:
            # stopped trials: diverging on their partial curve, and diverging had they run to the end
            assert by_trial[trial.number].label == "diverging"
            assert full.label == "diverging", (trial.params, full.reason)
            assert trial.user_attrs["triage"] == "diverging"
        else:
            assert full.label != "diverging" and trial.state == optuna.trial.TrialState.COMPLETE
    # the failure region is the high-lr end, and the study records each trial's verdict
    rule = next(r for r in s.rules if r.label == "diverging")
    assert rule.conditions[0].param == "optimizer.lr" and rule.conditions[0].op == ">"
    assert study.user_attrs["triage"][str(next(iter(stopped_at)))] == "diverging"
    assert s.importances is not None and "optimizer.lr" in s.importances or s.notes

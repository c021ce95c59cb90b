"""The trial budget: which trials count toward `sweep.n_trials`, and re-runs of interrupted trials.

A trial that failed by itself (an exception, out of memory) counts: its params would fail again.
A trial that was interrupted (Ctrl-C, a killed process, a store that stopped answering) says
nothing about its params, so it does not count, and the next run of the sweep queues it again with
the same params (Optuna's ``enqueue_trial``; the new trial's ``retry_of`` names the old one), as
Optuna's ``RetryFailedTrialCallback`` does for trials whose heartbeat stopped.

``optimize_one`` starts a trial only while the budget has room, checked and started under the
study's ``StudyLock``: every process on every machine together starts exactly ``sweep.n_trials``.

With the grid sampler the budget is also the grid: each point no trial holds is queued (in the sampler's
seeded order) when a trial starts, and the study ends when every point has been trained once. Optuna's
``GridSampler`` alone counts only trials of the grid exactly as it is now (a grid grown on resume would
train its old points again) and repeats points once the grid is spent.
"""

from __future__ import annotations

import itertools
import random
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import optuna
from optuna.trial import FrozenTrial, TrialState

from sweeps.storage import WORKER_ATTR, StudyLock, fail_orphans, worker_id

FAILURE_ATTR = "failure"  # user attr of a FAIL trial: oom, exception or interrupted (absent: its process died)
RETRY_ATTR = "retry_of"  # user attr of a re-run: the number of the interrupted trial it repeats
FAILED_BY_ITSELF = ("oom", "exception")
FINISHED = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL)


def finished(study: optuna.Study) -> list[FrozenTrial]:
    """The study's trials that have ended, however."""
    return study.get_trials(deepcopy=False, states=FINISHED)


def interrupted(t: FrozenTrial) -> bool:
    """A FAIL trial stopped from outside rather than by its own params."""
    return t.state == TrialState.FAIL and t.user_attrs.get(FAILURE_ATTR) not in FAILED_BY_ITSELF


def spent(trials: Iterable[FrozenTrial]) -> list[FrozenTrial]:
    """The started trials that count toward `sweep.n_trials`: all but the interrupted ones."""
    return [t for t in trials if t.state != TrialState.WAITING and not interrupted(t)]


def repeated_failure(trials: Iterable[FrozenTrial], times: int) -> str | None:
    """The error of the last ``times`` trials to end when each of them failed by itself with that same error
    (a bug, or a setting that fails whatever the params: every trial left would fail alike); else None."""
    if times < 1:
        return None
    ended = sorted((t for t in trials if t.state in FINISHED and t.datetime_complete is not None),
                   key=lambda t: t.datetime_complete)[-times:]  # fmt: skip
    if len(ended) < times or any(t.state != TrialState.FAIL or interrupted(t) for t in ended):
        return None
    errors = {t.user_attrs.get("error", "") for t in ended}
    return errors.pop() if len(errors) == 1 else None


def queue_retries(study: optuna.Study, within: Callable[[dict[str, Any]], bool]) -> tuple[list[int], list[int]]:
    """Queue a re-run, with the same params, of each interrupted trial not yet re-run or queued whose
    params are ``within`` the search space (a resume may have narrowed it; ``ask`` hands queued trials
    out first). Returns (the trials queued again, those left out as outside the space)."""
    trials = study.get_trials(deepcopy=False)
    queued = {t.user_attrs.get(RETRY_ATTR) for t in trials}
    todo = [t for t in trials if interrupted(t) and t.number not in queued]
    again = [t for t in todo if within(t.params)]
    for t in again:
        study.enqueue_trial(t.params, user_attrs={RETRY_ATTR: t.number})
    return [t.number for t in again], [t.number for t in todo if t not in again]


Grid = Mapping[str, Sequence[Any]]  # the grid sampler's values per param (`SearchSpace.grid`)


def grid_left(trials: list[FrozenTrial], grid: Grid, seed: int | None = None) -> list[dict[str, Any]]:
    """The grid's points that none of the study's `trials` holds (none but the interrupted ones has those
    params: none that counts toward the budget, runs or waits in the queue), shuffled by `seed` as Optuna's
    GridSampler does, so a budget smaller than the grid spreads over it."""
    # a queued trial's params, and a just started one's until its objective asks for them, are the queued ones
    held = [{**t.system_attrs.get("fixed_params", {}), **t.params} for t in trials if not interrupted(t)]
    points = [dict(zip(grid, values)) for values in itertools.product(*grid.values())]
    random.Random(seed or 0).shuffle(points)
    return [p for p in points if p not in held]


def grid_total(trials: list[FrozenTrial], grid: Grid) -> int:
    """The trials the study holds once every point of the grid has been trained: those of its `trials` that
    count now, the queued ones and the points left."""
    return len(spent(trials)) + sum(t.state == TrialState.WAITING for t in trials) + len(grid_left(trials, grid))


def room(study: optuna.Study, n_trials: int, grid: Grid | None = None) -> int:
    """Call under the study lock: how many more trials the budget (and the `grid`, if any) allows, once the
    orphans (created by a process that lost its database before it named them: `optimize_one`) are failed
    and so not counted."""
    fail_orphans(study)
    trials = study.get_trials(deepcopy=False)
    return (n_trials if grid is None else min(n_trials, grid_total(trials, grid))) - len(spent(trials))


def queue_grid(study: optuna.Study, grid: Grid | None, k: int, seed: int | None = None) -> None:
    """Call under the study lock before asking for `k` trials: queue points of the `grid` no trial holds until
    `k` trials wait (queued re-runs of interrupted trials go first); nothing without a grid."""
    if grid is None:
        return
    trials = study.get_trials(deepcopy=False)
    waiting = sum(t.state == TrialState.WAITING for t in trials)
    for point in grid_left(trials, grid, seed)[: max(0, k - waiting)]:
        study.enqueue_trial(point)


def optimize_one(study: optuna.Study, objective: Callable[[optuna.Trial], float], n_trials: int, lock: StudyLock,
                 grid: Grid | None = None, seed: int | None = None, **optimize_kw: Any) -> bool:
    """Run one trial if the study holds fewer than ``n_trials`` that count (RUNNING ones included) and, with a
    `grid`, a point of it is left; False if not. The count and the new trial's start happen under ``lock``,
    released as soon as the trial is RUNNING."""
    def started(trial: optuna.Trial) -> float:
        trial.set_user_attr(WORKER_ATTR, worker_id())  # named while locked: a RUNNING trial without it is an orphan
        lock.release()  # the new trial is RUNNING: every other process counts it from now on
        return objective(trial)

    with lock:
        if room(study, n_trials, grid) <= 0:
            return False
        queue_grid(study, grid, 1, seed)
        study.optimize(started, n_trials=1, catch=(Exception,), **optimize_kw)
    return True

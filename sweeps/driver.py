"""`python -m sweeps run +sweep=NAME`: compose, check, open the stores, run trials, report, triage.

Everything that can be wrong with the input is checked before a study or run is created: the
config and search space, the dataset's presence, the tracking URI, then the storage. Trials run
in this process (`sweep.n_workers=1`) or in worker processes on this machine (`sweeps.workers`); the
study ends when it holds `sweep.n_trials` trials that count (`sweeps.budget`: interrupted ones do
not), whoever ran them, so re-running resumes it and first re-runs the interrupted trials. What the
user reads (a line per trial, progress bars, the closing report) is written by `sweeps.report`.
"""

from __future__ import annotations

import json
import math
import os
import signal
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import optuna
from omegaconf import DictConfig, OmegaConf
from optuna.storages import BaseStorage
from optuna.trial import FrozenTrial, TrialState

from sweeps.budget import FINISHED, finished, grid_total, optimize_one, queue_retries, repeated_failure, spent
from sweeps.objective import Objective
from sweeps.packed import pack_size, run_packed
from sweeps.plots import plot_mode
from sweeps.report import console, progress, report_sweep, trial_line
from sweeps.settings import check_settings
from sweeps.space import SearchSpace
from sweeps.storage import WORKER_ATTR, StudyLock, fail_dead_trials, fail_orphans, mask, open_storage, worker_id
from sweeps.tracking import Tracker, TrackingError, check_reachable, flatten
from sweeps.workers import DriverChannel, WorkerPool
from training import RECORD_KEYS, TrialConfig, resolve_device
from training.compose import check_run_dir, compose, job_config, write_run_dir
from training.config import TRIAL_GROUPS, ConfigError
from training.data import check_data
from training.errors import Terminated, interruption

PARENT_ATTR = "mlflow_parent_run_id"
SETUP_ATTR = "sweep.setup"  # the training settings and objective the study was started with (`trial_setup`)
# where and how fast a trial runs, not what it trains: these may differ between machines and resumes
RUNTIME_KEYS = ("data.root", "data.cache_dir", "data.download", "train.device", "train.channels_last", "train.compile",
                "train.eval_batch_size")  # fmt: skip
PARENT_WAIT_S = 30.0  # how long a process that did not create the study waits for its parent run
WORKER_ENV = "SWEEPS_WORKER_OVERRIDES"  # overrides handed to worker processes (not on their command line)
EXIT_STORE_LOST = 3  # the exit status of a sweep (or worker) stopped because the MLflow or Optuna store failed
SWEEPS = ("lr", "schedule", "clip", "reg", "full")

optuna.logging.set_verbosity(optuna.logging.ERROR)  # the driver prints its own line per trial, with the error


@dataclass
class Sweep:
    """A checked sweep: its config, space, stores and parent run, ready to run trials."""

    job: dict[str, Any]
    space: SearchSpace
    study: optuna.Study
    tracker: Tracker
    parent_run_id: str
    typed: DictConfig  # the training groups merged onto the schema, once per process

    def __post_init__(self) -> None:
        self.lock = StudyLock(self.job["sweep"]["storage"], self.study.study_name)  # see `optimize_one`
        trials = self.study.get_trials(deepcopy=False)
        self.first_trial = len(trials)  # trials from here on are this command's
        sampler = self.job["sweep"]["sampler"]
        self.seed: int | None = sampler["seed"]
        self.grid = self.space.grid() if sampler["name"] == "grid" else None  # points to train once each (`budget`)
        asked = int(self.job["sweep"]["n_trials"])
        #: `sweep.n_trials`; with a grid at most the trials the study holds once each point is trained (a process
        #: that opens the study later computes the same: a trial only moves from the points left to those held)
        self.n_trials = asked if self.grid is None else min(asked, grid_total(trials, self.grid))

    def repeated_failure(self, trials: list[FrozenTrial] | None = None) -> str | None:
        """The error with which this command's last `sweep.max_repeated_failures` trials all failed, if they did
        (by themselves, on any machine): the sweep stops rather than fail every trial left. A resume starts afresh.
        `trials`: the study's, when just read."""
        trials = self.study.get_trials(deepcopy=False) if trials is None else trials
        return repeated_failure(trials[self.first_trial:], int(self.job["sweep"]["max_repeated_failures"]))

    def objective(self, **kw: Any) -> Objective:
        return Objective(self.job, self.space, self.tracker, self.parent_run_id, self.typed, **kw)


def open_sweep(overrides: list[str], worker: bool = False) -> tuple[Sweep, Any]:
    """Compose and check everything, then open (or create) the study, experiment and parent run.

    A `worker` (started by `run_workers` after the driver checked and opened everything) skips what
    only the driver needs: the dataset and tracking-server probes and the parent run's update.
    """
    cfg = compose(overrides)
    if "sweep" not in cfg:
        raise ConfigError(f"no sweep chosen: add +sweep=NAME (one of: {', '.join(SWEEPS)})")
    job = OmegaConf.to_container(job_config(cfg), resolve=True, throw_on_missing=True)
    assert isinstance(job, dict)
    job = check_settings(job)
    sweep = job["sweep"]
    space = SearchSpace.from_config(sweep["space"])
    typed = TrialConfig.typed(job)
    base = TrialConfig.from_typed(typed)  # validated
    _check_keys(space, typed)
    check_objective(sweep["objective"])
    sampler, pruner = build_sampler(sweep, space), build_pruner(sweep, base.train.epochs)
    pack_size(job)  # pack > 1 needs a GPU and one process
    plot_mode(job["tracking"])
    if not worker:
        check_run_dir(cfg)  # created once the stores are open
        resolve_device(base.train.device)  # a device this machine lacks fails here, not in the first trial
        check_reachable(job["tracking"]["uri"])
        check_data(base.data)  # a split that does not fit the images would fail every trial: fail here instead
    storage = open_storage(sweep["storage"], job["storage"].get("heartbeat_interval"), job["storage"].get("grace_period"))
    tracker = Tracker(job["tracking"]["uri"], sweep["study_name"], job["tracking"].get("artifact_location"))
    study, created = _open_study(sweep, storage, sampler, pruner)
    _check_setup(study, created, trial_setup(typed, space, sweep["objective"]))
    if worker:
        return Sweep(job, space, study, tracker, study.user_attrs[PARENT_ATTR], typed), cfg
    return Sweep(job, space, study, tracker, _parent_run(study, tracker, created), typed), cfg


def _open_study(sweep: dict[str, Any], storage: BaseStorage, sampler: optuna.samplers.BaseSampler,
                pruner: optuna.pruners.BasePruner) -> tuple[optuna.Study, bool]:  # fmt: skip
    """The study, and whether this process created it: of processes starting at once, exactly one does.

    Only that process samples with `sweep.sampler.seed` as given. Any other (a worker, a resumed run,
    another machine) reseeds its sampler: with the same seed it would draw the same points again."""
    kw: dict[str, Any] = {"study_name": sweep["study_name"], "storage": storage, "sampler": sampler, "pruner": pruner}
    try:
        return optuna.create_study(**kw, direction=sweep["objective"]["direction"]), True
    except optuna.exceptions.DuplicatedStudyError:
        sampler.reseed_rng()
        return optuna.load_study(**kw), False


def trial_setup(typed: DictConfig, space: SearchSpace, objective: dict[str, Any]) -> dict[str, Any]:
    """What makes trials comparable besides their sampled values: the training settings and the objective."""
    flat = flatten(OmegaConf.to_container(typed))  # type: ignore[arg-type]
    setup = {k: v for k, v in flat.items() if k not in RUNTIME_KEYS and k not in space.keys}
    return setup | {f"sweep.objective.{k}": v for k, v in objective.items()}


def _check_setup(study: optuna.Study, created: bool, setup: dict[str, Any]) -> None:
    """The creator records the study's training settings and objective; a resume or worker must bring the
    same ones, else its trials would not be comparable with those already in the study (e.g. 2 epochs
    vs 10, or val_loss minimized in a study that maximized val_acc).
    The search space, budget, pruner and sampler may change between runs."""
    if created:
        study.set_user_attr(SETUP_ATTR, setup)
        return
    known = study.user_attrs.get(SETUP_ATTR)
    if known is None:  # a study from before this check
        return
    changed = [k for k in sorted(known) if known[k] != setup.get(k)]  # a key newer than the study is not compared
    if changed:
        k, more = changed[0], f" (also {', '.join(changed[1:4])}{', ...' if len(changed) > 4 else ''})" if changed[1:] else ""
        raise ConfigError(f"study {study.study_name!r} was started with {k}={known.get(k)}, this run has "
                          f"{k}={setup.get(k)}{more}: resume it with its settings, or set a new sweep.study_name")  # fmt: skip


def _parent_run(study: optuna.Study, tracker: Tracker, created: bool) -> str:
    """The study's one MLflow parent run (marked running). Only the process that created the study makes
    it; one that finds the study without it waits for the creator's, then (the creator died) makes it.
    A parent run the tracking store no longer holds (deleted, or a new store) is replaced, with a warning."""
    run_id = study.user_attrs.get(PARENT_ATTR)
    deadline = time.monotonic() + PARENT_WAIT_S
    while run_id is None and not created and time.monotonic() < deadline:
        time.sleep(0.2)
        run_id = study.user_attrs.get(PARENT_ATTR)
    why = tracker.missing_run(run_id) if run_id is not None else None  # the tracking store changed under the study
    old, run_id = (run_id, None) if why else (None, run_id)
    parent = tracker.parent_run(study.study_name, run_id)
    if run_id is None:
        study.set_user_attr(PARENT_ATTR, parent)
    if old is not None:
        # deleted in the UI, its trial runs are still in the store: moved, the sweep's triage reads them again
        moved = tracker.adopt_children(old, parent) if why == "was deleted" else 0
        held = (f"and the study's {moved} earlier trial runs were moved under it" if moved
                else "which holds only the trials run from now on")
        console.print(f"[yellow]the study's MLflow parent run {old[:8]} {why}: this sweep logs under a new parent run, "
                      f"{held}[/]")
    return parent


def _check_keys(space: SearchSpace, typed: DictConfig) -> None:
    """Every space key must name one value of the trial schema, whether or not the chosen YAML sets it
    (`scheduler=none` sets no `step_size`, which the schedule sweep samples)."""
    for key in space.keys:
        value = OmegaConf.select(typed, key, default="<missing>") if key.split(".")[0] in TRIAL_GROUPS else "<missing>"
        if value == "<missing>" or isinstance(value, DictConfig):
            raise ConfigError(f"sweep.space.{key}: not a training config key (e.g. optimizer.lr, train.clip_theta)")


def idle_schedules(space: SearchSpace, epochs: int) -> list[str]:
    """Values of the space whose lr schedule never acts within `epochs` (milestones [5, 8] in 6 epochs):
    the conf/sweep files assume the default 10 epochs."""
    notes = []
    for p in space.params:
        if p.key == "scheduler.milestones" and (late := [c for c in p.choices if max(c, default=0) >= epochs]):
            notes.append(f"sweep.space.scheduler.milestones: {', '.join(map(str, late))} reach train.epochs={epochs}, "
                         "so their last lr piece never runs")
        elif p.key == "scheduler.step_size" and p.high is not None and p.high >= epochs:
            notes.append(f"sweep.space.scheduler.step_size goes up to {int(p.high)}: a step of train.epochs={epochs} or "
                         "more never lowers the lr")
    return notes


def check_objective(objective: dict[str, Any]) -> None:
    """The objective must be a metric every epoch records, maximized or minimized."""
    metrics = [k for k in RECORD_KEYS if k != "epoch"]
    if objective["metric"] not in metrics:
        raise ConfigError(f"sweep.objective.metric={objective['metric']!r} is not a per-epoch metric; choose one of: {', '.join(metrics)}")
    if objective["direction"] not in ("maximize", "minimize"):
        raise ConfigError(f"sweep.objective.direction={objective['direction']!r} must be maximize or minimize")


def build_sampler(sweep: dict[str, Any], space: SearchSpace) -> optuna.samplers.BaseSampler:
    s = sweep["sampler"]
    if s["name"] == "tpe":
        return optuna.samplers.TPESampler(seed=s["seed"], n_startup_trials=s["n_startup_trials"])
    if s["name"] == "random":
        return optuna.samplers.RandomSampler(seed=s["seed"])
    if s["name"] == "grid":
        return optuna.samplers.GridSampler(space.grid(), seed=s["seed"])
    raise ConfigError(f"sweep.sampler.name={s['name']!r} is unknown; choose one of: tpe, random, grid")


def build_pruner(sweep: dict[str, Any], epochs: int) -> optuna.pruners.BasePruner:
    """The pruner `sweep.pruner` names; ConfigError for a value Optuna refuses (it would fail every trial)."""
    p = sweep["pruner"]
    try:
        return _pruner(p, epochs)
    except ConfigError:
        raise
    except ValueError as e:  # Optuna's own checks of the values
        raise ConfigError(f"sweep.pruner.name={p['name']}: {e}") from None


def _pruner(p: dict[str, Any], epochs: int) -> optuna.pruners.BasePruner:
    if p["name"] in ("median", "percentile"):
        percentile = 50.0 if p["name"] == "median" else float(p["percentile"])
        if not 0 < percentile < 100:
            raise ConfigError(f"sweep.pruner.percentile={percentile} must be between 0 and 100 (75 keeps the top 75%)")
        return optuna.pruners.PercentilePruner(percentile, n_startup_trials=p["n_startup_trials"],
                                               n_warmup_steps=p["n_warmup_steps"])  # fmt: skip
    if p["name"] in ("successive_halving", "hyperband"):
        if p["name"] == "hyperband" and not isinstance(p["min_resource"], int):
            raise ConfigError(f"sweep.pruner.min_resource={p['min_resource']}: hyperband needs a number of epochs "
                              "(successive_halving also takes auto)")  # fmt: skip
        if isinstance(p["min_resource"], int) and p["min_resource"] > epochs:
            raise ConfigError(f"sweep.pruner.min_resource={p['min_resource']} exceeds train.epochs={epochs}: "
                              "the first rung would come after the last epoch")  # fmt: skip
        # checks min_resource and reduction_factor now (HyperbandPruner checks them at its first trial)
        halving = optuna.pruners.SuccessiveHalvingPruner(min_resource=p["min_resource"], reduction_factor=p["reduction_factor"])
        if p["name"] == "successive_halving":
            return halving
        return optuna.pruners.HyperbandPruner(min_resource=p["min_resource"], max_resource=epochs,
                                              reduction_factor=p["reduction_factor"])  # fmt: skip
    if p["name"] == "none":
        return optuna.pruners.NopPruner()
    raise ConfigError(f"sweep.pruner.name={p['name']!r} is unknown; choose one of: median, percentile, successive_halving, hyperband, none")


# --------------------------------------------------------------------------- clean-up of dead trials


def reconcile(sw: Sweep) -> None:
    """Fail trials whose process died, and close every child run whose trial is no longer running."""
    fail_dead_trials(sw.study)
    with sw.lock:  # no process is between creating a trial and naming it (`budget.optimize_one`)
        fail_orphans(sw.study)
    states = {str(t.number): t.state for t in sw.study.get_trials(deepcopy=False)}
    for run in sw.tracker.running_children(sw.parent_run_id):
        state = states.get(run.data.tags.get("sweep.trial", ""))
        if state is not None and state != TrialState.RUNNING:
            sw.tracker.finish(run.info.run_id, state.name, {"sweep.failure": "interrupted", "sweep.error": "the process running this trial died"}
                              if state == TrialState.FAIL else {})  # fmt: skip


# --------------------------------------------------------------------------- running trials


def run_in_process(sw: Sweep) -> None:
    """Trials one after another in this process (data loaded once), with progress bars."""
    metric = sw.job["sweep"]["objective"]["metric"]
    epochs = int(sw.job["train"]["epochs"])
    with progress() as bar:
        trials = bar.add_task("trials", total=sw.n_trials, completed=len(spent(finished(sw.study))))
        epoch_bar = bar.add_task("epochs", total=epochs)

        def on_epoch(trial: optuna.Trial, record: Any) -> None:
            bar.update(epoch_bar, completed=int(record["epoch"]), description=f"trial {trial.number} epochs")

        def on_trial(study: optuna.Study, t: FrozenTrial) -> None:
            bar.console.print(trial_line(t, metric))
            bar.update(trials, completed=len(spent(finished(study))))
            bar.reset(epoch_bar)

        objective = sw.objective(on_epoch=on_epoch)
        try:  # until the budget is spent (by any process), or the tracking store failed or the same error failed
            # the last trials: every trial left would fail too
            while sw.tracker.failure is None and sw.repeated_failure() is None and optimize_one(
                    sw.study, objective, sw.n_trials, sw.lock, sw.grid, sw.seed, callbacks=[on_trial]):
                pass
        finally:
            objective.close()
        if sw.tracker.failure is not None:
            raise sw.tracker.failure


def run_workers(sw: Sweep, overrides: list[str]) -> None:
    """Keep `n_workers` worker processes busy, granting each trial while the study's budget has room
    (`sweeps.workers`), until the study holds n_trials trials that count."""
    metric = sw.job["sweep"]["objective"]["metric"]
    pool = WorkerPool(int(sw.job["sweep"]["n_workers"]), {**os.environ, WORKER_ENV: json.dumps(overrides)}, _gpu_count())
    printed = {t.number for t in finished(sw.study)}
    granted: set[int] = set()  # workers told `go` that have not asked again since
    starting: set[int] = set()  # workers spawned that have not asked yet: each will want one trial
    lost = False  # a worker exited because a store failed
    with progress() as bar:
        task = bar.add_task("trials", total=sw.n_trials, completed=len(spent(finished(sw.study))))
        try:
            while True:
                ready, exited = pool.wait(timeout=0.5)
                granted -= {*ready, *exited}
                starting -= {*ready, *exited}
                lost = lost or EXIT_STORE_LOST in exited.values()
                if exited and not lost:
                    reconcile(sw)
                trials = sw.study.get_trials(deepcopy=False)
                for t in trials:
                    if t.state in FINISHED and t.number not in printed:
                        printed.add(t.number)
                        bar.console.print(trial_line(t, metric))
                        bar.update(task, completed=len(spent(t for t in trials if t.state in FINISHED)))
                if lost and not pool.procs:
                    raise store_lost(sw) or TrackingError(f"a worker could not write to the MLflow tracking store "
                                                          f"{mask(sw.job['tracking']['uri'])}")  # fmt: skip
                used = spent(trials)
                stop = lost or sw.repeated_failure(trials) is not None  # the trials left would fail too
                if (len(used) >= sw.n_trials or stop) and not pool.procs:
                    break
                # a granted worker whose trial is not running yet will add one that counts (a queued re-run or a
                # new trial); a finished trial's pid may have been reused, hence the RUNNING state
                running = {t.user_attrs.get(WORKER_ATTR) for t in trials if t.state == TrialState.RUNNING}
                pending = sum(worker_id(pid) not in running for pid in granted)
                for pid in ready:
                    go = not stop and len(used) + pending < sw.n_trials
                    pool.answer(pid, go)
                    if go:
                        granted.add(pid)
                        pending += 1
                while not stop and len(pool.procs) < pool.size and len(used) + pending + len(starting) < sw.n_trials:
                    starting.add(pool.spawn())
        except KeyboardInterrupt as e:  # Ctrl-C or SIGTERM reached this process only: pass it on
            pool.interrupt(signal.SIGTERM if isinstance(e, Terminated) else signal.SIGINT)
            raise
        finally:  # give them time to close their runs
            pool.close(timeout=30)


def _gpu_count() -> int:
    import torch

    return torch.cuda.device_count() if torch.cuda.is_available() else 0


def worker() -> int:
    """Trials of the study named by the overrides in $SWEEPS_WORKER_OVERRIDES, one per `go` from the
    driver (`run_workers`), with the data loaded once."""
    channel = DriverChannel()
    sw, _ = open_sweep(json.loads(os.environ[WORKER_ENV]), worker=True)
    objective = sw.objective()
    try:
        try:
            while sw.tracker.failure is None and channel.granted():  # the driver grants; the lock makes it exact
                optimize_one(sw.study, objective, sw.n_trials, sw.lock, sw.grid, sw.seed)  # across machines (False: spent elsewhere)
        finally:
            objective.close()  # every write sent, on Ctrl-C too
    except KeyboardInterrupt as e:  # passed on by the driver: the trial is marked failed, the driver says so once
        return interruption(e)[1]
    except Exception:
        if sw.tracker.failure is None and store_lost(sw) is None:
            raise
        return EXIT_STORE_LOST  # the driver says so once
    return EXIT_STORE_LOST if sw.tracker.failure is not None else 0


# --------------------------------------------------------------------------- the command


def run(overrides: list[str]) -> int:
    sw, cfg = open_sweep(overrides)
    run_dir = write_run_dir(cfg)
    name = sw.job["sweep"]["study_name"]
    console.print(f"study [bold]{name}[/] in {mask(sw.job['sweep']['storage'])}; run directory {run_dir}")
    for note in idle_schedules(sw.space, int(sw.job["train"]["epochs"])):
        console.print(f"[yellow]{note}[/]")
    if sw.n_trials < (asked := int(sw.job["sweep"]["n_trials"])):
        console.print(f"[yellow]the grid holds {math.prod(map(len, sw.grid.values()))} points: the study ends with "
                      f"{sw.n_trials} trials, not sweep.n_trials={asked} (more would train points again)[/]")
    _log_parent(sw, run_dir)
    reconcile(sw)
    again, outside = queue_retries(sw.study, sw.space.contains)
    if held := len(spent(sw.study.get_trials(deepcopy=False))):
        more = f"sweep.n_trials={sw.n_trials}: raise it" if sw.n_trials == asked else "add grid values"
        console.print(f"the study already holds {held} trial{'s' if held != 1 else ''}: nothing to train ({more} to add more)"
                      if held >= sw.n_trials else f"resuming: the study already holds {held} of sweep.n_trials={sw.n_trials} trials")  # fmt: skip
    if again and held < sw.n_trials:
        console.print(f"{'trials' if len(again) > 1 else 'trial'} {', '.join(map(str, again))} "
                      f"{'were' if len(again) > 1 else 'was'} interrupted: run again first, with the same params")  # fmt: skip
    if outside:
        console.print(f"interrupted {'trials' if len(outside) > 1 else 'trial'} {', '.join(map(str, outside))} "
                      f"{'lie' if len(outside) > 1 else 'lies'} outside the search space now: not run again")  # fmt: skip
    stopped: int | None = None  # the exit status of Ctrl-C or SIGTERM
    try:
        if (pack := pack_size(sw.job)) > 1:
            run_packed(sw, pack)
        elif int(sw.job["sweep"]["n_workers"]) == 1:
            run_in_process(sw)
        else:
            run_workers(sw, overrides)
    except KeyboardInterrupt as e:  # Ctrl-C or SIGTERM
        what, stopped = interruption(e)
        console.print(f"[yellow]{what}: trials still running are marked failed; re-run the same command to resume[/]")
    except Exception as e:  # a store that stopped answering: nothing more can be recorded, no report, no triage
        if (lost := e if isinstance(e, TrackingError) else store_lost(sw)) is None:
            raise
        console.print(f"[red]error: {lost}[/]\nthe sweep stopped: finished trials are kept in the study, trials it was "
                      "running are marked failed (at the latest when it resumes); re-run the same command to resume "
                      "once the store answers")  # fmt: skip
        return EXIT_STORE_LOST
    reconcile(sw)
    report_sweep(sw, run_dir, list(cfg.hydra.overrides.task))
    done = len(spent(sw.study.get_trials(deepcopy=False))) >= sw.n_trials
    sw.tracker.client.set_terminated(sw.parent_run_id, "FINISHED" if done and stopped is None else "KILLED")
    if not (stopped or done) and (error := sw.repeated_failure()) is not None:  # last, below triage's table
        console.print(f"[red]error: the sweep stopped: its last {sw.job['sweep']['max_repeated_failures']} trials "
                      f"failed with the same error ({error}) and the trials left would too; fix it, then re-run the "
                      "same command to resume (sweep.max_repeated_failures=0 never stops)[/]")  # fmt: skip
        return 1
    return stopped or 0


def store_lost(sw: Sweep) -> Exception | None:
    """Why the study's Optuna storage no longer answers (a database gone), or None when it does."""
    try:
        open_storage(sw.job["sweep"]["storage"]).get_all_studies()
    except Exception as e:  # open_storage says it in one line
        return e
    return None


def _log_parent(sw: Sweep, run_dir: Path) -> None:
    params = flatten({k: v for k, v in sw.job["sweep"].items() if k != "space"}, "sweep.")
    existing = sw.tracker.client.get_run(sw.parent_run_id).data.params
    new = {k: v for k, v in params.items() if k not in existing}  # a resumed sweep may not change logged params
    if new:
        sw.tracker.log_params(sw.parent_run_id, new)
    sw.tracker.client.log_artifact(sw.parent_run_id, str(run_dir / ".hydra" / "config.yaml"))



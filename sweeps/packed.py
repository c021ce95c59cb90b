"""`sweep.pack=K`: ask Optuna for K trials at a time and train them as one fused model (training.fused).

Each trial of a pack gets what `sweeps.objective.Objective` gives an unfused trial: its child MLflow
run (same params and tags, each epoch in one `log_batch`), `trial.report` + `should_prune` after
every epoch but the last, triage's online stop, `study.tell` with its state, triage's verdict as
user attributes, a heartbeat, and its line in the output. A pruned or stopped trial leaves the pack
at once; a diverged one (loss NaN/inf) leaves it where the plain loop would have stopped it (PRUNED, diverging).
Trials whose sampled values cannot share a pack (a different seed, batch size or optimizer family:
`training.fused.pack_key`) are trained as separate packs, one after another. The study ends when it
holds `sweep.n_trials` trials, as with unfused trials.

Fusion pays on a GPU only: on a CPU it is slower than running the trials one after another
(bench/fused_trials.py), so `pack_size` refuses pack > 1 there.
"""

from __future__ import annotations

import math
import warnings
from collections import defaultdict
from collections.abc import Mapping
from contextlib import ExitStack
from typing import TYPE_CHECKING, Any

import optuna
from optuna.storages._heartbeat import get_heartbeat_thread
from optuna.trial import TrialState

from sweeps.budget import queue_grid, room
from sweeps.objective import Objective, StopTrial
from sweeps.report import console, trial_line
from sweeps.storage import WORKER_ATTR, fail_stale_trials, worker_id
from training import TrialConfig, resolve_device
from training.config import ConfigError
from training.fused import Member, check_pack, pack_key, train_epochs_fused

if TYPE_CHECKING:
    from sweeps.driver import Sweep

CPU_REFUSAL = "sweep.pack>1 fuses trials on a GPU; on a CPU it is slower (see bench/fused_trials.py): use sweep.pack=1"


def pack_size(job: Mapping[str, Any], allow_cpu: bool = False) -> int:
    """`sweep.pack`, checked: >= 1; > 1 only in one process and not on a CPU (`allow_cpu` is for tests)."""
    k = int(job["sweep"]["pack"])
    if k < 1:
        raise ConfigError(f"sweep.pack={k} must be >= 1 (1 = one trial at a time)")
    if k > 1 and int(job["sweep"]["n_workers"]) != 1:
        raise ConfigError("sweep.pack>1 trains its packs in this process: use sweep.n_workers=1")
    if k > 1 and not allow_cpu and resolve_device(str(job["train"]["device"])).type == "cpu":
        raise ConfigError(CPU_REFUSAL)
    return k


def run_packed(sw: Sweep, k: int, *, allow_cpu: bool = False) -> None:
    """Run the study in packs of `k` fused trials until it holds `sweep.n_trials` trials."""
    pack_size({**sw.job, "sweep": {**sw.job["sweep"], "pack": k}}, allow_cpu)
    objective = sw.objective()
    study = sw.study
    try:
        while True:
            with warnings.catch_warnings():  # heartbeats outside Study.optimize: we keep one per trial ourselves
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                warnings.filterwarnings("ignore", "Heartbeat of storage is supposed to be used with Study.optimize")
                fail_stale_trials(study)  # as Study.optimize does before each trial
                if sw.tracker.failure is not None:  # every pack left would fail alike
                    raise sw.tracker.failure
                if sw.repeated_failure() is not None:  # so would every trial left (`run` says why)
                    return
                with sw.lock:  # counted, started and named as one step across processes (`budget.optimize_one`)
                    # WAITING (queued) trials are not counted: ask() hands them out first, so they run
                    if (remaining := room(study, sw.n_trials, sw.grid)) <= 0:
                        return
                    queue_grid(study, sw.grid, min(k, remaining), sw.seed)
                    asked = [study.ask() for _ in range(min(k, remaining))]
                    for t in asked:
                        t.set_user_attr(WORKER_ATTR, worker_id())
            _run_pack(objective, [PackedTrial(objective, t) for t in asked])
    finally:
        objective.close()  # every run published and closed


class PackedTrial:
    """One trial of a pack: `Objective.__call__`'s bookkeeping, called epoch by epoch."""

    def __init__(self, objective: Objective, trial: optuna.Trial) -> None:
        self.objective, self.trial = objective, trial
        self.heartbeat = ExitStack()  # Study.optimize keeps one per running trial; so do we, until tell
        self.heartbeat.enter_context(get_heartbeat_thread(trial._trial_id, trial.study._storage))
        self.values, self.run_id = objective.start(trial)
        self.cfg: TrialConfig | None = None
        self.records: list[Mapping[str, float]] = []
        self.value = math.nan
        self.done = False

    def after_epoch(self, record: Mapping[str, float]) -> StopTrial | None:
        """Log an epoch; the StopTrial that ends the trial (online triage, pruner), or None."""
        assert self.cfg is not None
        try:
            self.value = self.objective.after_epoch(self.trial, self.run_id, record, self.records, self.cfg.train.epochs,
                                                    self.cfg.scheduler.warmup_epochs)
        except StopTrial as e:
            return e
        return None

    def fail(self, e: BaseException) -> None:
        """FAIL with `Objective.failure_tags` (call inside its `except`: the traceback is logged)."""
        self.close("FAIL", self.objective.failure_tags(self.run_id, e))

    def close(self, state: str, tags: dict[str, Any] | None = None) -> None:
        """Close the MLflow run (`Objective.close_trial`), then tell Optuna, as Study.optimize would."""
        if self.done:
            return
        self.done = True
        try:
            self.objective.close_trial(self.trial, self.run_id, state, tags or {}, self.records)
        finally:
            self.heartbeat.close()
            study = self.trial.study
            if state == "COMPLETE":
                with warnings.catch_warnings():  # a NaN objective is told FAIL, as optimize does, quietly
                    warnings.simplefilter("ignore")
                    frozen = study.tell(self.trial, self.value)
            else:
                frozen = study.tell(self.trial, state=TrialState.PRUNED if state == "PRUNED" else TrialState.FAIL)
            console.print(trial_line(frozen, self.objective.sweep["objective"]["metric"]))


def _run_pack(objective: Objective, trials: list[PackedTrial]) -> None:
    """Configure each trial (a bad one fails alone), then train each group that can share a pack."""
    groups: dict[tuple, list[PackedTrial]] = defaultdict(list)
    for t in trials:
        try:
            t.cfg = objective.trial_config(t.values)
            check_pack([t.cfg])
            Member.from_config(t.cfg)  # builds its optimizer: an invalid one (nesterov, momentum 0) fails here, alone
            groups[pack_key(t.cfg)].append(t)
        except Exception as e:
            t.fail(e)
    try:
        for group in groups.values():
            _train_group(objective, group)
    except BaseException as e:  # interrupted (or a store failed) outside a group: nobody stays RUNNING
        for t in trials:
            if not t.done:
                t.fail(e)
        raise


def _train_group(objective: Objective, group: list[PackedTrial]) -> None:
    cfgs = [t.cfg for t in group]
    try:
        assert all(cfgs)
        pack = train_epochs_fused(cfgs, objective.data(cfgs[0]))  # type: ignore[arg-type]
        for records in pack:
            for i, (t, record) in enumerate(zip(group, records)):
                if record is None or t.done:
                    continue
                stop = t.after_epoch(record)
                if stop is not None:
                    pack.remove(i)
                    t.close("PRUNED", stop.tags())
        for i, t in enumerate(group):
            if pack.status[i] == "completed" and not t.done:
                t.close("COMPLETE")
    except Exception as e:  # as Study.optimize(catch=(Exception,)): these trials fail, the sweep goes on
        for t in group:
            if not t.done:
                t.fail(e)
    # Ctrl-C goes on to `_run_pack`, which fails every trial still running and stops the sweep


"""MLflow bookkeeping of a sweep: one parent run per study, one child run per trial.

Epoch records go out in one `log_batch` call per batch of epochs (step = epoch; `Objective` sends a
trial's first epoch at once, then what accumulated, at most every few seconds). MLflow's UI breaks
on NaN metrics, so a non-finite value is left out of its series and recorded in the tag
`sweep.nonfinite = metric@epoch,...` (triage reads it as a divergence). An epoch cut short by a NaN
loss was not evaluated: its `val_*` are NaN placeholders (finite `val_acc` tells an evaluated epoch)
and are left out without a mark.

Trials hand their writes to `Tracker.later`: one background thread runs them in order, so training
does not wait on the store (10-20 ms of SQLAlchemy per call on SQLite). `flush` waits for them and
raises a write that failed as `TrackingError`: the sweep then stops, rather than fail every trial
left on a store that is gone. A killed process loses at most the writes still queued and the epochs
its running trials had not sent yet (a few seconds' worth; those trials are failed on resume).
"""

from __future__ import annotations

import logging
import math
import os
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import AbstractContextManager, contextmanager, nullcontext
from pathlib import Path
from typing import Any

from mlflow import MlflowClient
from mlflow.entities import Metric, Param, RunStatus, RunTag
from mlflow.exceptions import MlflowException
from mlflow.utils.mlflow_tags import MLFLOW_PARENT_RUN_ID

from sweeps.storage import StudyLock, mask, sqlite_file
from training.config import ConfigError, check_dir, make_dir
from training.errors import describe
from triage.mlflow_io import store_error

PARENT_ROLE = "parent"
# "Creating initial MLflow database tables...", "Updating database tables": MLflow's INFO lines on a new store,
# timestamped, amid the sweep's own output (which names the store); its warnings and errors still show
logging.getLogger("mlflow.store.db.utils").setLevel(logging.WARNING)
MAX_PARAMS_PER_BATCH = 100  # MLflow's limits per log_batch call
MAX_METRICS_PER_BATCH = 1000


class TrackingError(RuntimeError):
    """A write to the tracking store failed (a server gone, a full disk): the sweep stops; re-running resumes it."""


def check_reachable(uri: str) -> None:
    """Fail in one line, before anything is created, when the tracking URI cannot be used."""
    if uri.startswith(("http://", "https://")):
        try:
            with urllib.request.urlopen(uri.rstrip("/") + "/health", timeout=5):
                return
        except (urllib.error.URLError, OSError) as e:
            reason = getattr(e, "reason", e)
            raise ConfigError(f"MLflow tracking server {mask(uri)} is unreachable ({reason}); check tracking.uri") from None
    elif uri.startswith("sqlite:///"):
        check_dir(sqlite_file(uri).parent, "SWEEPS_HOME or tracking.uri")  # made when the store is first used
    elif not uri.startswith(("postgresql", "mysql", "file:", "databricks")):
        raise ConfigError(f"tracking.uri={mask(uri)!r}: use sqlite:///<path> or http://host:port")
    elif reason := store_error(uri):
        raise ConfigError(f"{mask(reason)}; check tracking.uri")


class Tracker:
    """Parent/child runs of one study in one MLflow experiment (named like the study)."""

    def __init__(self, uri: str, experiment: str, artifact_location: str | None = None) -> None:
        self.uri = uri
        # the sweep prints one line per trial; a tracking server would have MLflow print two links per run
        os.environ.setdefault("MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT", "true")
        self.failure: TrackingError | None = None  # the first write that failed; later trials would fail alike
        with _first_use(uri), self.writing():
            self.client = MlflowClient(tracking_uri=uri)
            found = self.client.get_experiment_by_name(experiment)
        if found is not None and found.lifecycle_stage != "active":  # MLflow keeps a deleted one's name taken
            env, eid = f"MLFLOW_TRACKING_URI={mask(uri)}", found.experiment_id
            backend = "<the server's --backend-store-uri>" if uri.startswith("http") else mask(uri)
            raise ConfigError(
                f"MLflow experiment {experiment!r} in {mask(uri)} was deleted: restore it ({env} mlflow experiments "
                f"restore -x {eid}), delete it for good ({env} mlflow gc --backend-store-uri {backend} "
                f"--experiment-ids {eid}), or set another sweep.study_name")
        with _first_use(uri), self.writing():
            self.experiment_id = found.experiment_id if found else self._create_experiment(experiment, artifact_location)
        self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="mlflow-writes")
        self._pending: list[Future[Any]] = []
        self._nonfinite: dict[str, list[str]] = {}  # run id → its `metric@epoch` marks so far

    @contextmanager
    def writing(self) -> Iterator[None]:
        """Calls to the store inside raise TrackingError (and set `failure`) when they fail."""
        try:
            yield
        except TrackingError:
            raise
        except Exception as e:
            self.failure = self.failure or TrackingError(
                f"the MLflow tracking store {mask(self.uri)} failed: {mask(describe(e))}")
            raise self.failure from e

    def _create_experiment(self, name: str, artifact_location: str | None) -> str:
        """The id of a new experiment `name` (or of the one another process started at once created)."""
        location = None if self.uri.startswith(("http", "databricks")) else artifact_location
        if location:
            location = Path(location).expanduser().resolve().joinpath(name).as_uri()
        try:
            return self.client.create_experiment(name, artifact_location=location)
        except MlflowException as e:  # another process created it since
            if e.error_code != "RESOURCE_ALREADY_EXISTS":
                raise
            return self.client.get_experiment_by_name(name).experiment_id

    # ----------------------------------------------------------------- background writes

    def later(self, fn: Callable[..., Any], *args: Any) -> None:
        """Run fn(*args) on the tracking thread, after everything handed over before it."""
        self._raise_failed(wait=False)
        self._pending.append(self._thread.submit(fn, *args))

    def flush(self) -> None:
        """Wait for every write handed to `later`; raise the first that failed."""
        self._raise_failed(wait=True)

    def _raise_failed(self, wait: bool) -> None:
        done = [f for f in self._pending if wait or f.done()]
        self._pending = [f for f in self._pending if f not in done]
        for f in done:
            with self.writing():
                f.result()  # re-raises the write's exception in the trial's thread

    # ----------------------------------------------------------------- parent run

    def parent_run(self, study: str, run_id: str | None) -> str:
        """The sweep's parent run: `run_id` when it exists (resume), else a new one; marked RUNNING."""
        if run_id is not None:
            self.client.update_run(run_id, status="RUNNING")
            return run_id
        run = self.client.create_run(
            self.experiment_id, run_name=f"{study} sweep", tags={"sweep.role": PARENT_ROLE, "sweep.study": study}
        )
        return run.info.run_id

    def adopt_children(self, old_parent: str, new_parent: str) -> int:
        """Move the active runs under `old_parent` (a deleted parent run) under `new_parent`; how many."""
        children = self.client.search_runs([self.experiment_id], f"tags.{MLFLOW_PARENT_RUN_ID} = '{old_parent}'",
                                           max_results=50000)
        for run in children:
            self.client.set_tag(run.info.run_id, MLFLOW_PARENT_RUN_ID, new_parent)
        return len(children)

    def missing_run(self, run_id: str) -> str | None:
        """Why `run_id` cannot be this experiment's parent run (deleted, or not in this store), else None."""
        try:
            info = self.client.get_run(run_id).info
        except MlflowException as e:
            if e.error_code != "RESOURCE_DOES_NOT_EXIST":
                raise
            return f"is not in {mask(self.uri)} (another tracking store, or one made anew)"
        if info.lifecycle_stage != "active":
            return "was deleted"
        if info.experiment_id != self.experiment_id:
            return "belongs to another experiment"
        return None

    # ----------------------------------------------------------------- trial runs

    def start_trial(self, parent_id: str, study: str, number: int, space: list[str]) -> str:
        """A new child run of trial `number`, whose sampled keys are `space`: its run id."""
        tags = {MLFLOW_PARENT_RUN_ID: parent_id, "sweep.study": study, "sweep.trial": str(number),
                "sweep.state": "RUNNING", "sweep.space": ",".join(space)}  # fmt: skip
        with self.writing():
            return self.client.create_run(self.experiment_id, run_name=f"trial {number}", tags=tags).info.run_id

    def log_text(self, run_id: str, text: str, name: str) -> None:
        with self.writing():
            self.client.log_text(run_id, text, name)

    def log_params(self, run_id: str, params: Mapping[str, Any]) -> None:
        """Params (masked, as text), in as few calls as MLflow allows."""
        items = [Param(k, mask(_text(v))[:6000]) for k, v in params.items()]
        for i in range(0, len(items), MAX_PARAMS_PER_BATCH):
            self.client.log_batch(run_id, params=items[i : i + MAX_PARAMS_PER_BATCH])

    def log_epochs(self, run_id: str, epochs: Sequence[tuple[int, Mapping[str, float]]]) -> None:
        """(timestamp ms, record) pairs in as few calls as MLflow allows, step = epoch; non-finite values become a tag."""
        metrics: list[Metric] = []
        new: list[str] = []
        for stamp, record in epochs:
            step = int(record["epoch"])
            evaluated = math.isfinite(record.get("val_acc", math.nan))
            metrics += [Metric(k, float(v), stamp, step) for k, v in record.items() if k != "epoch" and math.isfinite(v)]
            new += [f"{k}@{step}" for k, v in record.items() if not math.isfinite(v) and (evaluated or not k.startswith("val_"))]
        if new:
            self._nonfinite[run_id] = self._nonfinite.get(run_id, []) + new
        tags = [RunTag("sweep.nonfinite", ",".join(self._nonfinite[run_id])[:5000])] if new else []  # a tag is overwritten: all marks
        for i in range(0, max(len(metrics), 1), MAX_METRICS_PER_BATCH):
            self.client.log_batch(run_id, metrics=metrics[i : i + MAX_METRICS_PER_BATCH], tags=tags if i == 0 else [])

    def finish(self, run_id: str, state: str, tags: Mapping[str, Any] | None = None) -> None:
        """Close a trial's run: COMPLETE → FINISHED, PRUNED → KILLED, FAIL → FAILED."""
        status = {"COMPLETE": RunStatus.FINISHED, "PRUNED": RunStatus.KILLED}.get(state, RunStatus.FAILED)
        all_tags = [RunTag("sweep.state", state)] + [RunTag(k, mask(_text(v))[:5000]) for k, v in (tags or {}).items()]
        self.client.log_batch(run_id, tags=all_tags)
        self.client.set_terminated(run_id, RunStatus.to_string(status))

    def running_children(self, parent_id: str) -> list[Any]:
        return self.client.search_runs(
            [self.experiment_id],
            filter_string=f"tags.`{MLFLOW_PARENT_RUN_ID}` = '{parent_id}' and attributes.status = 'RUNNING'",
            max_results=10000,
        )


def _first_use(uri: str) -> AbstractContextManager[Any]:
    """A lock around the first use of a SQL tracking store (a file lock for SQLite, a database lock on a server):
    processes opening a new one at once race in MLflow's schema migrations ("duplicate column name", "table ...
    already exists"; on a new PostgreSQL database 3 of 4 processes failed with a unique violation)."""
    if not uri.startswith(("sqlite:///", "postgresql", "mysql")):
        return nullcontext()
    if uri.startswith("sqlite:///"):
        make_dir(sqlite_file(uri).parent, "SWEEPS_HOME or tracking.uri")  # for the database and its lock file
    return StudyLock(uri, "<mlflow tracking schema>")  # a name no study has: it locks only this first use


def _text(v: Any) -> str:
    return "null" if v is None else str(v)


def flatten(node: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """{'a': {'b': 1}} → {'a.b': 1}; lists stay values."""
    out: dict[str, Any] = {}
    for k, v in node.items():
        key = f"{prefix}{k}"
        if isinstance(v, Mapping):
            out.update(flatten(v, key + "."))
        else:
            out[key] = v
    return out

"""Read an experiment's runs and curves from MLflow in bulk, and write verdicts back as tags.

Reading is two kinds of calls whatever the number of runs: ``search_runs`` pages (params, tags,
status) and, per metric name, one bulk history query per 500 runs. On a SQL tracking store that
query is the store's ``get_metric_history_bulk`` (the same query MLflow's UI uses to draw many
runs' charts); on other stores (an ``http://`` server, the file store) histories are fetched with
``MlflowClient.get_metric_history`` from a thread pool.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Sequence
from urllib.parse import urlparse

import numpy as np

from .names import CANONICAL, MetricNames

#: MLflow's SQL store saves ±inf as ±max float; anything this large is read back as infinite.
_INF_STORED = 1.7976931348623157e308
_BULK_CHUNK = 500


class TriageError(RuntimeError):
    """Bad input (unknown experiment or run, unreachable store): the message is one line for the user."""


@dataclass
class RunRecord:
    """One MLflow run as triage sees it: identity, status, params, tags and canonical curves."""

    run_id: str
    run_name: str
    status: str
    params: dict[str, str]
    tags: dict[str, str]
    start_time: int = 0
    curves: dict[str, np.ndarray] = field(default_factory=dict)
    experiment_id: str = ""
    held: int = 0  # runs of the experiment that nest under it (tag mlflow.parentRunId)

    @property
    def is_sweep_parent(self) -> bool:
        return self.tags.get("sweep.role") == "parent"

    @property
    def is_parent(self) -> bool:
        """A run that holds trials rather than being one, so is not judged: a sweep's parent run, or a run
        other runs nest under that logs no loss of its own (other code's parent runs)."""
        return self.is_sweep_parent or (self.held > 0 and not {"train_loss", "val_loss"} & self.curves.keys())

    @property
    def trial(self) -> int | None:
        t = self.tags.get("sweep.trial")
        return int(t) if t is not None and t.lstrip("-").isdigit() else None

    @property
    def state(self) -> str:
        """Sweep state (COMPLETE/PRUNED/FAIL) when tagged, else MLflow's run status."""
        return self.tags.get("sweep.state") or self.status

    @property
    def label_name(self) -> str:
        """Short name for tables: the trial number when there is one, else the run name."""
        return f"trial {self.trial}" if self.trial is not None else (self.run_name or self.run_id[:8])

    def meta(self) -> dict[str, Any]:
        """Facts for ``classify`` that the curves cannot show (failure, error, pruned, still running)."""
        failure = self.tags.get("sweep.failure")
        if failure is None and self.status == "FAILED":
            failure = "failed"  # other code: a FAILED run without a curve is crashed
        if self.tags.get("sweep.state") == "PRUNED":
            reason = self.tags.get("sweep.pruned_reason", "pruner")
            why = self.tags.get("sweep.error")  # the pruner's own words: "val_acc=0.1 at epoch 1 trails the other trials"
            note = ("stopped early by the pruner" + (f": {why}" if why else "")) if reason == "pruner" else ""
        else:
            note = {"RUNNING": "still running", "KILLED": "killed before the end"}.get(self.status, "")
        pruned = self.tags.get("sweep.state") == "PRUNED" or self.status in ("RUNNING", "KILLED")
        return {"failure": failure, "error": self.tags.get("sweep.error"), "pruned": pruned, "note": note,
                "optimizer": self.params.get("optimizer.name")}


def check_tracking_uri(uri: str) -> None:
    """Fail with one line when ``uri`` is a SQLite file or file store that does not exist (MLflow would
    create it) or a store MLflow cannot open (see ``store_error``)."""
    parsed = urlparse(uri)
    if parsed.scheme == "sqlite":
        path = uri[len("sqlite:///"):] if uri.startswith("sqlite:///") else parsed.path
        if path and path != ":memory:" and not Path(path).exists():
            raise TriageError(f"no MLflow database at {path} (tracking URI {uri}); pass --tracking-uri or set "
                              "MLFLOW_TRACKING_URI")
    elif parsed.scheme in ("", "file"):
        path = parsed.path if parsed.scheme == "file" else uri
        if not Path(path).exists():
            raise TriageError(f"no MLflow file store at {path}; pass --tracking-uri or set MLFLOW_TRACKING_URI")
    if reason := store_error(uri):
        raise TriageError(f"{reason}; check --tracking-uri")


def store_error(uri: str) -> str | None:
    """Why MLflow cannot open the tracking store at ``uri`` (one line), or None.

    A file store (a path, ``file://``) opens only with ``MLFLOW_ALLOW_FILE_STORE=true`` since MLflow 3.
    A PostgreSQL or MySQL database is tried once, for at most 10 s: MLflow's SQL store retries a failed
    connection ten times over about 100 s, logging each try, before it raises."""
    scheme = urlparse(uri).scheme
    if scheme in ("", "file"):
        from mlflow import environment_variables

        allowed = getattr(environment_variables, "MLFLOW_ALLOW_FILE_STORE", None)  # earlier MLflow 3 releases open any
        if allowed is not None and not allowed.get():
            return (f"{uri} is an MLflow file store, which MLflow 3 opens only with MLFLOW_ALLOW_FILE_STORE=true: set "
                    "it, or copy the runs into SQLite (mlflow migrate-filestore --source DIR --target sqlite:///mlflow.db)")
        return None
    if not uri.startswith(("postgresql", "mysql")):
        return None
    from sqlalchemy import create_engine
    from sqlalchemy.pool import NullPool

    try:
        engine = create_engine(uri, poolclass=NullPool, connect_args={"connect_timeout": 10})
        try:
            engine.connect().close()
        finally:
            engine.dispose()
    except Exception as e:  # driver errors carry multi-line text; a missing driver is an ImportError
        reason = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        return f"cannot open the MLflow database {uri}: {reason}"
    return None


def client_for(uri: str) -> Any:
    """An ``MlflowClient`` for ``uri`` after checking the store exists (see ``check_tracking_uri``)."""
    from mlflow.tracking import MlflowClient

    check_tracking_uri(uri)
    return MlflowClient(tracking_uri=uri)


def find_experiment(client: Any, name: str) -> Any:
    """The experiment called ``name``; ``TriageError`` when there is none (or the store is unreachable)."""
    from mlflow.exceptions import MlflowException

    try:
        exp = client.get_experiment_by_name(name)
    except MlflowException as e:
        raise TriageError(f"cannot read {client.tracking_uri}: {str(e).splitlines()[0]}") from None
    except Exception as e:  # connection errors of the http client
        raise TriageError(f"cannot reach {client.tracking_uri}: {type(e).__name__}: {str(e).splitlines()[0]}") from None
    if exp is None:
        raise TriageError(f"no experiment named {name!r} at {client.tracking_uri}")
    if exp.lifecycle_stage != "active":
        raise TriageError(f"experiment {name!r} at {client.tracking_uri} was deleted; restore it first "
                          f"(MLFLOW_TRACKING_URI={client.tracking_uri} mlflow experiments restore -x {exp.experiment_id})")
    return exp


def _search_all(client: Any, experiment_id: str) -> list[Any]:
    runs, token = [], None
    while True:
        page = client.search_runs([experiment_id], max_results=50000, page_token=token)
        runs.extend(page)
        token = page.token
        if not token:
            return runs


def _store_of(client: Any) -> Any:
    """The tracking store behind the client, when it offers the SQL bulk-history query."""
    store = getattr(getattr(client, "_tracking_client", None), "store", None)
    return store if hasattr(store, "get_metric_history_bulk") else None


def _histories(client: Any, run_ids: Sequence[str], key: str) -> dict[str, list[tuple[int, int, float]]]:
    """run id → [(step, timestamp, value)] of metric ``key``, in bulk where the store allows."""
    out: dict[str, list[tuple[int, int, float]]] = {}
    store = _store_of(client)
    if store is not None:
        for i in range(0, len(run_ids), _BULK_CHUNK):
            chunk = list(run_ids[i:i + _BULK_CHUNK])
            for m in store.get_metric_history_bulk(chunk, key, max_results=2**31 - 1):
                out.setdefault(m.run_id, []).append((m.step, m.timestamp, m.value))
        return out

    def one(run_id: str) -> tuple[str, list[tuple[int, int, float]]]:
        return run_id, [(m.step, m.timestamp, m.value) for m in client.get_metric_history(run_id, key)]

    with ThreadPoolExecutor(max_workers=16) as pool:
        for run_id, points in pool.map(one, run_ids):
            if points:
                out[run_id] = points
    return out


def _curve(points: list[tuple[int, int, float]]) -> tuple[np.ndarray, np.ndarray]:
    """Steps and values ordered by step; a step logged twice keeps its latest value.

    A metric whose points all share one step was logged without ``step=`` (MLflow stores 0): each
    point is then an epoch, in the order they were logged.
    """
    if len(points) > 1 and len({step for step, _, _ in points}) == 1:
        ordered = sorted(points, key=lambda p: p[1])  # by timestamp; a stable sort keeps ties as stored
        steps = np.arange(len(ordered), dtype=np.int64)
        values = np.array([value for _, _, value in ordered], dtype=float)
    else:
        by_step: dict[int, tuple[int, float]] = {}
        for step, ts, value in points:
            if step not in by_step or ts >= by_step[step][0]:
                by_step[step] = (ts, value)
        steps = np.array(sorted(by_step), dtype=np.int64)
        values = np.array([by_step[s][1] for s in steps.tolist()], dtype=float)
    values[values >= _INF_STORED] = math.inf
    values[values <= -_INF_STORED] = -math.inf
    return steps, values


def _nonfinite_marks(tag: str | None) -> list[tuple[str, int]]:
    """Parse the sweep's ``sweep.nonfinite`` tag: ``train_loss@3`` or ``train_loss@3,val_loss@3``."""
    marks = []
    for part in (tag or "").replace(";", ",").split(","):
        name, _, epoch = part.strip().partition("@")
        if name and epoch.strip().lstrip("-").isdigit():
            marks.append((name, int(epoch)))
    return marks


def build_curves(
    histories: dict[str, list[tuple[int, int, float]]], names: MetricNames, nonfinite_tag: str | None = None
) -> dict[str, np.ndarray]:
    """Canonical curves of one run from its raw histories (MLflow metric name → points).

    The sweep omits non-finite points from the series (MLflow's UI breaks on NaN) and names them in
    the ``sweep.nonfinite`` tag; they are put back here as NaN at their epoch, so a run whose loss
    blew up reads the same as one whose store holds the NaN itself.
    """
    canonical = names.mapping()
    steps_of: dict[str, np.ndarray] = {}
    curves: dict[str, np.ndarray] = {}
    for metric, points in histories.items():
        key = canonical.get(metric)
        if key is not None and points:
            steps_of[key], curves[key] = _curve(points)
    for metric, epoch in _nonfinite_marks(nonfinite_tag):
        key = canonical.get(metric, metric if metric in CANONICAL else None)
        if key is None:  # val_auc@3 and the like: not a curve triage reads
            continue
        steps = steps_of.get(key, np.array([], dtype=np.int64))
        if epoch in set(steps.tolist()):
            continue
        pos = int(np.searchsorted(steps, epoch))
        curves[key] = np.insert(curves.get(key, np.array([])), pos, math.nan)
        steps_of[key] = np.insert(steps, pos, epoch)
    _per_evaluation(steps_of, curves)
    return curves


def _per_evaluation(steps_of: dict[str, np.ndarray], curves: dict[str, np.ndarray]) -> None:
    """Read training curves logged per batch (Lightning's default in ``training_step``, the Hugging Face
    Trainer's ``logging_steps``) as the validation curve's epochs: the mean of the points up to each evaluation
    (the max for ``grad_norm_max``), a NaN/inf point making its epoch's value NaN/inf. Read step by step, the
    batches' noise looked like an oscillating loss. Only where both share one step axis: every evaluation
    interval holds points, and no more follow the last evaluation than one interval holds (a partial epoch)."""
    ref = next((steps_of[k] for k in ("val_loss", "val_acc") if len(steps_of.get(k, ())) >= 2), None)
    if ref is None:
        return
    for key in ("train_loss", "train_acc", "grad_norm", "grad_norm_max", "clip_fraction", "lr"):
        steps = steps_of.get(key)
        if steps is None or len(steps) < 2 * len(ref):
            continue
        epoch = np.searchsorted(ref, steps, side="left")  # the first evaluation at or after each point
        sizes = np.bincount(epoch, minlength=len(ref) + 1)
        if (sizes[1:len(ref)] == 0).any() or sizes[len(ref)] > sizes[: len(ref)].max():
            continue  # other step units (val at step = epoch, train at step = batch): left as logged
        reduce = np.max if key == "grad_norm_max" else np.mean
        values = curves[key]
        curves[key] = np.array([reduce(values[epoch == i]) for i in range(len(ref) + 1) if sizes[i]])


def read_runs(client: Any, experiment_id: str, names: MetricNames, parent_run_id: str | None = None) -> list[RunRecord]:
    """Every run of the experiment (or the children of ``parent_run_id``), with curves, read in bulk."""
    runs = _search_all(client, experiment_id)
    held = Counter(r.data.tags.get("mlflow.parentRunId") for r in runs)
    if parent_run_id is not None:
        runs = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == parent_run_id or r.info.run_id == parent_run_id]
    records = [
        RunRecord(r.info.run_id, r.info.run_name or "", r.info.status, dict(r.data.params), dict(r.data.tags),
                  r.info.start_time or 0, experiment_id=r.info.experiment_id, held=held[r.info.run_id])
        for r in runs
    ]
    ids = [r.run_id for r in records if not r.is_sweep_parent]
    per_run: dict[str, dict[str, list[tuple[int, int, float]]]] = {}
    for metric in names.mapping():
        for run_id, points in _histories(client, ids, metric).items():
            per_run.setdefault(run_id, {})[metric] = points
    for r in records:
        if not r.is_sweep_parent:
            r.curves = build_curves(per_run.get(r.run_id, {}), names, r.tags.get("sweep.nonfinite"))
    logged = {k for rec, r in zip(records, runs) if not rec.is_parent for k in r.data.metrics}
    _check_loss_names([r for r in records if not r.is_parent], logged, names)
    records.sort(key=lambda r: (r.trial if r.trial is not None else 1 << 30, r.start_time))
    return records


def read_with_siblings(client: Any, run_id: str, names: MetricNames) -> tuple[RunRecord, list[RunRecord]]:
    """One run and the runs ``summarize`` judges it with (its sweep's trials, else its experiment's runs), so
    that ``triage explain`` gives the verdict the tags hold (a 1-2 epoch run is compared with the others)."""
    run = read_run(client, run_id, names)
    runs = read_runs(client, run.experiment_id, names, run.tags.get("mlflow.parentRunId"))
    if (holder := next((r for r in runs if r.run_id == run.run_id and r.is_parent), None)) is not None:
        experiment = client.get_experiment(run.experiment_id).name
        raise TriageError(f"run {run.label_name} ({run.run_id[:8]}) holds {holder.held} runs and logs no loss of its own: "
                          f"explain one of them, or python -m triage summarize --experiment {experiment!r}")
    return run, [r for r in runs if not r.is_parent]


def read_run(client: Any, run_id: str, names: MetricNames) -> RunRecord:
    """One run with its curves (for ``triage explain``)."""
    from mlflow.exceptions import MlflowException

    try:
        r = client.get_run(_full_run_id(client, run_id))
    except MlflowException as e:
        raise TriageError(f"no run {run_id} at {client.tracking_uri}: {str(e).splitlines()[0]}") from None
    run_id = r.info.run_id
    rec = RunRecord(r.info.run_id, r.info.run_name or "", r.info.status, dict(r.data.params), dict(r.data.tags),
                    r.info.start_time or 0, experiment_id=r.info.experiment_id)
    hist = {m: [(p.step, p.timestamp, p.value) for p in client.get_metric_history(run_id, m)] for m in names.mapping()}
    rec.curves = build_curves(hist, names, rec.tags.get("sweep.nonfinite"))
    _check_loss_names([rec], set(r.data.metrics), names)
    return rec


def _full_run_id(client: Any, ref: str) -> str:
    """``ref`` itself, or the one run id it begins (the reports show 8 characters, as git shows commits)."""
    from mlflow.exceptions import MlflowException

    if not re.fullmatch(r"[0-9a-f]{4,31}", ref):
        return ref
    try:
        ids = [e.experiment_id for e in client.search_experiments()]
        found = [r.info.run_id for r in client.search_runs(ids, f"attributes.run_id LIKE '{ref}%'", max_results=2)]
    except MlflowException:  # a store that cannot search by id prefix: the full id is needed
        return ref
    if len(found) > 1:
        raise TriageError(f"{ref} begins more than one run id at {client.tracking_uri}: give more of it")
    return found[0] if found else ref


def _check_loss_names(records: list[RunRecord], logged: set[str], names: MetricNames) -> None:
    """Runs that log metrics but no loss under the given names were logged by other code (or a name is
    mistyped): judging them would call every run crashed, so stop and say which names they log."""
    if logged and not any(key in r.curves for r in records for key in ("train_loss", "val_loss")):
        raise TriageError(f"no run logs a loss named {names.train_loss!r} or {names.val_loss!r}; the runs log "
                          f"{', '.join(sorted(logged)[:30])}: name the losses with --train-loss and --val-loss")


def write_tags(client: Any, tags_by_run: dict[str, dict[str, str]]) -> None:
    """Set tags on many runs (runs found by ``read_runs``, so active ones).

    On a SQL store all tags are written in one transaction (measured: ~40× faster than one
    ``log_batch`` per run, whose several commits per call cost ~10 ms each on SQLite); elsewhere,
    or if that fails, one ``MlflowClient.log_batch`` per run.
    """
    from mlflow.entities import RunTag

    clean = {rid: {k: str(v)[:5000] for k, v in tags.items()} for rid, tags in tags_by_run.items()}
    if _bulk_sql_tags(_store_of(client), clean):
        return
    for run_id, tags in clean.items():
        client.log_batch(run_id, tags=[RunTag(k, v) for k, v in tags.items()])


def _bulk_sql_tags(store: Any, tags_by_run: dict[str, dict[str, str]]) -> bool:
    """Replace the given tags of many runs in one transaction of a SQLAlchemy tracking store."""
    if store is None or not tags_by_run:
        return store is not None
    try:
        from mlflow.store.tracking.dbmodels.models import SqlTag
    except ImportError:
        return False
    keys = sorted({k for tags in tags_by_run.values() for k in tags})
    ids = list(tags_by_run)
    try:
        with store.ManagedSessionMaker() as session:
            for i in range(0, len(ids), _BULK_CHUNK):
                chunk = ids[i:i + _BULK_CHUNK]
                session.query(SqlTag).filter(SqlTag.run_uuid.in_(chunk), SqlTag.key.in_(keys)).delete(
                    synchronize_session=False)
            session.add_all([SqlTag(run_uuid=rid, key=k, value=v) for rid, tags in tags_by_run.items()
                             for k, v in tags.items()])
    except Exception:  # noqa: BLE001 - an unexpected schema: fall back to the public API
        return False
    return True


def log_artifacts(client: Any, run_id: str, paths: Iterable[Path], artifact_path: str = "triage") -> None:
    """Attach report files to a run (the sweep's parent run)."""
    for p in paths:
        client.log_artifact(run_id, str(p), artifact_path=artifact_path)

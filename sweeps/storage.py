"""Optuna storages from a URL, stale-trial clean-up, and masking of passwords in URLs.

    sqlite:///abs/path/optuna.db        one machine (RDB storage with heartbeat)
    journal:///abs/path/optuna.journal  several processes on one machine (JournalStorage, file locks)
    postgresql://user:pass@host/db      many machines (RDB storage with heartbeat)
    mysql+pymysql://user:pass@host/db   many machines, on MySQL or MariaDB (pip install '.[mysql]')

``StudyLock`` is one lock per study shared by every process using the storage (a PostgreSQL advisory
lock or a MySQL named lock across machines, a file lock next to a SQLite or journal file): the budget check and the start of
a trial happen under it, so that all of them together start exactly ``sweep.n_trials`` trials.
"""

from __future__ import annotations

import hashlib
import os
import re
import socket
import time
import warnings
from pathlib import Path
from typing import Any

import optuna
from filelock import FileLock
from optuna.storages import BaseStorage, JournalStorage, RDBStorage
from optuna.storages.journal import JournalFileBackend, JournalFileOpenLock
from optuna.trial import FrozenTrial, TrialState
from sqlalchemy import Engine, create_engine, event, text
from sqlalchemy.exc import DBAPIError, IntegrityError
from sqlalchemy.pool import NullPool

from training.config import ConfigError, make_dir
from triage.names import mask

WORKER_ATTR = "worker"  # user attribute "host:pid" of the process running a trial
SCHEMA_RACE_TRIES = 5


def open_storage(url: str, heartbeat_interval: int | None = None, grace_period: int | None = None) -> BaseStorage:
    """Open (and create) the storage at `url`; StorageError in one line when it cannot be reached."""
    if not url:
        raise ConfigError("storage=postgres or mysql needs its database: export SWEEPS_STORAGE_URL="
                          "postgresql://user@host/db or mysql+pymysql://user@host/db (the same on every machine), "
                          "or pass storage.url=...")
    try:
        if url.startswith("journal://"):
            path = journal_file(url)
            make_dir(path.parent, "SWEEPS_HOME or sweep.storage")
            return JournalStorage(JournalFileBackend(str(path), lock_obj=JournalFileOpenLock(str(path))))
        if url.startswith("sqlite:///"):
            make_dir(sqlite_file(url).parent, "SWEEPS_HOME or sweep.storage")
        elif not url.startswith(("postgresql", "mysql")):
            raise ConfigError(
                f"sweep.storage={mask(url)!r}: use sqlite:///<path>, journal:///<path>, postgresql://user@host/db "
                "or mysql+pymysql://user@host/db"
            )
        storage = _rdb_storage(url, heartbeat_interval, grace_period)
        if url.startswith("sqlite"):
            _write_ahead_log(storage.engine)
        return storage
    except ConfigError:
        raise
    except Exception as e:  # sqlalchemy / driver errors carry multi-line text
        reason = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise ConfigError(f"cannot open Optuna storage {mask(url)}: {mask(reason)}; check sweep.storage") from None


class StudyLock:
    """A lock on one study (or any other name), held by one process of any on any machine; `release` is
    idempotent, and a process that dies lets go of it (the database ends its session; the OS drops its file lock)."""

    # MySQL's GET_LOCK waits at most its timeout (1: got it, 0: timed out); MariaDB answers NULL at once to the
    # "wait forever" of a negative timeout, which let every process in: so wait in steps, until it says 1
    _SQL = {"postgresql": ("SELECT pg_advisory_lock(:key)", "SELECT pg_advisory_unlock(:key)"),
            "mysql": ("SELECT GET_LOCK(:name, 10)", "SELECT RELEASE_LOCK(:name)")}  # fmt: skip

    def __init__(self, url: str, study_name: str) -> None:
        self._url, self._conn, self.held = url, None, False
        self._file: FileLock | None = None
        self._mysql = url.startswith("mysql")
        if url.startswith(("sqlite:///", "journal://")):
            path = sqlite_file(url) if url.startswith("sqlite") else journal_file(url)
            safe = re.sub(r"[^\w.-]", "_", study_name)
            self._file = FileLock(path.with_name(f"{path.name}.{safe}.lock"))
            return
        digest = hashlib.sha1(study_name.encode()).digest()
        self._lock, self._unlock = self._SQL["mysql" if self._mysql else "postgresql"]
        self._params = {"name": f"optuna-study-{digest.hex()[:40]}"} if self._mysql else {
            "key": int.from_bytes(digest[:8], "big", signed=True)}

    def _sql(self, statement: str) -> Any:
        if self._conn is None:  # its own session: the lock belongs to it, not to a pooled one
            self._conn = create_engine(self._url, poolclass=NullPool, isolation_level="AUTOCOMMIT").connect()
        return self._conn.execute(text(statement), self._params).scalar()

    def acquire(self) -> None:
        if self._file is not None:
            self._file.acquire()
        elif self._mysql:
            while (got := self._sql(self._lock)) != 1:  # 0: another process holds it; NULL: an error
                if got is None:
                    raise RuntimeError(f"the study lock {self._params['name']} failed on {mask(self._url)}")
        else:
            self._sql(self._lock)  # blocks until held
        self.held = True

    def release(self) -> None:
        if not self.held:
            return
        self.held = False
        if self._file is not None:
            self._file.release()
        else:
            self._sql(self._unlock)

    def __enter__(self) -> "StudyLock":
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


def sqlite_file(url: str) -> Path:
    """The database file of a sqlite:///<path> URL."""
    return Path(url.removeprefix("sqlite:///")).expanduser()


def journal_file(url: str) -> Path:
    """The log file of a journal:///<path> URL (the default's journal:////abs/path too: one leading slash)."""
    path = url.removeprefix("journal://")
    return Path("/" + path.lstrip("/") if path.startswith("/") else path).expanduser()


def _rdb_storage(url: str, heartbeat_interval: int | None, grace_period: int | None) -> RDBStorage:
    """Optuna's RDBStorage, tried again while another process is creating the same new schema.

    Workers started at once on a new database race to create its tables and version row; the
    losers fail with "table ... already exists" or a unique-constraint error, then find them made.
    """

    def make() -> RDBStorage:
        with warnings.catch_warnings():  # heartbeats are "experimental" since Optuna 2.9; we rely on them
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            return RDBStorage(url, heartbeat_interval=heartbeat_interval, grace_period=grace_period,
                              engine_kwargs=_engine_kwargs(url))  # fmt: skip

    for attempt in range(1, SCHEMA_RACE_TRIES):
        try:
            return make()
        except DBAPIError as e:
            if not (isinstance(e, IntegrityError) or "already exists" in str(e)):
                raise
            time.sleep(0.2 * attempt)
    return make()


def _engine_kwargs(url: str) -> dict[str, Any]:
    if url.startswith(("postgresql", "mysql")):  # a server that does not answer fails in seconds; a dropped idle
        return {"connect_args": {"connect_timeout": 10}, "pool_pre_ping": True}  # connection is replaced
    if url.startswith("sqlite"):
        return {"connect_args": {"timeout": 60}}  # wait for a writer rather than fail with "database is locked"
    return {}


def _write_ahead_log(engine: Engine) -> None:
    """SQLite in WAL mode with synchronous=NORMAL on every connection of `engine`.

    A commit then no longer waits for the disk (a 10-epoch trial's storage calls took 123-173 ms
    instead of 243 ms on the main thread, measured here), and readers (other workers,
    optuna-dashboard) never block the writer. A killed process loses nothing it committed; only a
    power cut can undo the last commits.
    """

    @event.listens_for(engine, "connect")
    def _pragmas(connection: Any, _record: Any) -> None:
        cursor = connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.close()

    engine.dispose()  # drops the connection RDBStorage made its tables with: the next one gets the pragmas


def worker_id(pid: int | None = None) -> str:
    """The WORKER_ATTR value of process `pid` on this host (default: this process)."""
    return f"{socket.gethostname()}:{os.getpid() if pid is None else pid}"


def fail_stale_trials(study: optuna.Study) -> None:
    """Optuna's heartbeat check: FAIL the trials silent for longer than the grace period (none without heartbeat)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        optuna.storages.fail_stale_trials(study)  # returns at once when the storage keeps no heartbeat


def fail_dead_trials(study: optuna.Study) -> list[FrozenTrial]:
    """Mark FAIL the RUNNING trials whose process (on this host) is gone; returns them.

    Heartbeats (RDB storages) catch dead processes on any host after `grace_period`; this catches
    those of this host at once, so re-running right after a kill resumes cleanly.
    """
    fail_stale_trials(study)
    host = socket.gethostname()
    failed = []
    for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        worker = str(t.user_attrs.get(WORKER_ATTR, ""))
        whost, _, pid = worker.rpartition(":")
        if whost == host and pid.isdigit() and not _alive(int(pid)):
            if study._storage.set_trial_state_values(t._trial_id, TrialState.FAIL):
                failed.append(t)
    return failed


def fail_orphans(study: optuna.Study) -> list[FrozenTrial]:
    """Call under the study's lock: mark FAIL the RUNNING trials that name no process, and return them. A
    process names its new trial before it lets go of the lock (`budget.optimize_one`), so such a trial lost
    its process or its database between its creation and that write; no heartbeat would ever fail it."""
    failed = []
    for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        if WORKER_ATTR not in t.user_attrs and study._storage.set_trial_state_values(t._trial_id, TrialState.FAIL):
            failed.append(t)
    return failed


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True

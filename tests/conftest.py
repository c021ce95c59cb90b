"""Shared fixtures: the real CIFAR-10 copy (CIFAR10_ROOT), a private SWEEPS_HOME, small real datasets."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

# A shell's background job (`pytest &`, nohup) starts with SIGINT ignored, and the processes it starts inherit
# that: the Ctrl-C tests' sweeps ran to the end, exit 0. Start them with SIGINT as a terminal's command has it.
if signal.getsignal(signal.SIGINT) == signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)


@pytest.fixture(scope="session")
def cifar_root() -> Path:
    root = os.environ.get("CIFAR10_ROOT")
    if not root or not Path(root).is_dir():
        pytest.skip("CIFAR10_ROOT is not set to a CIFAR-10 copy (class folders or torchvision's)")
    return Path(root)


@pytest.fixture(scope="session")
def cache_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One decoded cache for the whole session (SWEEPS_TEST_CACHE keeps it between sessions)."""
    keep = os.environ.get("SWEEPS_TEST_CACHE")
    return Path(keep) if keep else tmp_path_factory.mktemp("cache")


@pytest.fixture(autouse=True)
def sweeps_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, cache_dir: Path) -> Path:
    """Every test gets its own SWEEPS_HOME (studies, MLflow store), sharing the data cache."""
    home = tmp_path / "home"
    monkeypatch.setenv("SWEEPS_HOME", str(home))
    monkeypatch.setenv("SWEEPS_CACHE_DIR", str(cache_dir))
    return home


def run_cli(module: str, *args: str, cwd: Path, env: dict[str, str] | None = None, timeout: float = 600):
    """Run `python -m module args` in `cwd` with this interpreter; returns the CompletedProcess."""
    return subprocess.run(
        [sys.executable, "-m", module, *args],
        cwd=cwd,
        env={**os.environ, **(env or {})},
        capture_output=True,
        text=True,
        timeout=timeout,
    )


@pytest.fixture
def postgres_url() -> str:
    """PostgreSQL for the multi-worker tests: SWEEPS_TEST_POSTGRES_URL (.ci/run always sets it)."""
    return _server("SWEEPS_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test", "PostgreSQL")


@pytest.fixture
def mysql_url() -> str:
    """MySQL or MariaDB for the study lock and schema tests: SWEEPS_TEST_MYSQL_URL (.ci/run always sets it)."""
    return _server("SWEEPS_TEST_MYSQL_URL", "mysql+pymysql://root@127.0.0.1:3306/test", "MySQL")


def _server(env: str, example: str, what: str) -> str:
    """The database server URL in `env`; without it, the test is skipped with how to run it."""
    url = os.environ.get(env)
    if not url:
        pytest.skip(f"set {env}={example} to run the {what} tests")
    return url

"""`python -m training fit|gradcheck` end to end, and every bad input as one line and a non-zero exit."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from tests.conftest import run_cli
from training import RECORD_KEYS

SMALL = ["train.epochs=1", "data.train_size=500", "data.val_size=200"]


def test_fit_writes_metrics_jsonl_in_the_run_dir(tmp_path: Path, cifar_root: Path) -> None:
    p = run_cli("training", "fit", *SMALL, f"hydra.run.dir={tmp_path / 'run'}", cwd=tmp_path)
    assert p.returncode == 0, p.stderr
    lines = (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()
    assert len(lines) == 1 and list(json.loads(lines[0])) == list(RECORD_KEYS)
    assert (tmp_path / "run" / ".hydra" / "config.yaml").exists()
    # one line per epoch, also in a log (rich wrapped it at 80 columns when not on a terminal)
    assert any(line.startswith("epoch   1") and line.endswith("img/s") for line in p.stderr.splitlines()), p.stderr


@pytest.mark.parametrize("module, first", [("training", "usage: python -m training"), ("sweeps", "usage: python -m sweeps run")])
def test_help(tmp_path: Path, module: str, first: str) -> None:
    p = run_cli(module, "fit" if module == "training" else "run", "--help", cwd=tmp_path)
    assert p.returncode == 0 and p.stdout.startswith(first) and "train.epochs=5" in p.stdout, p.stderr
    assert not (tmp_path / "outputs").exists()


@pytest.mark.parametrize(
    "args, message",
    [
        (["sweeps", "+sweep=lr", "train.epochs=2"], "error: no command before +sweep=lr: python -m sweeps run +sweep=lr train.epochs=2"),
        (["training", "optimizer=adam"], "error: no command before optimizer=adam: python -m training fit optimizer=adam"),
        (["sweeps", "rnu", "+sweep=lr"], "error: unknown command 'rnu': python -m sweeps takes run (see --help)"),
        (["training", "train"], "error: unknown command 'train': python -m training takes fit, gradcheck (see --help)"),
    ],
)
def test_a_missing_or_unknown_command_is_one_line_that_gives_the_command(tmp_path: Path, args: list[str], message: str) -> None:
    p = run_cli(*args, cwd=tmp_path)
    assert p.returncode == 2 and p.stderr.strip() == message, p.stderr
    assert not (tmp_path / "outputs").exists()


@pytest.mark.parametrize("module, command", [("training", "fit"), ("sweeps", "run")])
def test_cfg_job_prints_the_composed_config_and_runs_nothing(tmp_path: Path, module: str, command: str) -> None:
    sweep = ["+sweep=lr"] if module == "sweeps" else []
    secret = "postgresql://me:hunter2@db/optuna"
    p = run_cli(module, command, *sweep, "optimizer=adam", "train.epochs=7", "storage=postgres", "--cfg", "job", cwd=tmp_path,
                env={"SWEEPS_HOME": str(tmp_path / "home"), "SWEEPS_STORAGE_URL": secret})  # fmt: skip
    assert p.returncode == 0, p.stderr
    assert "  name: adam\n" in p.stdout and "  epochs: 7\n" in p.stdout and "hydra:" not in p.stdout
    assert ("  n_trials: " in p.stdout) == (module == "sweeps") and "hunter2" not in p.stdout
    assert "postgresql://me:***@db/optuna" in p.stdout
    assert not (tmp_path / "outputs").exists() and not (tmp_path / "home").exists()  # no run dir, no store
    bad = run_cli(module, command, *sweep, "--cfg", "all", cwd=tmp_path)
    assert bad.returncode == 2 and bad.stderr.strip() == "error: --cfg all: use --cfg job to print the composed config (Hydra's hydra and all are not offered)"


@pytest.mark.parametrize("sig, what", [(signal.SIGINT, "interrupted (Ctrl-C)"), (signal.SIGTERM, "terminated (SIGTERM)")],
                         ids=["ctrl-c", "sigterm"])
def test_ctrl_c_keeps_the_epochs_so_far_and_says_where(tmp_path: Path, cifar_root: Path, sig: int, what: str) -> None:
    """SIGTERM (`kill`, a scheduler's time limit) stops as Ctrl-C does: it had ended the process without a word."""
    run_dir = tmp_path / "run"
    args = [sys.executable, "-m", "training", "fit", "train.epochs=50", "data.train_size=500", "data.val_size=200",
            f"hydra.run.dir={run_dir}"]  # fmt: skip
    p = subprocess.Popen(args, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    metrics, deadline = run_dir / "metrics.jsonl", time.time() + 300
    while not (metrics.exists() and metrics.read_text().count("\n") >= 1):
        assert p.poll() is None and time.time() < deadline, p.communicate()
        time.sleep(0.2)
    p.send_signal(sig)
    _, err = p.communicate(timeout=120)
    assert p.returncode == 128 + sig and "Traceback" not in err, err  # 130 or 143
    kept = len(metrics.read_text().splitlines())
    assert f"{what} after {kept} of 50 epochs; they are in {metrics}" in err, err


def test_gradcheck_command_passes(tmp_path: Path) -> None:
    p = run_cli("training", "gradcheck", cwd=tmp_path)
    assert p.returncode == 0, p.stderr
    assert "gradcheck passed" in p.stdout and "features.0.0.weight" in p.stdout


@pytest.mark.parametrize(
    "override, message",
    [
        ("scheduler=linear", "choose one of: cosine, exponential, none, piecewise, step"),
        ("scheduler.name=linear", "scheduler.name='linear' is unknown"),
        ("optimizer=rmsprop", "choose one of: adam, adamw, sgd"),
        ("model.name=resnet", "model.name='resnet' is unknown"),
        ("optimizer.lr=0", "optimizer.lr=0"),
        ("optimizer.lr=-0.1", "optimizer.lr=-0.1"),
        ("train.l1=-1", "train.l1"),
        ("train.clip_theta=-2", "train.clip_theta"),
        ("train.bogus=1", "train.bogus is not a config key; train has: epochs"),
        ("train.epoch=3", "train.epoch is not a config key; did you mean train.epochs? train has: epochs, batch_size"),
        ("+trian.epochs=3", "trian is not a config key; did you mean train? the config has: data"),
        ("optimizer.lr.max=1", "optimizer.lr.max is not a config key: optimizer.lr is a value (0.01), not a group"),
        ("data.val_size=60000", "data.val_size=60000"),
        ("data.root=/nonexistent/cifar", "no CIFAR-10 at /nonexistent/cifar"),
        ("hydra.run.dir=/dev/null/run", "cannot create /dev/null/run (hydra.run.dir): /dev/null is no folder"),
        ("data.cache_dir=/dev/null/cache", "cannot write the decoded images to /dev/null/cache (Not a directory)"),
        ("-m", "multirun is not supported"),
        ("train.device=gpu", "train.device='gpu' is not a device"),
        ("train.device=cuda:99" if torch.cuda.is_available() else "train.device=cuda", "train.device=cuda"),
        ("--epochs=3", "--epochs=3: not an option"),
        ("optimizer=adam,sgd", "Ambiguous value for argument 'optimizer=adam,sgd': a list is key=[a,b]"),
    ],
)
def test_bad_input_is_one_line_and_writes_nothing(tmp_path: Path, cifar_root: Path, override: str, message: str) -> None:
    p = run_cli("training", "fit", *SMALL, "data.download=false", override, cwd=tmp_path)
    assert p.returncode == 2
    lines = [ln for ln in p.stderr.strip().splitlines() if not ln.startswith("decoding ")]  # a cold cache's progress
    assert len(lines) == 1 and message in lines[0], p.stderr
    assert not (tmp_path / "outputs").exists()

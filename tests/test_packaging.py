"""Configs from outside the checkout: an installed wheel (`pip install .`, `pip install git+...`) carries conf/,
and a sweep of the user's own is found through `hydra.searchpath`."""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from tests.conftest import ROOT, run_cli
from training.compose import compose
from training.config import ConfigError


@pytest.fixture(scope="module")
def wheel_site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The project's wheel, built from a copy of the sources and unpacked into a folder of its own."""
    tmp = tmp_path_factory.mktemp("wheel")
    src = tmp / "src"
    src.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, src / name)
    for name in ("conf", "training", "sweeps", "triage"):
        shutil.copytree(ROOT / name, src / name, ignore=shutil.ignore_patterns("__pycache__"))
    isolation = [] if importlib.util.find_spec("setuptools") is None else ["--no-build-isolation"]
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", *isolation, "-w", str(tmp / "dist"), str(src)],
                   check=True, capture_output=True, text=True)
    (wheel,) = (tmp / "dist").glob("*.whl")
    site = tmp / "site"
    with zipfile.ZipFile(wheel) as z:
        z.extractall(site)
    return site


def test_the_wheel_carries_every_config_file(wheel_site: Path) -> None:
    packaged = {p.relative_to(wheel_site / "sweeps_triage_conf") for p in (wheel_site / "sweeps_triage_conf").rglob("*.yaml")}
    assert packaged == {p.relative_to(ROOT / "conf") for p in (ROOT / "conf").rglob("*.yaml")}


def test_an_installed_wheel_composes_trains_and_triages_outside_the_checkout(
    wheel_site: Path, tmp_path: Path, cifar_root: Path
) -> None:
    env = {"PYTHONPATH": str(wheel_site), "CIFAR10_ROOT": str(cifar_root)}
    probe = subprocess.run([sys.executable, "-c", "import training, triage.thresholds as t; print(training.__file__); "
                            "print(t.DEFAULT_PATH); print(t.load_thresholds().explode_ratio)"],
                           cwd=tmp_path, env={**os.environ, **env}, capture_output=True, text=True)
    assert probe.returncode == 0, probe.stderr
    module, thresholds, explode = probe.stdout.split()
    assert Path(module).is_relative_to(wheel_site) and Path(thresholds).is_relative_to(wheel_site / "sweeps_triage_conf")
    assert float(explode) > 1

    job = run_cli("sweeps", "run", "+sweep=full", "--cfg", "job", cwd=tmp_path, env=env)
    assert job.returncode == 0, job.stderr
    sweep = OmegaConf.create(job.stdout).sweep  # the full sweep's file and search space, read from the wheel
    assert sweep.study_name == "full" and {"optimizer", "scheduler", "train"} <= set(sweep.space)

    fit = run_cli("training", "fit", "train.epochs=1", "data.train_size=256", "data.val_size=128", cwd=tmp_path, env=env)
    assert fit.returncode == 0, fit.stderr
    assert list(tmp_path.glob("outputs/*/*/metrics.jsonl"))


def test_a_sweep_of_your_own_is_found_through_hydra_searchpath(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "myconf" / "sweep").mkdir(parents=True)
    (tmp_path / "myconf" / "sweep" / "mine.yaml").write_text(
        "defaults: [_common, _self_]\nstudy_name: mine\nspace:\n  optimizer:\n    lr: {type: float, low: 0.01, high: 0.1, log: true}\n")
    monkeypatch.chdir(tmp_path)
    search = "hydra.searchpath=[file://myconf]"  # a path from the current folder, as Hydra reads it
    cfg = compose([search, "+sweep=mine"])
    assert cfg.sweep.study_name == "mine" and cfg.sweep.n_trials == 30  # its own space on the packaged _common
    assert cfg.sweep.space.optimizer.lr.high == 0.1

    with pytest.raises(ConfigError, match="did you mean sweep.n_trials"):
        compose([search, "+sweep=mine", "sweep.n_trialz=3"])
    with pytest.raises(ConfigError, match=r"^hydra.searchpath: nowhere is not a folder; name the folder"):
        compose(["hydra.searchpath=[file://nowhere]", "+sweep=mine"])


def test_a_sweep_file_of_your_own_that_misses_a_part_is_named(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    sweeps = tmp_path / "sweep"
    sweeps.mkdir()
    space = "space:\n  optimizer:\n    lr: {type: float, low: 0.01, high: 0.1}\n"
    (sweeps / "alone.yaml").write_text("study_name: alone\n" + space)  # without the shared settings
    (sweeps / "nameless.yaml").write_text("defaults: [_common, _self_]\n" + space)
    search = f"hydra.searchpath=[file://{tmp_path}]"
    for extra in ([], ["sweep.n_trials=3"]):  # the override would otherwise read as no config key
        with pytest.raises(ConfigError, match=r"^sweep/alone.yaml lacks the settings every sweep shares \(n_trials, "
                           r"storage, .*\): start it with defaults: \[_common, _self_\]"):
            compose([search, "+sweep=alone", *extra])
    with pytest.raises(ConfigError, match=r"^sweep.study_name has no value: set it .* \(sweep.study_name=...\)$"):
        compose([search, "+sweep=nameless"])
    assert compose([search, "+sweep=nameless", "sweep.study_name=named"]).sweep.study_name == "named"

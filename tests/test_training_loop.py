"""The training loop on real CIFAR-10 images: learning, reproducibility, non-finite loss, precision options."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from training import RECORD_KEYS, NonFiniteLoss, TrialConfig, fit, load_data, train_epochs
from training.config import DataConfig, OptimizerConfig, TrainConfig


@pytest.fixture(scope="module")
def small(cifar_root: Path, cache_dir: Path):
    """2,000 real training images and a 500-image stratified validation split."""
    data_cfg = DataConfig(root=str(cifar_root), cache_dir=str(cache_dir), train_size=2000, val_size=500)
    return data_cfg, load_data(data_cfg)


def trial(data_cfg: DataConfig, **train) -> TrialConfig:
    opt = train.pop("optimizer", OptimizerConfig("sgd", lr=0.05))
    return TrialConfig(data=data_cfg, optimizer=opt, train=TrainConfig(**{"epochs": 2, **train}))


def test_two_epochs_on_2000_images_beat_chance(small) -> None:
    data_cfg, data = small
    result = fit(trial(data_cfg), data)
    assert result.status == "completed" and len(result.records) == 2
    first, last = result.records
    assert list(last) == list(RECORD_KEYS) and [r["epoch"] for r in result.records] == [1, 2]
    assert last["train_loss"] < first["train_loss"] < math.log(10) + 0.05
    assert last["val_acc"] > 0.25  # chance is 0.10
    assert last["val_auc"] > 0.7 and 0 < last["val_f1"] <= 1
    assert last["images_per_second"] > 0 and last["epoch_seconds"] > 0
    assert last["lr"] == 0.05 and last["grad_norm"] > 0 and last["penalty"] == 0


def test_same_seed_same_curves(small) -> None:
    data_cfg, data = small
    timing = ("epoch_seconds", "images_per_second")

    def curves(seed: int) -> list[dict]:
        cfg = trial(data_cfg, epochs=1, seed=seed, l2=1e-4, clip_theta=1.0)
        cfg.data.augment = True
        return [{k: v for k, v in r.items() if k not in timing} for r in fit(cfg, data).records]

    a, b = curves(1), curves(1)
    assert a == b
    assert curves(2) != a


def test_huge_lr_ends_nonfinite_with_partial_curves(small) -> None:
    data_cfg, data = small
    cfg = trial(data_cfg, epochs=5)
    cfg.optimizer.lr = 1e3
    records = []
    with pytest.raises(NonFiniteLoss) as e:
        for r in train_epochs(cfg, data):
            records.append(r)
    assert records and records[-1]["epoch"] == e.value.epoch < 5
    assert not math.isfinite(records[-1]["train_loss"])
    result = fit(cfg, data)
    assert result.status == "nonfinite" and len(result.records) == len(records)
    assert "loss became" in result.message


def test_penalty_and_clipping_are_recorded(small) -> None:
    data_cfg, data = small
    r = fit(trial(data_cfg, epochs=1, l1=1e-4, l2=1e-3, clip_theta=0.05), data).records[0]
    assert r["penalty"] > 0 and r["clip_fraction"] > 0.5 and r["grad_norm_max"] >= r["grad_norm"] > 0.05


def test_bf16_channels_last_and_batchnorm_train(small) -> None:
    data_cfg, data = small
    cfg = trial(data_cfg, epochs=1, precision="bf16", channels_last=True)
    cfg.model.name = "convnet_bn"
    r = fit(cfg, data).records[0]
    assert math.isfinite(r["train_loss"]) and r["val_acc"] > 0.1

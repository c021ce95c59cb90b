"""Units of the training core: schedules, clipping, penalty, metrics, gradcheck (no dataset needed)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from sklearn.metrics import f1_score, precision_score, recall_score, roc_auc_score
from torch import nn

from training.config import ConfigError, OptimizerConfig, SchedulerConfig, TrainConfig, TrialConfig
from training.data import random_crop_flip
from training.gradcheck import DEFAULT_TOLERANCE, gradcheck
from training.loop import train_step
from training.metrics import classification_metrics
from training.model import ConvNet, build_model
from training.optim import build_optimizer, build_scheduler, penalized_weights, penalty

LR = 0.1


def lr_sequence(cfg: SchedulerConfig, epochs: int) -> list[float]:
    opt = torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=LR)
    sched = build_scheduler(opt, cfg, epochs)
    out = []
    for _ in range(epochs):
        out.append(sched.get_last_lr()[0])
        opt.step()
        sched.step()
    return out


@pytest.mark.parametrize(
    "cfg, closed_form",
    [
        (SchedulerConfig("none"), lambda e: LR),
        (SchedulerConfig("step", step_size=3, gamma=0.5), lambda e: LR * 0.5 ** (e // 3)),
        (SchedulerConfig("exponential", gamma=0.8), lambda e: LR * 0.8**e),
        (SchedulerConfig("cosine", eta_min=0.001), lambda e: 0.001 + (LR - 0.001) * (1 + math.cos(math.pi * e / 10)) / 2),
        (
            SchedulerConfig("piecewise", milestones=[4, 7], values=[1.0, 0.2, 0.05]),
            lambda e: LR * (1.0 if e < 4 else 0.2 if e < 7 else 0.05),
        ),
    ],
    ids=["none", "step", "exponential", "cosine", "piecewise"],
)
def test_schedule_matches_closed_form(cfg: SchedulerConfig, closed_form) -> None:
    assert lr_sequence(cfg, 10) == pytest.approx([closed_form(e) for e in range(10)], rel=1e-9)


def test_warmup_is_linear_then_the_schedule_starts() -> None:
    got = lr_sequence(SchedulerConfig("exponential", gamma=0.5, warmup_epochs=4), 8)
    warm = [LR * (0.25 + 0.75 * e / 4) for e in range(4)]
    assert got == pytest.approx(warm + [LR * 0.5**e for e in range(4)], rel=1e-9)


def _step(theta: float | None, lr: float = 0.0) -> tuple[nn.Module, float, float]:
    torch.manual_seed(0)
    model = ConvNet()
    params = list(model.parameters())
    opt = torch.optim.SGD(params, lr=lr)
    x, y = torch.randn(8, 3, 32, 32), torch.arange(8)
    t = TrainConfig(clip_theta=theta)
    _, _, _, norm = train_step(model, opt, params, penalized_weights(model), x, y, t)
    after = nn.utils.get_total_norm([p.grad for p in params]).item()
    return model, norm.item(), after


def test_clipping_bounds_the_norm_and_records_it_before_clipping() -> None:
    _, unclipped, same = _step(None)
    assert unclipped == pytest.approx(same, rel=1e-6)
    theta = unclipped / 10
    _, before, after = _step(theta)
    assert before == pytest.approx(unclipped, rel=1e-6)  # the recorded norm is the pre-clip one
    assert after <= theta * (1 + 1e-5)
    _, before_loose, after_loose = _step(unclipped * 10)  # θ above the norm leaves gradients alone
    assert after_loose == pytest.approx(before_loose, rel=1e-6)


def test_penalty_value_and_gradient_follow_the_formulas() -> None:
    torch.manual_seed(0)
    model = ConvNet()
    weights = penalized_weights(model)
    assert len(weights) == 4 and all(w.ndim > 1 for w in weights)  # 2 conv + 2 linear kernels, no biases
    l1, l2 = 1e-3, 5e-3
    value = penalty(weights, l1, l2)
    expected = sum(l1 * w.abs().sum().item() + l2 * (w**2).sum().item() for w in weights)
    assert value.item() == pytest.approx(expected, rel=1e-5)
    value.backward()
    for w in weights:
        assert torch.allclose(w.grad, l1 * w.sign() + 2 * l2 * w, rtol=1e-5, atol=1e-9)
    assert all(p.grad is None for p in model.parameters() if p.ndim == 1)  # biases untouched
    assert penalty(weights, 0.0, 0.0).item() == 0.0


def test_metrics_match_hand_computed_values_and_sklearn() -> None:
    y = np.array([0, 0, 1, 1, 2, 2])
    probs = np.array(
        [[0.8, 0.1, 0.1], [0.3, 0.6, 0.1], [0.2, 0.7, 0.1], [0.1, 0.8, 0.1], [0.1, 0.1, 0.8], [0.5, 0.1, 0.4]]
    )
    m = classification_metrics(y, probs)
    pred = probs.argmax(1)  # [0, 1, 1, 1, 2, 0]
    assert m["val_acc"] == pytest.approx(4 / 6)
    # class 0: P=1/2 R=1/2; class 1: P=2/3 R=1; class 2: P=1 R=1/2
    assert m["val_precision"] == pytest.approx((1 / 2 + 2 / 3 + 1) / 3)
    assert m["val_recall"] == pytest.approx((1 / 2 + 1 + 1 / 2) / 3)
    assert m["val_precision"] == pytest.approx(precision_score(y, pred, average="macro"))
    assert m["val_recall"] == pytest.approx(recall_score(y, pred, average="macro"))
    assert m["val_f1"] == pytest.approx(f1_score(y, pred, average="macro"))
    assert m["val_auc"] == pytest.approx(roc_auc_score(y, probs, multi_class="ovr"))
    perfect = classification_metrics(y, np.eye(3)[y] * 0.9 + 0.1 / 3)
    assert perfect["val_acc"] == perfect["val_f1"] == perfect["val_auc"] == 1.0
    assert math.isnan(classification_metrics(y, np.full((6, 3), np.nan))["val_auc"])


@pytest.mark.parametrize("name", ["convnet", "convnet_bn"])
def test_gradcheck_passes_on_the_models(name: str) -> None:
    torch.manual_seed(0)
    errors = gradcheck(build_model(name), torch.randn(4, 3, 32, 32), torch.arange(4), l1=1e-3, l2=1e-3)
    assert len(errors) == len(list(build_model(name).parameters()))  # every layer checked
    assert max(errors.values()) < DEFAULT_TOLERANCE


class _WrongReLU(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x):  # type: ignore[no-untyped-def]
        ctx.save_for_backward(x)
        return x.clamp(min=0)

    @staticmethod
    def backward(ctx, g):  # type: ignore[no-untyped-def]
        (x,) = ctx.saved_tensors
        return g * (x > 0) * 1.5  # deliberately wrong: the true derivative is 1 where x > 0


class _WrongNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc1, self.fc2 = nn.Linear(12, 8), nn.Linear(8, 3)

    def forward(self, x):  # type: ignore[no-untyped-def]
        return self.fc2(_WrongReLU.apply(self.fc1(x.flatten(1))))


def test_gradcheck_fails_on_a_wrong_backward() -> None:
    torch.manual_seed(0)
    errors = gradcheck(_WrongNet(), torch.randn(5, 12), torch.tensor([0, 1, 2, 0, 1]))
    assert errors["fc1.weight"] > 0.1  # gradients below the broken ReLU are wrong
    assert errors["fc2.weight"] < DEFAULT_TOLERANCE  # above it they are still right


def test_random_crop_flip_moves_whole_images() -> None:
    x = torch.arange(2 * 3 * 32 * 32, dtype=torch.float32).view(2, 3, 32, 32)
    out = random_crop_flip(x, torch.Generator().manual_seed(0))
    assert out.shape == x.shape
    for i in range(2):  # every output pixel is an input pixel of the same image, or zero padding
        values = set(out[i].flatten().tolist()) - {0.0}
        assert values <= set(x[i].flatten().tolist())
        assert len(values) >= 3 * 28 * 28  # at most 4 rows/cols are padding


def test_optimizer_names() -> None:
    params = [nn.Parameter(torch.zeros(1))]
    assert isinstance(build_optimizer(params, OptimizerConfig("adamw", lr=1e-3)), torch.optim.AdamW)
    assert build_optimizer(params, OptimizerConfig("sgd", nesterov=True)).defaults["nesterov"]


@pytest.mark.parametrize(
    "groups, fragment",
    [
        ({"scheduler": {"name": "linear"}}, "scheduler.name='linear' is unknown"),
        ({"optimizer": {"name": "rmsprop"}}, "optimizer.name='rmsprop' is unknown"),
        ({"model": {"name": "resnet"}}, "model.name='resnet' is unknown"),
        ({"optimizer": {"lr": 0}}, "optimizer.lr=0"),
        ({"optimizer": {"lr": -1}}, "optimizer.lr=-1"),
        ({"train": {"l1": -0.1}}, "train.l1=-0.1 must be >= 0"),
        ({"train": {"l2": -1}}, "train.l2=-1.0 must be >= 0"),
        ({"train": {"clip_theta": -1}}, "train.clip_theta=-1"),
        ({"train": {"epochs": "many"}}, "train.epochs"),
        ({"scheduler": {"name": "piecewise", "milestones": [3], "values": [1.0]}}, "scheduler.values"),
        ({"train": {"bogus": 1}}, "bogus"),
        ({"train": {"l2": float("inf")}}, "train.l2=inf must be a finite number"),
        ({"optimizer": {"lr": float("inf")}}, "optimizer.lr=inf must be a finite number"),
        ({"optimizer": {"momentum": -0.5}}, "optimizer.momentum=-0.5 must be >= 0"),
        ({"optimizer": {"nesterov": True, "momentum": 0}}, "optimizer.nesterov=true needs optimizer.momentum > 0"),
        ({"optimizer": {"name": "adam", "betas": [1.5, 0.9]}}, "optimizer.betas=[1.5, 0.9]: give two numbers in [0, 1)"),
        ({"data": {"mean": [0.5]}}, "data.mean=[0.5]: give one number per channel"),
        ({"data": {"std": [0.5, 0.5, 0.0]}}, "every channel's std must be > 0"),
    ],
)
def test_bad_config_values_raise_one_line(groups: dict, fragment: str) -> None:
    with pytest.raises(ConfigError) as e:
        TrialConfig.from_omegaconf(groups)
    assert fragment in str(e.value) and "\n" not in str(e.value)

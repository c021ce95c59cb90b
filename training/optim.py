"""Optimizer, per-epoch LR schedule (torch.optim.lr_scheduler) and the explicit L1/L2 penalty."""

from __future__ import annotations

from bisect import bisect_right

import torch
from torch import nn
from torch.optim import lr_scheduler

from training.config import ConfigError, OptimizerConfig, SchedulerConfig


def build_optimizer(params, cfg: OptimizerConfig) -> torch.optim.Optimizer:  # type: ignore[no-untyped-def]
    if cfg.name == "sgd":
        return torch.optim.SGD(
            params, lr=cfg.lr, momentum=cfg.momentum, nesterov=cfg.nesterov, weight_decay=cfg.weight_decay
        )
    if cfg.name == "adam":
        return torch.optim.Adam(params, lr=cfg.lr, betas=tuple(cfg.betas), weight_decay=cfg.weight_decay)
    if cfg.name == "adamw":
        return torch.optim.AdamW(params, lr=cfg.lr, betas=tuple(cfg.betas), weight_decay=cfg.weight_decay)
    raise ConfigError(f"optimizer.name={cfg.name!r} is unknown; choose one of: sgd, adam, adamw")


def build_scheduler(opt: torch.optim.Optimizer, cfg: SchedulerConfig, epochs: int) -> lr_scheduler.LRScheduler:
    """A schedule stepped once per epoch; with warm-up, the schedule's own epochs count from its end."""
    main_epochs = max(1, epochs - cfg.warmup_epochs)
    if cfg.name == "none":
        main: lr_scheduler.LRScheduler = lr_scheduler.LambdaLR(opt, lambda _: 1.0)
    elif cfg.name == "step":
        main = lr_scheduler.StepLR(opt, step_size=cfg.step_size, gamma=cfg.gamma)
    elif cfg.name == "exponential":
        main = lr_scheduler.ExponentialLR(opt, gamma=cfg.gamma)
    elif cfg.name == "cosine":
        main = lr_scheduler.CosineAnnealingLR(opt, T_max=main_epochs, eta_min=cfg.eta_min)
    elif cfg.name == "piecewise":
        milestones, values = list(cfg.milestones), list(cfg.values)
        main = lr_scheduler.LambdaLR(opt, lambda e: values[bisect_right(milestones, e)])
    else:
        raise ConfigError(f"scheduler.name={cfg.name!r} is unknown; choose one of: none, step, exponential, cosine, piecewise")
    if cfg.warmup_epochs == 0:
        return main
    warmup = lr_scheduler.LinearLR(opt, start_factor=1 / cfg.warmup_epochs, total_iters=cfg.warmup_epochs)
    return lr_scheduler.SequentialLR(opt, [warmup, main], milestones=[cfg.warmup_epochs])


def penalized_weights(model: nn.Module) -> list[nn.Parameter]:
    """The weights the L1/L2 penalty covers: every parameter of rank ≥ 2 (conv and linear kernels), no biases."""
    return [p for p in model.parameters() if p.ndim > 1]


def penalty(weights: list[torch.Tensor], l1: float, l2: float) -> torch.Tensor:
    """λ₁·Σ|w| + λ₂·Σw² over `weights`, exactly as in the formulas (no ½, no averaging)."""
    total = torch.zeros((), device=weights[0].device)
    if l1:
        total = total + l1 * sum(w.abs().sum() for w in weights)
    if l2:
        total = total + l2 * sum(w.pow(2).sum() for w in weights)
    return total

"""Gradient check: central differences in float64 against autograd, per parameter tensor.

    from training.gradcheck import gradcheck
    errors = gradcheck(my_module, x, y, l1=1e-3, l2=1e-3)   # {param name: max relative error}

Works on any module whose output feeds `loss_fn`; the L1/L2 penalty terms of the training loss
(over parameters of rank ≥ 2) are included so their gradients are checked too.
"""

from __future__ import annotations

import copy
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from training.optim import penalized_weights, penalty

DEFAULT_TOLERANCE = 1e-4


@torch.no_grad()
def _perturbed_loss(loss: Callable[[], torch.Tensor], w: torch.Tensor, i: int, delta: float) -> float:
    flat = w.view(-1)
    old = flat[i].item()
    flat[i] = old + delta
    value = loss().item()
    flat[i] = old
    return value


def gradcheck(
    module: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    l1: float = 0.0,
    l2: float = 0.0,
    eps: float = 1e-5,
    samples: int = 8,
    seed: int = 0,
    loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] = F.cross_entropy,
) -> dict[str, float]:
    """Max relative error |g_autograd − g_numeric| / max(|g_autograd|, |g_numeric|) over `samples` entries of every parameter.

    A sampled entry where a kink (ReLU, max-pool tie, |w| at 0) lies within ±eps is skipped: there the
    one-sided differences disagree with each other by more than the error, which a wrong backward never does.
    """
    model = copy.deepcopy(module).double()
    x = x.double()
    weights = penalized_weights(model)

    def loss() -> torch.Tensor:
        return loss_fn(model(x), y) + penalty(weights, l1, l2)

    model.zero_grad()
    loss().backward()
    rng = torch.Generator().manual_seed(seed)
    errors: dict[str, float] = {}
    for name, w in model.named_parameters():
        assert w.grad is not None, f"{name} gets no gradient"
        worst = 0.0
        for i in torch.randperm(w.numel(), generator=rng)[:samples].tolist():
            up, down = _perturbed_loss(loss, w, i, eps), _perturbed_loss(loss, w, i, -eps)
            numeric = (up - down) / (2 * eps)
            analytic = w.grad.view(-1)[i].item()
            scale = max(abs(analytic), abs(numeric))
            error = abs(analytic - numeric) / scale if scale > 1e-10 else 0.0
            if error > DEFAULT_TOLERANCE:
                with torch.no_grad():
                    here = loss().item()
                right, left = (up - here) / eps, (here - down) / eps
                if abs(right - left) > abs(analytic - numeric) / 2:
                    continue  # a ReLU/max-pool/|w| kink lies within ±eps: not differentiable there, skip it
            worst = max(worst, error)
        errors[name] = worst
    return errors

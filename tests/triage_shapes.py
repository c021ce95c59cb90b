"""Synthetic curve shapes for the triage rule tests: each a function of (epochs, level, rng).

``level`` is the loss at the start (the chance level: ln 2 for a binary task, ln 10 for ten
classes); every shape is the level times a function of the fraction of training done, so the
same shape can be drawn at any length, level and scale.
"""

from __future__ import annotations

import math

import numpy as np

LN2, LN10 = math.log(2), math.log(10)


def _u(n: int) -> np.ndarray:
    return np.arange(1, n + 1) / n


def healthy(n: int, level: float) -> dict[str, np.ndarray]:
    u = _u(n)
    return {"train_loss": level * (0.15 + 0.85 * np.exp(-5 * u)), "val_loss": level * (0.4 + 0.6 * np.exp(-5 * u)),
            "val_acc": 0.9 - 0.5 * np.exp(-5 * u)}


def slow_start(n: int, level: float) -> dict[str, np.ndarray]:
    """Flat at the start level for the first 40% of training, then learns (a naive plateau rule flags it)."""
    v = np.clip((_u(n) - 0.4) / 0.6, 0, None)
    return {"train_loss": level * (0.15 + 0.85 * np.exp(-5 * v)), "val_loss": level * (0.4 + 0.6 * np.exp(-5 * v)),
            "grad_norm": 0.5 + 2 * v}


def stuck(n: int, level: float) -> dict[str, np.ndarray]:
    u = _u(n)
    return {"train_loss": level * (1 + 0.002 * np.exp(-3 * u)), "val_loss": level * (1.001 + 0.001 * np.exp(-3 * u)),
            "val_acc": np.full(n, 0.1)}


def flat_after_drop(n: int, level: float) -> dict[str, np.ndarray]:
    """An early drop of ~15%, then nothing: far from fitted (e.g. heavy L2)."""
    u = np.arange(n)
    return {"train_loss": level * (0.85 + 0.15 * np.exp(-u)), "val_loss": level * (0.86 + 0.15 * np.exp(-u))}


def overfit(n: int, level: float) -> dict[str, np.ndarray]:
    u = _u(n)
    return {"train_loss": level * (0.05 + 0.95 * np.exp(-4 * u)),
            "val_loss": level * (0.5 + 0.5 * np.exp(-8 * u) + 0.8 * np.clip(u - 0.4, 0, None))}


def rising(n: int, level: float) -> dict[str, np.ndarray]:
    """Learns for half the run, then climbs above where it started."""
    u = _u(n)
    t = level * (1 - 0.4 * np.minimum(u / 0.5, 1) + 4 * np.clip(u - 0.5, 0, None))
    return {"train_loss": t, "val_loss": t * 1.05}


def dead(n: int, level: float) -> dict[str, np.ndarray]:
    """Exploded in the first epoch, then sits flat at the chance level (the network died)."""
    t = np.full(n, level)
    t[0] = 40 * level
    return {"train_loss": t, "val_loss": np.full(n, level * 1.0001), "val_acc": np.full(n, 0.1)}


def nonfinite(n: int, level: float) -> dict[str, np.ndarray]:
    c = healthy(n, level)
    c["train_loss"][int(0.6 * n):] = np.nan
    return c


def oscillating(n: int, level: float) -> dict[str, np.ndarray]:
    u = _u(n)
    sign = np.where(np.arange(n) % 2 == 0, 1.0, -1.0)
    t = level * (0.7 - 0.1 * u + 0.25 * sign)
    return {"train_loss": t, "val_loss": t * 1.1}


def unconverged(n: int, level: float) -> dict[str, np.ndarray]:
    u = _u(n)
    return {"train_loss": level * (1 - 0.5 * u), "val_loss": level * (1.02 - 0.45 * u)}


SHAPES = {
    "healthy": healthy, "slow_start": slow_start, "stuck": stuck, "flat_after_drop": flat_after_drop,
    "overfit": overfit, "rising": rising, "dead": dead, "nonfinite": nonfinite, "oscillating": oscillating,
    "unconverged": unconverged,
}
EXPECTED = {
    "healthy": "healthy", "slow_start": "healthy", "stuck": "plateau", "flat_after_drop": "plateau",
    "overfit": "overfit", "rising": "diverging", "dead": "diverging", "nonfinite": "diverging",
    "oscillating": "oscillating", "unconverged": "unconverged",
}


def scaled(curves: dict[str, np.ndarray], factor: float) -> dict[str, np.ndarray]:
    """Losses (and grad norm, which scales with the loss) × factor; accuracies unchanged."""
    return {k: (v * factor if k.endswith("loss") or k.startswith("grad") else v) for k, v in curves.items()}


def noisy(curves: dict[str, np.ndarray], rel: float, seed: int) -> dict[str, np.ndarray]:
    """Multiplicative noise of relative size ``rel`` on the loss curves."""
    rng = np.random.default_rng(seed)
    return {k: (v * np.exp(rng.normal(0, rel, len(v))) if k.endswith("loss") else v) for k, v in curves.items()}

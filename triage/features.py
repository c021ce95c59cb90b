"""Shape statistics of per-epoch curves, computed for many curves at once.

Curves of the same length are stacked into one 2-D array and every statistic is a vectorized
NumPy expression over it, so triaging 10,000 runs costs a few dozen array operations per distinct
curve length instead of per run. All statistics are ratios of a curve with itself (scale-free).
Curves given here are finite: callers cut them before their first non-finite value.
"""

from __future__ import annotations

import math
from typing import NamedTuple, Sequence

import numpy as np

from .thresholds import Thresholds


class CurveStats(NamedTuple):
    """Statistics of one finite curve. Indices are 0-based epochs (reasons add 1)."""

    n: int
    start: float          # first epoch value
    last: float           # last epoch value
    best: float           # minimum
    best_i: int
    peak: float           # maximum
    peak_i: int
    tail: float           # median of the last k epochs
    tail_min: float       # minimum of the last k epochs
    tail_max: float       # maximum of the last k epochs
    earlier: float        # median of the k epochs ending one "recent" window before the end
    recent_gain: float    # 1 - tail / earlier (> 0: still falling)
    gain: float           # 1 - tail / start (> 0: fell overall)
    lost: float           # (tail_min - best) / (start - best): share of the progress given back
    settle_i: int         # first epoch of the final flat stretch (see _block_stats)
    osc_ups: int          # epochs that rose by ≥ osc_amplitude (relative to the epoch before)
    osc_var: float        # relative up-and-down movement beyond the net change, per epoch (Σ|Δlog| − |ΣΔlog|)/(n−1)
    sbest: float          # minimum of the 3-epoch running median (robust minimum)
    sbest_i: int
    t90: float            # share of the run before it first made 90% of its drop from start to tail
    late_rate: float      # fall per epoch over the last L epochs (least-squares slope, > 0: falling)
    fast_rate: float      # fastest fall per epoch over any L consecutive epochs
    late_rel: float       # late_rate × recent window / tail: what a third more training would gain at that pace


def tail_window(n: int, th: Thresholds) -> int:
    """Number of epochs in the tail window of a curve of ``n`` epochs."""
    return max(1, min(th.tail_max, math.ceil(n * th.tail_fraction)))


def late_window(n: int, th: Thresholds) -> int:
    """Epochs over which fall rates are fitted: the recent window (a third of the run), 3..200 epochs."""
    return min(200, max(3, math.ceil(n * th.recent_fraction)))


def _ratio(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    """num / den, with 1.0 where den is 0 (no scale to compare with)."""
    out = np.ones_like(num, dtype=float)
    np.divide(num, den, out=out, where=den != 0)
    return out


def _block_stats(x: np.ndarray, th: Thresholds, shape: bool = True) -> list[CurveStats]:
    """Statistics of the rows of ``x`` (m curves × n epochs, all finite); ``shape=False`` computes only
    the levels and extremes (what the rules read of accuracy and gradient curves), the rest is 0."""
    m, n = x.shape
    rows = np.arange(m)
    k = tail_window(n, th)
    w = max(k, math.ceil(n * th.recent_fraction))
    tail_block = x[:, n - k:]
    tail = np.median(tail_block, axis=1)
    lo = max(0, n - w - k)
    earlier = np.median(x[:, lo:max(lo + 1, n - w)], axis=1)
    start = x[:, 0]
    best_i = np.argmin(x, axis=1)
    best = x[rows, best_i]
    peak_i = np.argmax(x, axis=1)
    peak = x[rows, peak_i]
    tail_min = tail_block.min(axis=1)
    last = x[:, -1]
    if not shape:
        zero = np.zeros(m)
        cols = (np.full(m, n), start, last, best, best_i, peak, peak_i, tail, tail_min, tail_block.max(axis=1),
                earlier, 1.0 - _ratio(tail, earlier), 1.0 - _ratio(tail, start))
        cols += (zero,) * (len(CurveStats._fields) - len(cols))
        return [CurveStats._make(r) for r in zip(*(c.tolist() for c in cols))]
    lost = _ratio(tail_min - best, start - best)
    lost = np.where(start - best > 0, lost, np.where(tail_min > best, np.inf, 0.0))
    # Final flat stretch: the first epoch from which (almost) every value stays within ±tol of the
    # tail level; "almost" (dead_flat_share) lets a noisy flat curve count as flat.
    within = np.abs(x - tail[:, None]) <= th.dead_flat_tol * np.abs(tail)[:, None]
    count_from = np.cumsum(within[:, ::-1], axis=1)[:, ::-1]
    share_from = count_from / np.arange(n, 0, -1)[None, :]
    flat_from = within & (share_from >= th.dead_flat_share)
    settle_i = np.where(flat_from.any(axis=1), np.argmax(flat_from, axis=1), n)
    if n >= 2:
        # relative moves (log-returns), so noise counts the same at every level of a falling curve
        positive = (x > 0).all(axis=1)
        d = np.diff(np.log(np.where(positive[:, None], x, 1.0)), axis=1)
        osc_ups = np.where(positive, (d >= np.log1p(th.osc_amplitude)).sum(axis=1), 0)
        excess = np.abs(d).sum(axis=1) - np.abs(d.sum(axis=1))
        osc_var = np.where(positive, excess / (n - 1), 0.0)
    else:
        osc_ups = np.zeros(m, dtype=int)
        osc_var = np.zeros(m)
    if n >= 5:
        a, b, c = x[:, :-2], x[:, 1:-1], x[:, 2:]
        smooth = np.maximum(np.minimum(a, b), np.minimum(np.maximum(a, b), c))  # running median of 3
        sbest_i = np.argmin(smooth, axis=1) + 1
        sbest = smooth[rows, sbest_i - 1]
    else:
        sbest_i, sbest = best_i, best
    L = late_window(n, th)
    if n > L:
        t = np.arange(L) - (L - 1) / 2
        falls = -(np.lib.stride_tricks.sliding_window_view(x, L, axis=1) @ (t / (t @ t)))
        late_rate, fast_rate = falls[:, -1], falls.max(axis=1)
    else:
        late_rate = fast_rate = np.zeros(m)
    late_rel = _ratio(late_rate * w, np.abs(tail))
    late_rel = np.where(tail != 0, late_rel, 0.0)
    near = x <= (tail + 0.1 * (start - tail))[:, None]
    t90 = np.where(start > tail, np.argmax(near, axis=1) / n, 1.0)
    cols = (
        np.full(m, n), start, last, best, best_i, peak, peak_i, tail, tail_min,
        tail_block.max(axis=1), earlier, 1.0 - _ratio(tail, earlier), 1.0 - _ratio(tail, start), lost,
        settle_i, osc_ups, osc_var, sbest, sbest_i, t90, late_rate, fast_rate, late_rel,
    )
    return [CurveStats._make(r) for r in zip(*(c.tolist() for c in cols))]


def curve_stats(curves: Sequence[np.ndarray | None], th: Thresholds, shape: bool = True) -> list[CurveStats | None]:
    """Statistics of each curve (``None`` for a missing or empty curve), grouped by length."""
    out: list[CurveStats | None] = [None] * len(curves)
    groups: dict[int, list[int]] = {}
    for i, c in enumerate(curves):
        if c is not None and len(c):
            groups.setdefault(len(c), []).append(i)
    for n, idx in groups.items():
        block = np.stack([curves[i] for i in idx]) if len(idx) > 1 else np.asarray(curves[idx[0]])[None, :]
        for i, s in zip(idx, _block_stats(block.astype(float, copy=False), th, shape)):
            out[i] = s
    return out

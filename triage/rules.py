"""Curve rules: label a run from the shape of its per-epoch curves.

``classify`` / ``classify_many`` give the offline verdict of a finished (or stopped) run;
``online_verdict`` is the same rule set on a partial curve, tuned so that it only ever says
``diverging`` and only when that is certain. Rules are checked in a fixed order, first match wins:

1. crashed     no epoch recorded (or the run failed with an exception / out of memory)
2. diverging   a non-finite loss or grad norm; a training loss that climbed and stayed up;
               a curve that exploded and then sat flat (a dead network), seen in the loss or
               in a grad norm that exploded while the loss stopped improving, or a loss that
               shrank back after an explosion while the accuracy never rose; a run of 1-2 epochs
               whose loss never came within 10× of where the runs judged with it start
   undetermined one epoch, or (checked just before plateau) two in which the loss barely moved or rose:
               too short for a shape, neither a failure nor healthy
3. oscillating the training loss keeps going up and down by large relative steps
   diverging   (then) the accuracy fell far from its peak and stayed there while the loss got no lower
4. overfit     val_loss turned up well past its minimum while train_loss kept falling
5. plateau     the loss stopped improving early, far from where it could be
6. unconverged the objective was still falling fast when the budget ended
7. healthy     none of the above
   then        a plateau at an lr far above the runs that learned (or above runs that diverged) is diverging

Every statistic is a ratio of a curve with itself (see ``features``) or, in the two rules that compare
runs, with the median first epoch (1-2 epoch runs only) or the lrs of the runs classified together, so
the verdicts do not depend on the loss's scale or on the number of classes. Thresholds:
``conf/triage/default.yaml``.
"""

from __future__ import annotations

import math
from bisect import bisect_left
from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

import numpy as np

from .features import CurveStats, curve_stats, tail_window
from .thresholds import Thresholds, load_thresholds
from .verdict import (
    CRASHED, DIVERGING, HEALTHY, OSCILLATING, OVERFIT, PLATEAU, UNCONVERGED, UNDETERMINED, Verdict, count_noun,
)

#: Canonical curve names; ``MetricNames`` maps an experiment's own names onto them.
LOSS_KEYS = ("train_loss", "val_loss")
STAT_KEYS = ("train_loss", "val_loss", "train_acc", "val_acc", "grad_norm", "clip_fraction")
NONFINITE_KEYS = ("train_loss", "val_loss", "grad_norm")
FAILED_WITH_ERROR = ("oom", "exception", "interrupted")
_FAILED_HOW = {"oom": "ran out of memory", "exception": "failed with an exception", "interrupted": "was interrupted"}


def _f(x: float) -> str:
    """A number for a sentence: 3 significant digits."""
    return f"{x:.3g}"


def _pct(x: float) -> str:
    return f"{100 * x:.0f}%" if abs(x) >= 0.095 else f"{100 * x:.1f}%"


def _conf(value: float, threshold: float, clear: float) -> float:
    """0.6 at the threshold, rising linearly to 0.97 where the statistic is clearly past it."""
    span = clear - threshold
    frac = 1.0 if span == 0 else (value - threshold) / span
    return 0.6 + 0.37 * min(1.0, max(0.0, frac))


@dataclass
class _Run:
    """One run's curves prepared for the rules: finite prefixes plus where they stopped being finite."""

    curves: dict[str, np.ndarray]
    nonfinite: tuple[str, int, float] | None = None   # (name, 0-based epoch, value)
    failure: str | None = None
    error: str | None = None
    pruned: bool = False        # stopped before its planned epochs (pruned, or still running): never unconverged
    note: str = ""              # said after the reason, e.g. "stopped early by the pruner"
    peers: tuple[float, int] | None = None  # (median first epoch, runs) of this run's loss over the runs judged with it
    optimizer: str | None = None  # runs compare learning rates only within one optimizer
    stats: dict[str, CurveStats | None] = field(default_factory=dict)


def _prepare(curves: Mapping[str, Sequence[float]], meta: Mapping[str, Any] | None) -> _Run:
    arrays = {key: np.asarray(values, dtype=float).ravel() for key, values in curves.items() if values is not None}
    meta = meta or {}
    pruned = bool(meta.get("pruned"))
    note = meta.get("note")  # "" is a note too: stopped early, but not by the pruner
    if note is None:
        note = "stopped early by the pruner" if pruned else ""
    return _Run(arrays, None, meta.get("failure"), meta.get("error"), pruned, note, optimizer=meta.get("optimizer"))


def _cut_nonfinite(runs: list[_Run]) -> None:
    """Find each run's first non-finite loss / grad norm (one vectorized check per curve name over all
    runs) and cut all its curves there: the shape is judged only up to that epoch."""
    for key in NONFINITE_KEYS:
        owners = [i for i, r in enumerate(runs) if len(r.curves.get(key, ()))]
        if not owners:
            continue
        parts = [runs[i].curves[key] for i in owners]
        finite = np.isfinite(np.concatenate(parts))
        if finite.all():
            continue
        offsets = np.cumsum([0] + [len(p) for p in parts])
        bad = np.flatnonzero(~finite)
        which = np.searchsorted(offsets, bad, side="right") - 1
        first = {}
        for b, w in zip(bad.tolist(), which.tolist()):
            first.setdefault(w, b - int(offsets[w]))
        for w, e in first.items():
            r = runs[owners[w]]
            if r.nonfinite is None or e < r.nonfinite[1]:
                r.nonfinite = (key, e, float(r.curves[key][e]))
    for r in runs:
        if r.nonfinite is not None:
            r.curves = {k: v[: r.nonfinite[1]] for k, v in r.curves.items()}


def _primary(run: _Run) -> tuple[str, CurveStats | None]:
    for key in LOSS_KEYS:
        if run.stats.get(key) is not None:
            return key, run.stats[key]
    return "train_loss", None


def _grad_notes(run: _Run, th: Thresholds, label: str) -> list[str]:
    """Sentences naming the gradient mechanism behind a verdict, where grad_norm is logged: exploding
    gradients behind a divergence (and clipping that held while the pre-clip norm kept growing),
    vanishing gradients behind a plateau."""
    g = run.stats.get("grad_norm")
    if g is None:
        return []
    notes = []
    clip = run.stats.get("clip_fraction")
    if label in (DIVERGING, OSCILLATING) and g.best > 0 and g.peak >= th.grad_explode_ratio * g.best:
        notes.append(f"exploding gradients: grad_norm reached {_f(g.peak)} at epoch {g.peak_i + 1}, "
                     f"{_f(g.peak / g.best)}× its minimum {_f(g.best)}")
    elif label == DIVERGING and g.start > 0 and g.peak >= th.clip_growth * g.start:
        notes.append(f"grad_norm grew {_f(g.peak / g.start)}× ({_f(g.start)} → {_f(g.peak)}) before it")
    if clip is not None and clip.tail >= th.clip_held_fraction and g.start > 0 and g.tail >= th.clip_growth * g.start:
        notes.append(f"clipping held the steps (clip_fraction {_f(clip.tail)} at the end) while the pre-clip "
                     f"grad_norm kept growing {_f(g.tail / g.start)}× ({_f(g.start)} → {_f(g.tail)})")
    if label == PLATEAU and g.start > 0 and g.tail <= th.vanishing_grad_ratio * g.start:
        notes.append(f"vanishing gradients: grad_norm fell to {_pct(g.tail / g.start)} of its first epoch "
                     f"({_f(g.start)} → {_f(g.tail)})")
    return notes


def _verdict(run: _Run, th: Thresholds, label: str, conf: float, reason: str, rule: str, **ev: Any) -> Verdict:
    notes = _grad_notes(run, th, label)
    if notes:
        reason = f"{reason}; {'; '.join(notes)}"
    if run.note and label not in (DIVERGING, CRASHED):
        reason += f" ({run.note})"
    _, p = _primary(run)
    if p is not None and p.n < th.short_epochs and rule not in ("nonfinite", "crashed", "failed", "short"):
        conf *= th.short_penalty
    return Verdict(label, round(float(conf), 3), reason + ".", rule, ev)


# --- diverging --------------------------------------------------------------------------------

def _rising(key: str, s: CurveStats, th: Thresholds) -> tuple[float, str] | None:
    """The loss climbed above its best and stayed there for the whole tail window."""
    if s.n < 2 or s.best <= 0 or s.tail_min < (1 + th.diverge_rise_min) * s.best:
        return None
    rise = s.tail_min / s.best - 1
    if rise < th.diverge_rise and s.lost < th.diverge_lost:
        return None
    k = tail_window(s.n, th)
    conf = max(_conf(rise, th.diverge_rise, 4 * th.diverge_rise), _conf(s.lost, th.diverge_lost, 1.5))
    where = "the last epoch" if k <= 1 else f"each of the last {k} epochs"
    reason = (f"{key} climbed back up to {_f(s.tail)} ({where} ≥ {_f(s.tail_min / s.best)}× its best "
              f"{_f(s.best)} at epoch {s.best_i + 1}"
              + (f", giving back {_pct(min(s.lost, 9.99))} of its progress)" if np.isfinite(s.lost) and s.lost > 0
                 else ")"))
    return conf, reason


def _collapse_confirmed(run: _Run, s: CurveStats, th: Thresholds, ratio: float) -> tuple[bool, str]:
    """For a peak in the first epoch (its average may be an explosion or just fast learning), evidence
    that the network collapsed: the grad norm exploded and collapsed (when logged), else the accuracy
    froze (constant predictions, when logged), else a loss peak ≥ ``dead_short_ratio`` × its flat level.
    """
    g = run.stats.get("grad_norm")
    if g is not None:
        return g.tail > 0 and g.peak >= th.grad_explode_ratio * g.tail, ""  # the reason's grad note names it
    frozen = _frozen_accuracy(run, s.settle_i, s.n, th)
    if frozen is not None:
        return frozen[0], frozen[1]
    return s.peak >= max(ratio, th.dead_short_ratio) * s.tail, ""


def _frozen_accuracy(run: _Run, lo: int, hi: int, th: Thresholds) -> tuple[bool, str] | None:
    """Whether the accuracy (val, else train) stayed constant over epochs [lo, hi) at a level a constant
    prediction can reach (≤ dead_acc_max); None when no accuracy is logged."""
    for name in ("val_acc", "train_acc"):
        acc, st = run.curves.get(name), run.stats.get(name)
        if acc is not None and len(acc) >= hi:
            tol = th.dead_acc_tol + 1e-9  # inclusive: 0.1 - 0.098 is 0.0020000000000000018 in floating point
            if st is not None and st.n == hi and hi - lo >= 1 and st.tail_max - st.tail_min > tol:
                return False, ""  # it already moves within its tail window (cheap rejection)
            window = acc[lo:hi]
            ok = len(window) > 0 and float(np.ptp(window)) <= tol and float(window.max()) <= th.dead_acc_max
            return ok, f"{name} frozen at {_f(acc[hi - 1])}"
    return None


def _dead(run: _Run, key: str, s: CurveStats, th: Thresholds, ratio: float, spike: float,
          min_flat: int) -> tuple[float, str] | None:
    """The loss exploded and the network died: the curve then sits flat, no better than where it began.

    * Peak after the first epoch: the loss spiked to ≥ ``spike`` × its first epoch and now sits flat
      at a level no lower than that first epoch (all progress lost, nothing learned since).
    * Peak in the first epoch: its average is ≥ ``ratio`` × the level the curve reached within
      ``dead_settle_epochs`` and kept (or, still sinking toward it, with the accuracy frozen since),
      confirmed by ``_collapse_confirmed`` (a fast learner looks the same in the loss alone).
    """
    flat = s.n - s.settle_i
    if s.n < 1 + min_flat or s.tail <= 0:
        return None
    if s.peak_i > 0:
        if flat < min_flat:
            return None
        if s.peak < spike * s.start or s.tail < (1 - th.plateau_min_gain) * s.start or s.settle_i <= s.peak_i:
            return None
        conf = _conf(s.peak / s.start, spike, 4 * spike)
        return conf, (f"{key} spiked to {_f(s.peak)} at epoch {s.peak_i + 1} ({_f(s.peak / s.start)}× its first "
                      f"epoch) and has sat flat at {_f(s.tail)} for {flat} epochs, no better than where it began: "
                      "the network died")
    if s.peak < ratio * s.tail:
        return None
    if s.settle_i > th.dead_settle_epochs or flat < min_flat:
        # it kept falling after the explosion: dead only if nothing was learned (accuracy frozen) since
        frozen = _frozen_accuracy(run, 1, s.n, th)
        if frozen is None or not frozen[0] or s.n - 1 < min_flat:
            return None
        after = f"then sank to {_f(s.tail)} without learning anything ({frozen[1]} since epoch 2"
    else:
        after = f"stayed flat at {_f(s.tail)} for {flat} epochs ("
    ok, why = _collapse_confirmed(run, s, th, ratio)
    if not ok:
        return None
    conf = _conf(s.peak / s.tail, ratio, 10 * ratio)
    detail = f"{after}{'; ' if after[-1] != '(' and why else ''}{why})".replace(" ()", "")
    return conf, (f"{key} exploded to {_f(s.peak)} in epoch 1 ({_f(s.peak / s.tail)}× the level it then reached) "
                  f"and {detail}: the network died")


def _frozen_while_falling(run: _Run, key: str, p: CurveStats, th: Thresholds) -> tuple[float, str] | None:
    """The loss fell a long way (≥ plateau_max_gain) while the accuracy did not move in any epoch, after an
    explosion: a first epoch ≥ ``explode_ratio`` × the last, or grad_norm ≥ ``grad_explode_ratio`` × its last
    level. A loss that falls without one prediction changing is exploded outputs shrinking back, not learning
    (runs too short for ``_dead``'s flat stretch or ``_constant_predictions``' recent third)."""
    if p.n < 2 or p.tail <= 0 or p.gain < th.plateau_max_gain:
        return None
    g = run.stats.get("grad_norm")
    grad = g is not None and g.tail > 0 and g.peak >= th.grad_explode_ratio * g.tail
    if p.start < th.explode_ratio * p.tail and not grad:
        return None
    frozen = _frozen_accuracy(run, 0, p.n, th)
    if frozen is not None and frozen[0]:
        unmoved = f"{frozen[1]} in {'both epochs' if p.n == 2 else f'all {p.n} epochs'}"
    elif (unmoved := _never_rose(run, p.n, th)) is None:
        return None
    if p.start >= th.explode_ratio * p.tail:
        conf = _conf(p.start / p.tail, th.explode_ratio, 10 * th.explode_ratio)
        how = f"exploded to {_f(p.start)} in epoch 1 ({_f(p.start / p.tail)}× epoch {p.n})"
    else:
        assert g is not None
        conf = _conf(g.peak / g.tail, th.grad_explode_ratio, 10 * th.grad_explode_ratio)
        how = (f"fell {_pct(p.gain)} ({_f(p.start)} → {_f(p.tail)}) after grad_norm exploded to {_f(g.peak)} at "
               f"epoch {g.peak_i + 1} ({_f(g.peak / g.tail)}× its final level)")
    return conf, f"{key} {how} with {unmoved}: it learned nothing, the network died"


def _never_rose(run: _Run, n: int, th: Thresholds) -> str | None:
    """``val_acc never more than 0.004 above its first epoch (0.1)``: the accuracy (val, else train) did not
    gain ``acc_learning`` in any epoch, at a level a constant prediction can reach; None when it did or
    none is logged. Looser than frozen: a network still shaking after an explosion wiggles a few images."""
    for name in ("val_acc", "train_acc"):
        acc = run.curves.get(name)
        if acc is not None and len(acc) == n and np.isfinite(acc).all():
            gain = float(acc.max() - acc[0])
            if gain < th.acc_learning and acc.max() <= th.dead_acc_max:
                return f"{name} never more than {_f(gain)} above its first epoch ({_f(acc[0])})"
            return None
    return None


def _grad_dead(run: _Run, key: str, p: CurveStats, th: Thresholds) -> tuple[float, str] | None:
    """grad_norm exploded and collapsed within a few epochs while the loss stopped improving after it."""
    g = run.stats.get("grad_norm")
    if g is None or g.tail <= 0 or g.peak < th.grad_explode_ratio * g.tail or p.n < 3:
        return None
    grad = run.curves["grad_norm"]
    after = min(g.peak_i + th.dead_settle_epochs, g.n - 1)
    if grad[after] > math.sqrt(th.grad_explode_ratio) * g.tail:
        return None  # a gradual decay over many epochs is vanishing gradients, not an explosion
    x = run.curves[key]
    j = min(g.peak_i + 1, len(x) - 1)
    if j >= len(x) - 1 or p.tail < (1 - th.plateau_min_gain) * x[j] or abs(p.recent_gain) > th.plateau_recent:
        return None
    conf = _conf(g.peak / g.tail, th.grad_explode_ratio, 10 * th.grad_explode_ratio)
    reason = (f"grad_norm exploded to {_f(g.peak)} at epoch {g.peak_i + 1} ({_f(g.peak / g.tail)}× its final level) "
              f"and {key} has not improved since ({_f(x[j])} at epoch {j + 1} → {_f(p.tail)}): the network died")
    return conf, reason


def _above_peers(run: _Run, key: str, p: CurveStats, th: Thresholds) -> tuple[float, str] | None:
    """A run of one or two epochs (too short for its own shape to tell) whose loss never came within
    ``peer_explode_ratio`` × the level at which the runs judged with it start (their median first
    epoch): it blew up at once, e.g. a trial pruned after one exploded epoch. The one rule that compares
    runs; longer runs are judged by their own shape alone, since one MLflow experiment may mix losses."""
    if p.n > 2 or run.peers is None or run.peers[0] <= 0 or p.best < th.peer_explode_ratio * run.peers[0]:
        return None
    level, n_runs = run.peers
    ratio = p.best / level
    what = f"{key} was {_f(p.start)} at epoch 1" if p.n == 1 else f"{key} never came below {_f(p.best)} in {p.n} epochs"
    return _conf(ratio, th.peer_explode_ratio, 10 * th.peer_explode_ratio), (
        f"{what}, {_f(ratio)}× the median first epoch of the {n_runs} runs judged with it ({_f(level)}): "
        "it blew up at the start")


def _constant_predictions(run: _Run, key: str, p: CurveStats, th: Thresholds) -> tuple[str, float, str] | None:
    """The accuracy froze over the recent epochs while the loss gained little: the network predicts one
    class. Dead after a gradient explosion (diverging), or never learned (plateau)."""
    k = max(th.dead_min_flat, _recent_epochs(p.n, th))
    if p.n < k + 1 or p.gain >= th.plateau_max_gain:
        return None
    frozen = _frozen_accuracy(run, p.n - k, p.n, th)
    if frozen is None or not frozen[0]:
        return None
    what = f"{frozen[1]} for the last {k} epochs while {key} fell only {_pct(max(p.gain, 0.0))} overall: it predicts a single class"
    g = run.stats.get("grad_norm")
    if g is not None and g.tail > 0 and g.peak >= th.frozen_grad_ratio * g.tail:
        conf = _conf(g.peak / g.tail, th.frozen_grad_ratio, 10 * th.frozen_grad_ratio)
        return DIVERGING, conf, (f"grad_norm exploded to {_f(g.peak)} at epoch {g.peak_i + 1} ({_f(g.peak / g.tail)}× "
                                 f"its final level) and {what}: the network died")
    return PLATEAU, 0.8, what


def _collapsed(run: _Run, key: str, p: CurveStats, th: Thresholds) -> tuple[float, str] | None:
    """The network learned, then lost it: the accuracy (train, else val) fell from its peak by ≥
    ``collapse_acc_drop`` and ≥ ``collapse_acc_share`` of it, for the whole tail window, while the loss
    ended no lower than at that peak. A spike too small for ``_dead`` that still killed the network. Needs
    the training loss: a validation loss that rises while the accuracy falls may be overfitting."""
    if key != "train_loss":
        return None
    x = run.curves[key]
    k = tail_window(p.n, th)
    for name in ("train_acc", "val_acc"):
        acc = run.curves.get(name)
        if acc is None or len(acc) != p.n or p.n < 3 or not np.isfinite(acc).all():
            continue
        i = int(np.argmax(acc))
        peak, after = float(acc[i]), float(acc[-k:].max())
        if i >= p.n - k or peak <= 0 or p.tail < x[i]:
            continue
        share = (peak - after) / peak
        if peak - after >= th.collapse_acc_drop and share >= th.collapse_acc_share:
            return _conf(share, th.collapse_acc_share, 2 * th.collapse_acc_share), (
                f"{name} fell from {_f(peak)} at epoch {i + 1} to {_f(after)} (lost {_pct(share)}) while {key} ended "
                f"no lower than then ({_f(x[i])} → {_f(p.tail)}): the network learned, then collapsed")
    return None


# --- the other shapes -------------------------------------------------------------------------

def _oscillating(key: str, s: CurveStats, th: Thresholds) -> tuple[float, str] | None:
    """The loss keeps going up and down: large movement beyond its net change, with repeated big rises."""
    if s.n < 5 or s.osc_ups < th.osc_min_ups or s.osc_var < th.osc_variation:
        return None
    conf = _conf(s.osc_var, th.osc_variation, 3 * th.osc_variation)
    reason = (f"{key} went up and down by {_pct(s.osc_var)} per epoch on average beyond its net change "
              f"({_f(s.start)} → {_f(s.last)}), jumping up ≥ {_pct(th.osc_amplitude)} {s.osc_ups} times in {s.n} "
              f"epochs (between {_f(s.best)} and {_f(s.peak)})")
    return conf, reason


def _overfit(run: _Run, th: Thresholds) -> tuple[float, str, dict[str, float]] | None:
    t, v = run.stats.get("train_loss"), run.stats.get("val_loss")
    if t is None or v is None or v.n < 4 or v.sbest <= 0:
        return None
    m = v.sbest_i
    if v.n - 1 - m < th.overfit_min_epochs_after or m >= t.n:
        return None
    rise = v.tail / v.sbest - 1
    t_at_m = float(run.curves["train_loss"][m])
    fall = 1 - t.tail / t_at_m if t_at_m > 0 else 0.0
    if rise < th.overfit_val_rise or fall < th.overfit_train_fall:
        return None
    gap_m, gap_end = v.sbest - t_at_m, v.tail - t.tail
    if gap_end <= gap_m:
        return None
    conf = min(_conf(rise, th.overfit_val_rise, 4 * th.overfit_val_rise), _conf(fall, th.overfit_train_fall, 0.5))
    reason = (f"val_loss rose {_pct(rise)} above its minimum {_f(v.sbest)} at epoch {m + 1} while train_loss "
              f"fell {_pct(fall)} more ({_f(t_at_m)} → {_f(t.tail)}), widening the gap from {_f(gap_m)} to "
              f"{_f(gap_end)}")
    return conf, reason, {"val_rise": rise, "train_fall": fall, "val_min_epoch": m + 1}


def _learning_now(run: _Run, s: CurveStats, th: Thresholds) -> bool:
    """Still learning at the end: the loss fell ≥ plateau_learning over the recent third, or it keeps
    its fastest pace while the accuracy rose ≥ acc_learning (a slow start that is taking off)."""
    if s.recent_gain >= th.plateau_learning:
        return True
    return _pace(s) >= th.unconverged_pace and _acc_gain(run) >= th.acc_learning


def _pace(s: CurveStats) -> float:
    """Late fall rate as a share of the fastest one (1: not slowing down; ≤ 0: flat or rising)."""
    return s.late_rate / s.fast_rate if s.fast_rate > 0 else 0.0


def _acc_gain(run: _Run) -> float:
    """Rise of the accuracy (val, else train) over the recent third; 0 when none is logged."""
    a = run.stats.get("val_acc") or run.stats.get("train_acc")
    return a.tail - a.earlier if a is not None else 0.0


def _plateau(run: _Run, key: str, s: CurveStats, th: Thresholds) -> tuple[float, str, str] | None:
    if s.n < 3 or _learning_now(run, s, th):
        return None  # e.g. a slow start that has just taken off: not a plateau
    if s.gain < th.plateau_min_gain:
        conf = _conf(th.plateau_min_gain - s.gain, 0.0, th.plateau_min_gain)
        reason = (f"{key} never improved: after {s.n} epochs it sits at {_f(s.tail)}, "
                  f"{_pct(abs(s.gain))} {'below' if s.gain >= 0 else 'above'} its first epoch {_f(s.start)}")
        return conf, reason, "stuck"
    if s.gain < th.plateau_max_gain and abs(s.recent_gain) < th.plateau_recent and s.t90 <= th.plateau_early:
        conf = min(_conf(th.plateau_max_gain - s.gain, 0.0, th.plateau_max_gain / 2),
                   _conf(th.plateau_recent - abs(s.recent_gain), 0.0, th.plateau_recent / 2))
        reason = (f"{key} fell only {_pct(s.gain)} ({_f(s.start)} → {_f(s.tail)}), nearly all of it in the first "
                  f"{max(1, round(s.t90 * s.n))} of {s.n} epochs, and then stopped: {_pct(s.recent_gain)} change over "
                  f"the last {_recent_epochs(s.n, th)} epochs")
        return conf, reason, "flat"
    return None


def _recent_epochs(n: int, th: Thresholds) -> int:
    return max(tail_window(n, th), math.ceil(n * th.recent_fraction))


def _healthy_reason(run: _Run, key: str, p: CurveStats) -> str:
    moved = f"fell {_pct(p.gain)}" if p.gain >= 0 else f"rose {_pct(-p.gain)}"
    reason = f"{key} {moved} ({_f(p.start)} → {_f(p.tail)}) over {p.n} epochs{_val_note(run, key)}"
    acc = run.stats.get("val_acc") or run.stats.get("train_acc")
    if acc is not None:
        name = "val_acc" if run.stats.get("val_acc") is not None else "train_acc"
        reason += f"; {name} {_f(acc.tail)} at the end"
    return reason


def _val_note(run: _Run, key: str) -> str:
    """`` and val_loss ended at 1.8, within 2% of its minimum at epoch 4`` (empty when ``key`` is val_loss or none is logged)."""
    v = run.stats.get("val_loss")
    if key == "val_loss" or v is None:
        return ""
    above = max(0.0, v.tail / v.sbest - 1) if v.sbest > 0 else 0.0
    if above < 5e-4:  # "within 0.0% of" says it less plainly
        return f" and val_loss ended at its minimum, {_f(v.tail)} at epoch {v.sbest_i + 1}"
    where = f"within {_pct(above)} of" if above <= 0.1 else f"{_pct(above)} above"
    return f" and val_loss ended at {_f(v.tail)}, {where} its minimum at epoch {v.sbest_i + 1}"


def _decide(run: _Run, th: Thresholds) -> Verdict:
    if run.failure in FAILED_WITH_ERROR:
        n_epochs = max((len(run.curves.get(k, ())) for k in LOSS_KEYS), default=0)
        msg = f": {run.error}" if run.error else ""
        return _verdict(run, th, CRASHED, 0.99,
                        f"the run {_FAILED_HOW[run.failure]} after {count_noun(n_epochs, 'recorded epoch')}{msg}", "failed",
                        failure=run.failure, epochs=n_epochs)
    if run.nonfinite is not None:
        name, i, value = run.nonfinite
        before = run.curves.get(name)
        prev = f" after {_f(before[-1])} at epoch {i}" if before is not None and len(before) else ""
        shown = "NaN" if np.isnan(value) else ("+inf" if value > 0 else "-inf")
        return _verdict(run, th, DIVERGING, 0.99, f"{name} became {shown} at epoch {i + 1}{prev}", "nonfinite",
                        metric=name, epoch=i + 1)
    key, p = _primary(run)
    if p is None:
        why = f"failed ({run.failure})" if run.failure else "recorded no epoch"
        return _verdict(run, th, CRASHED, 0.9 if run.failure else 0.8, f"the run {why}: no loss curve to judge",
                        "crashed")
    hit = _rising(key, p, th)
    if hit:
        return _verdict(run, th, DIVERGING, hit[0], hit[1], "rising", rise=p.tail_min / p.best - 1, lost=p.lost)
    for k in LOSS_KEYS:
        s = run.stats.get(k)
        hit = None if s is None else (_dead(run, k, s, th, th.explode_ratio, th.spike_ratio, th.dead_min_flat)
                                      or _dead(run, k, s, th, th.dead_short_ratio, th.spike_ratio, 2))
        if hit:
            return _verdict(run, th, DIVERGING, hit[0], hit[1], "dead", peak_ratio=s.peak / s.tail)
    hit = _frozen_while_falling(run, key, p, th)
    if hit:
        return _verdict(run, th, DIVERGING, hit[0], hit[1], "dead", peak_ratio=p.start / p.tail)
    hit = _grad_dead(run, key, p, th)
    if hit:
        return _verdict(run, th, DIVERGING, hit[0], hit[1], "grad_dead")
    hit = _above_peers(run, key, p, th)
    if hit:
        return _verdict(run, th, DIVERGING, hit[0], hit[1], "peers", peer_ratio=p.best / run.peers[0])
    if p.n == 1:
        return _verdict(run, th, UNDETERMINED, 1.0, f"only 1 epoch was recorded ({key} {_f(p.start)}): too short to "
                        "judge its shape", "short")
    frozen = _constant_predictions(run, key, p, th)
    if frozen:
        return _verdict(run, th, frozen[0], frozen[1], frozen[2], "constant")
    hit = _oscillating(key, p, th)
    if hit:
        return _verdict(run, th, OSCILLATING, hit[0], hit[1], "oscillating", variation=p.osc_var, rises=p.osc_ups)
    hit = _collapsed(run, key, p, th)
    if hit:
        return _verdict(run, th, DIVERGING, hit[0], hit[1], "collapsed")
    of = _overfit(run, th)
    if of:
        return _verdict(run, th, OVERFIT, of[0], of[1], "overfit", **of[2])
    if p.n == 2 and p.gain < th.plateau_min_gain:  # _plateau needs 3 epochs: say so rather than "healthy"
        moved = (f"barely moved ({_f(p.start)} → {_f(p.tail)}, {_pct(abs(p.gain))})" if p.gain > -th.plateau_min_gain
                 else f"rose {_pct(-p.gain)} ({_f(p.start)} → {_f(p.tail)})")  # fmt: skip
        return _verdict(run, th, UNDETERMINED, 1.0, f"only 2 epochs were recorded: {key} {moved}{_val_note(run, key)}; "
                        "too short to tell a slow start from a plateau", "short")
    pl = _plateau(run, key, p, th)
    if pl:
        return _verdict(run, th, PLATEAU, pl[0], pl[1], pl[2], gain=p.gain, recent_gain=p.recent_gain)
    obj_key = "val_loss" if run.stats.get("val_loss") is not None and run.stats["val_loss"].n >= 4 else key
    o = run.stats.get(obj_key)
    if not run.pruned and o is not None and o.n >= 4:
        pace, acc_gain = _pace(o), _acc_gain(run)
        if pace >= th.unconverged_pace and (o.late_rel >= th.unconverged_recent_gain or acc_gain >= th.acc_learning):
            conf = min(_conf(pace, th.unconverged_pace, 1.0),
                       max(_conf(o.late_rel, th.unconverged_recent_gain, 3 * th.unconverged_recent_gain),
                           _conf(acc_gain, th.acc_learning, 3 * th.acc_learning)))
            acc = f" while the accuracy rose {_f(acc_gain)}" if acc_gain >= th.acc_learning else ""
            return _verdict(run, th, UNCONVERGED, conf,
                            f"{obj_key} was still falling when the budget ended, at {_pct(pace)} of its fastest pace"
                            f"{acc}: {_recent_epochs(o.n, th)} more epochs at that pace would lower it "
                            f"{_pct(o.late_rel)} more ({_f(o.tail)} now); train longer", "unconverged",
                            late_rel=o.late_rel, pace=pace, acc_gain=acc_gain)
    margin = min(1.0, max(0.0, p.gain - th.plateau_max_gain) / th.plateau_max_gain)
    return _verdict(run, th, HEALTHY, 0.6 + 0.35 * margin, _healthy_reason(run, key, p), "healthy", gain=p.gain)


def _needed(r: _Run, key: str) -> np.ndarray | None:
    """The curve of ``key`` if a rule reads it: train_acc only without val_acc, clip_fraction only with grad_norm."""
    if key == "train_acc" and len(r.curves.get("val_acc", ())):
        return None
    if key == "clip_fraction" and not len(r.curves.get("grad_norm", ())):
        return None
    return r.curves.get(key)


def _stats_for(runs: list[_Run], th: Thresholds) -> None:
    for key in STAT_KEYS:
        stats = curve_stats([_needed(r, key) for r in runs], th, shape=key in LOSS_KEYS)
        for r, s in zip(runs, stats):
            r.stats[key] = s


def _set_peers(runs: list[_Run], th: Thresholds) -> None:
    """Give each run the median first epoch of its primary loss over all runs (when ≥ ``peer_min_runs`` have one)."""
    for key in LOSS_KEYS:
        owners = [r for r in runs if _primary(r)[0] == key and r.stats.get(key) is not None]
        if len(owners) >= th.peer_min_runs:
            level = float(np.median([r.stats[key].start for r in owners]))
            for r in owners:
                r.peers = (level, len(owners))


def _stalled_at_high_lr(runs: list[_Run], verdicts: list[Verdict], th: Thresholds) -> list[Verdict]:
    """A plateau at an lr (its peak) far above every run that learned (≥ ``stall_lr_ratio`` × theirs, two
    or more of them) or above two runs that diverged, with the same optimizer, is a network the lr killed
    at once, not one it starved: diverging. The stall looks the same in the curves; the lrs tell them apart."""
    peak = [float(np.max(r.curves["lr"])) if len(r.curves.get("lr", ())) else None for r in runs]
    # per optimizer, gathered once for all plateaus: the peak lrs of the runs that learned, of those that diverged
    learned: dict[str | None, list[float]] = {}
    died: dict[str | None, list[float]] = {}
    for r, v, lr in zip(runs, verdicts, peak):
        if lr is not None and v.label in (HEALTHY, UNCONVERGED, OVERFIT):
            learned.setdefault(r.optimizer, []).append(lr)
        elif lr is not None and v.label == DIVERGING:
            died.setdefault(r.optimizer, []).append(lr)
    for lrs in died.values():
        lrs.sort()
    out = list(verdicts)
    for i, (r, v) in enumerate(zip(runs, verdicts)):
        if v.label != PLATEAU or peak[i] is None:
            continue
        ok, lower = learned.get(r.optimizer, []), died.get(r.optimizer, [])
        below = lower[: bisect_left(lower, peak[i])]  # strictly lower: runs at the same lr (a reg sweep) say nothing
        if len(ok) >= 2 and peak[i] >= th.stall_lr_ratio * max(ok):
            why = f"the {len(ok)} runs that learned had lr ≤ {_f(max(ok))}"
        elif len(below) >= 2:
            why = f"{len(below)} runs at lower lr (≤ {_f(below[-1])}) diverged"
        else:
            continue
        out[i] = Verdict(DIVERGING, 0.7, f"{v.reason.rstrip('.')}; at lr {_f(peak[i])}, where {why}: the lr is too "
                         "high (the network died), not too low.", "stalled_high_lr", {**v.evidence, "lr": peak[i]})
    return out


def classify_many(
    runs: Sequence[Mapping[str, Sequence[float]]],
    thresholds: Thresholds | None = None,
    metas: Sequence[Mapping[str, Any] | None] | None = None,
) -> list[Verdict]:
    """Classify many runs at once (statistics vectorized over runs of equal length).

    Args:
        runs: for each run, canonical curve name → per-epoch values (NaN/inf allowed, may be empty).
        thresholds: defaults to ``conf/triage/default.yaml``.
        metas: optional per-run facts the curves cannot show: ``failure`` (``oom``, ``exception``,
            ``interrupted``, ``nonfinite``), ``error`` (message), ``pruned`` (stopped before its planned
            epochs: never ``unconverged``), ``note`` (said after the reason; default for pruned runs:
            "stopped early by the pruner"), ``optimizer`` (runs compare their ``lr`` curves only
            within one optimizer).
    """
    th = thresholds or load_thresholds()
    prepared = [_prepare(c, metas[i] if metas else None) for i, c in enumerate(runs)]
    _cut_nonfinite(prepared)
    _stats_for(prepared, th)
    _set_peers(prepared, th)
    return _stalled_at_high_lr(prepared, [_decide(r, th) for r in prepared], th)


def classify(
    curves: Mapping[str, Sequence[float]],
    thresholds: Thresholds | None = None,
    *,
    failure: str | None = None,
    error: str | None = None,
    pruned: bool = False,
    note: str | None = None,
) -> Verdict:
    """Classify one run from its per-epoch curves (see the module docstring for the rules).

    ``curves`` maps canonical names (``train_loss``, ``val_loss``, ``train_acc``, ``val_acc``,
    ``grad_norm``, ``clip_fraction``, ``lr``) to per-epoch values; missing keys, empty curves and
    NaN/inf values are allowed. ``failure``, ``error``, ``pruned`` and ``note`` are as in ``classify_many``.
    """
    meta = {"failure": failure, "error": error, "pruned": pruned, "note": note}
    return classify_many([curves], thresholds, [meta])[0]


def online_verdict(curves: Mapping[str, Sequence[float]], thresholds: Thresholds | None = None) -> Verdict | None:
    """During training: a ``diverging`` verdict when the partial curves are certainly diverging, else None.

    Fires only on (a) a non-finite loss or grad norm, (b) a training loss whose last two epochs are
    both ≥ ``online_explode_ratio`` × its best, or (c) the offline "dead network" rule with
    ``online_explode_ratio`` for both its ratios and ``online_min_flat`` flat epochs. Slow-starting
    curves (flat, then learning) never match: none has a peak far above its flat level.
    """
    th = thresholds or load_thresholds()
    run = _prepare(curves, None)
    _cut_nonfinite([run])
    if run.nonfinite is not None:
        return _decide(run, th)
    _stats_for([run], th)
    key, p = _primary(run)
    if p is None:
        return None
    x = run.curves[key]
    if p.n >= 3 and p.best > 0 and min(x[-1], x[-2]) >= th.online_explode_ratio * p.best:
        return _verdict(run, th, DIVERGING, 0.95,
                        f"{key} exploded to {_f(x[-1])}, {_f(x[-1] / p.best)}× its best {_f(p.best)} at epoch "
                        f"{p.best_i + 1}, for two epochs in a row", "online_rising")
    for k in LOSS_KEYS:
        s = run.stats.get(k)
        hit = None if s is None else _dead(run, k, s, th, th.online_explode_ratio, th.online_explode_ratio,
                                           th.online_min_flat)
        if hit:
            return _verdict(run, th, DIVERGING, max(hit[0], 0.9), hit[1], "online_dead")
    return None

"""The per-trial curve plot, logged as `curves.png` on a child run.

Which trials get one is `tracking.trial_plots` (one of `TRIAL_PLOTS`): by default only those triage
flags, where a person wants the evidence at a glance. Drawing one costs 0.1-0.2 s of CPU, about 1%
of a 2,000-image trial on 2 cores, and MLflow's UI already charts every run's metrics.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

from matplotlib.axes import Axes
from matplotlib.figure import Figure  # no pyplot: no global state, safe to draw off the main thread
from matplotlib.lines import Line2D
from matplotlib.ticker import AutoLocator, FormatStrFormatter, LogLocator, MaxNLocator

from training.config import ConfigError
from triage.verdict import HEALTHY, UNDETERMINED

TRIAL_PLOTS = ("flagged", "all", "none")  # flagged: trials whose triage verdict is neither healthy nor undetermined
PANELS = (  # y scale: auto = linear, or log where the curves span more than a decade (a loss that blew up)
    ("loss", ("train_loss", "val_loss"), "auto"),
    ("accuracy", ("train_acc", "val_acc"), "linear"),
    ("gradient norm (pre-clip)", ("grad_norm", "grad_norm_max"), "log"),
    ("learning rate", ("lr",), "log"),
)


class CurvePlot:
    """Loss, accuracy, gradient norm and lr against epoch; a panel says from which epoch its curves were
    NaN/inf (those points are absent) and turns log where a loss blew up, linear where a value is zero.

    One figure redrawn for every trial: building its axes, ticks and legends is a third of a plot's
    cost, so it is done once. Fixed margins and no minor ticks: a constrained layout draws the figure
    twice, and log-scale minor ticks are most of what is left. Not thread-safe: one per drawing thread.
    """

    def __init__(self) -> None:
        self.figure = Figure(figsize=(16, 3.4))
        self.figure.subplots_adjust(left=0.04, right=0.99, bottom=0.16, top=0.8, wspace=0.22)
        self._axes = self.figure.subplots(1, 4)
        self._lines: dict[str, Line2D] = {}
        for ax, (name, keys, scale) in zip(self._axes, PANELS):
            for key in keys:
                (self._lines[key],) = ax.plot([], [], marker="o", ms=3, label=key)
            ax.set(xlabel="epoch")
            ax.xaxis.set_major_locator(MaxNLocator(integer=True, min_n_ticks=1))
            ax.set_title(name, y=1.0, pad=6)  # a fixed position: placing it clear of the ticks costs a layout pass
            _set_yscale(ax, _yscale(scale, []))
            ax.legend(fontsize=8)
            ax.grid(alpha=0.3)
        self._title = self.figure.suptitle("")

    def draw(self, records: Sequence[Mapping[str, float]], title: str) -> Figure:
        """The figure, showing `records` (one dict per epoch) under `title`."""
        epochs = [r["epoch"] for r in records]
        for key, line in self._lines.items():
            line.set_data(epochs, [r[key] for r in records])
        for ax, (name, keys, scale) in zip(self._axes, PANELS):
            values = [r[k] for r in records for k in keys if math.isfinite(r[k])]  # NaN and inf stay absent
            zero = any(v <= 0 for v in values)
            ax.relim()  # first: a change of scale autoscales on the data limits
            _set_yscale(ax, _yscale(scale, values), values)
            ax.autoscale_view()
            ax.set_xlim(0.5, max(epochs, default=1) + 0.5)  # whole epochs, even for a trial stopped after one
            notes = ["linear: has zeros"] if zero and scale == "log" else []
            if bad := [r["epoch"] for r in records if not all(math.isfinite(r[k]) for k in keys)]:
                notes.append(f"NaN/inf from epoch {bad[0]}")
            ax.title.set_text(f"{name} ({'; '.join(notes)})" if notes else name)
        self._title.set_text(title)
        return self.figure


def _yscale(scale: str, values: Sequence[float]) -> str:
    """The y scale a panel draws `values` on: a log axis would hide a zero (a dead network's gradient, a
    schedule's last lr); `auto` is log only where the values span more than a decade."""
    positive = bool(values) and min(values) > 0
    if scale == "auto":
        return "log" if positive and max(values) > 10 * min(values) else "linear"
    return "linear" if values and not positive else scale


def _set_yscale(ax: Axes, scale: str, values: Sequence[float] = ()) -> None:
    """Give `ax` this y scale, log with labelled ticks at 1-2-5 steps (a range under a decade still reads;
    over more than three decades, as a loss or gradient that blew up spans, only powers of ten: matplotlib
    draws no tick at all for 1-2-5 steps there) and no minor ticks."""
    if ax.get_yscale() != scale:
        if scale == "linear":  # matplotlib asks the old locator for default limits, and a LogLocator warns
            ax.yaxis.set_major_locator(AutoLocator())
        ax.set_yscale(scale)
        ax.minorticks_off()
        if scale == "log":
            ax.yaxis.set_major_formatter(FormatStrFormatter("%.2g"))
    if scale == "log":
        wide = bool(values) and max(values) > 1e3 * min(values)
        ax.yaxis.set_major_locator(LogLocator(subs=(1.0,) if wide else (1.0, 2.0, 5.0)))


def plot_mode(tracking: Mapping[str, Any]) -> str:
    """`tracking.trial_plots` (default `flagged`), checked: one of TRIAL_PLOTS."""
    mode = tracking.get("trial_plots", "flagged")
    if mode not in TRIAL_PLOTS:
        raise ConfigError(f"tracking.trial_plots={mode!r} is unknown; choose one of: {', '.join(TRIAL_PLOTS)}")
    return mode


def wants_plot(mode: str, label: str) -> bool:
    """Whether a trial triaged as `label` gets its curve plot under `tracking.trial_plots=mode`."""
    return mode == "all" or (mode == "flagged" and label not in (HEALTHY, UNDETERMINED))

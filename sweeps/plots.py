"""The per-trial curve plot logged as `curves.png` on each child run."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from matplotlib.figure import Figure  # no pyplot: no global state, safe to draw off the main thread

PANELS = (
    ("loss", ("train_loss", "val_loss"), "linear"),
    ("accuracy", ("train_acc", "val_acc"), "linear"),
    ("gradient norm (pre-clip)", ("grad_norm", "grad_norm_max"), "log"),
    ("learning rate", ("lr",), "log"),
)


def curve_figure(records: Sequence[Mapping[str, float]], title: str) -> Figure:
    """Loss, accuracy, gradient norm and lr against epoch; non-finite points are simply absent."""
    fig = Figure(figsize=(16, 3.4), layout="constrained")
    axes = fig.subplots(1, 4)
    epochs = [r["epoch"] for r in records]
    for ax, (name, keys, scale) in zip(axes, PANELS):
        for key in keys:
            ax.plot(epochs, [r[key] for r in records], marker="o", ms=3, label=key)
        ax.set(title=name, xlabel="epoch", yscale=scale)
        ax.legend(fontsize=8)
        ax.grid(alpha=0.3)
    fig.suptitle(title)
    return fig


"""Which MLflow metric holds which canonical curve, where the project's config and the tracking store are by
default, and how a store's URL is printed (passwords masked)."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, fields
from pathlib import Path

_ROOT = Path(__file__).resolve().parents[1]
#: The Hydra config (`conf/`, shared by every entry point): `conf/` beside the packages in a checkout or an
#: editable install; an installed wheel carries it as `sweeps_triage_conf/` (a top-level `conf` would clash).
CONF_DIR = _ROOT / "sweeps_triage_conf" if (_ROOT / "sweeps_triage_conf").is_dir() else _ROOT / "conf"
_PASSWORD = re.compile(r"(?P<head>[a-zA-Z][\w+.-]*://[^:/@\s]*:)(?P<secret>[^@\s]+)(?P<tail>@)")


@dataclass(frozen=True)
class MetricNames:
    """MLflow metric name of each canonical curve; the defaults are the training core's names.

    An experiment logged by other code maps its own names, e.g.
    ``MetricNames(train_loss="loss", val_loss="val_loss", train_acc="accuracy", val_acc="val_accuracy")``.
    A name that a run does not have is simply absent from its curves.
    """

    train_loss: str = "train_loss"
    val_loss: str = "val_loss"
    train_acc: str = "train_acc"
    val_acc: str = "val_acc"
    grad_norm: str = "grad_norm"
    grad_norm_max: str = "grad_norm_max"
    clip_fraction: str = "clip_fraction"
    lr: str = "lr"

    def mapping(self) -> dict[str, str]:
        """MLflow metric name → canonical name."""
        return {getattr(self, f.name): f.name for f in fields(self)}


#: Canonical curve names the rules read (see ``triage.rules``).
CANONICAL: tuple[str, ...] = tuple(f.name for f in fields(MetricNames))


def default_tracking_uri() -> str:
    """``MLFLOW_TRACKING_URI`` if set, else ``sqlite:///$SWEEPS_HOME/mlflow.db`` (SWEEPS_HOME: ~/.sweeps)."""
    uri = os.environ.get("MLFLOW_TRACKING_URI")
    if uri:
        return uri
    home = Path(os.environ.get("SWEEPS_HOME") or Path.home() / ".sweeps").expanduser()
    return f"sqlite:///{home.resolve() / 'mlflow.db'}"


def mask(text: str) -> str:
    """`postgresql://user:secret@host/db` → `postgresql://user:***@host/db`, anywhere in `text`."""
    return _PASSWORD.sub(r"\g<head>***\g<tail>", text)

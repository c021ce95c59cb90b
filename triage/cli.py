"""Command line: ``python -m triage summarize --experiment NAME`` and ``python -m triage explain RUN_ID``.

Bad input (an unknown experiment or run, a tracking store that is missing or unreachable, loss names
that match no run's metrics, an --out that cannot be made) prints one line on stderr and exits with
status 2, before any run is tagged.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from .names import MetricNames, default_tracking_uri, mask

# A tracking server that does not answer should fail in seconds, not after MLflow's default
# retries with backoff (minutes); a user's own settings win.
os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "1")
os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "10")


def _names_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("metric names", "MLflow metric names of the canonical curves (defaults: the training core's)")
    for field in MetricNames.__dataclass_fields__:
        g.add_argument(f"--{field.replace('_', '-')}", dest=field, default=getattr(MetricNames(), field),
                       metavar="NAME", help=f"metric holding {field} (default: %(default)s)")


def _names(args: argparse.Namespace) -> MetricNames:
    return MetricNames(**{f: getattr(args, f) for f in MetricNames.__dataclass_fields__})


def parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="python -m triage", description="Triage the runs of an MLflow experiment.")
    sub = ap.add_subparsers(dest="command", required=True)
    s = sub.add_parser("summarize", help="classify every run, tag it, explain failures, write reports")
    s.add_argument("--experiment", required=True, help="MLflow experiment name (a sweep's study name)")
    s.add_argument("--tracking-uri", default=None,
                   help="default: $MLFLOW_TRACKING_URI, else sqlite:///$SWEEPS_HOME/mlflow.db (~/.sweeps)")
    s.add_argument("--out", type=Path, default=Path("."), help="directory for triage_summary.md/.html (default: .)")
    s.add_argument("--parent-run-id", default=None, help="only this sweep's child runs; reports are logged to it")
    s.add_argument("--no-write", action="store_true", help="classify and print only: no tags, no files")
    _names_args(s)
    e = sub.add_parser("explain", help="print one run's verdict with its evidence")
    e.add_argument("run_id", help="an MLflow run id, or its first characters (the reports show 8)")
    e.add_argument("--tracking-uri", default=None, help="default as for summarize")
    _names_args(e)
    return ap


def explain(run_id: str, tracking_uri: str | None, names: MetricNames) -> int:
    """Print one run's verdict, the curve statistics behind it, and the tags already on it."""
    import numpy as np
    from rich.console import Console

    from .features import curve_stats
    from .mlflow_io import client_for, read_with_siblings
    from .rules import classify_many
    from .thresholds import load_thresholds
    from .verdict import count_noun

    client = client_for(tracking_uri or default_tracking_uri())
    run, judged_with = read_with_siblings(client, run_id, names)
    th = load_thresholds()
    verdicts = classify_many([r.curves for r in judged_with], th, [r.meta() for r in judged_with])
    v = verdicts[[r.run_id for r in judged_with].index(run.run_id)]
    con = Console(soft_wrap=True)  # one line each, in logs too
    con.print(f"[bold]{run.label_name}[/] ({run.run_id}, {run.state})")
    if sampled := [k for k in run.tags.get("sweep.space", "").split(",") if k in run.params]:
        con.print("  " + "  ".join(f"{k}={_short(run.params[k])}" for k in sampled))
    con.print(f"[bold]{v.label}[/] (confidence {v.confidence:.2f}, rule {v.rule}): {v.reason}")
    for key, curve in run.curves.items():
        finite = curve[: int(np.argmin(np.isfinite(curve))) if not np.isfinite(curve).all() else len(curve)]
        s = curve_stats([finite], th)[0]
        if s is None:
            con.print(f"  {key:13s} {count_noun(len(curve), 'epoch'):>11s}, none finite")
            continue
        con.print(f"  {key:13s} {count_noun(s.n, 'epoch'):>11s}  first {s.start:.4g}  min {s.best:.4g} @ "
                  f"{s.best_i + 1}  max {s.peak:.4g} @ {s.peak_i + 1}  last {s.last:.4g}")
    for k, val in sorted(v.evidence.items()):
        con.print(f"  {k} = {val:.4g}" if isinstance(val, float) else f"  {k} = {val}")
    stored = {k: val for k, val in run.tags.items() if k.startswith("triage")}
    if stored:
        con.print("  tags on the run: " + ", ".join(f"{k}={val}" for k, val in sorted(stored.items())
                                                    if k != "triage.reason"))
    return 0


def _short(value: str) -> str:
    """A param as the sweep's trial lines print it: 4 significant digits for a number, else as logged."""
    try:
        return f"{float(value):.4g}"
    except ValueError:
        return value


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    from .mlflow_io import TriageError

    try:
        if args.command == "explain":
            return explain(args.run_id, args.tracking_uri, _names(args))
        from .summary import summarize

        summarize(args.experiment, args.tracking_uri, args.out, _names(args), args.parent_run_id,
                  write=not args.no_write)
        return 0
    except TriageError as e:
        print(f"triage: {mask(str(e))}", file=sys.stderr)
        return 2

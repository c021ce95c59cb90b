"""What the sweep tells its user: one line per trial, progress bars, and the closing report (counts,
the best trial with the command that trains it alone, where to look, triage's summary)."""

from __future__ import annotations

import shlex
from pathlib import Path
from typing import TYPE_CHECKING, Any

from optuna.trial import FrozenTrial, TrialState
from rich.console import Console
from rich.progress import (
    BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn,
)

from sweeps.budget import FINISHED, RETRY_ATTR, finished, interrupted
from sweeps.storage import mask
from training.config import TRIAL_GROUPS

if TYPE_CHECKING:
    from sweeps.driver import Sweep

console = Console(stderr=True, highlight=False, soft_wrap=True)


def progress() -> Progress:
    """Bars of trials (and epochs): done/total, elapsed, and the time left at the average pace so far."""
    return Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                    TextColumn("left"), TimeRemainingColumn(), console=console, transient=True,
                    speed_estimate_period=24 * 3600)  # fmt: skip


def trial_line(t: FrozenTrial, metric: str) -> str:
    """`trial   3  PRUNED    val_acc 0.1000    1.3s  optimizer.lr=4.6  (why it stopped)`."""
    params = params_text(t.params)
    value = f"{metric} {t.value:.4f}" if t.value is not None else t.user_attrs.get("triage", "")
    seconds = (t.datetime_complete - t.datetime_start).total_seconds() if t.datetime_complete and t.datetime_start else 0
    why = f"  ({t.user_attrs['error']})" if "error" in t.user_attrs else ""
    again = f"  (re-runs interrupted trial {t.user_attrs[RETRY_ATTR]})" if RETRY_ATTR in t.user_attrs else ""
    return f"trial {t.number:3d}  {t.state.name:8s}  {value:16s}  {seconds:6.1f}s  {params}{why}{again}"


def params_text(params: dict[str, Any]) -> str:
    """`key=value` per sampled value, 3 digits; an optional knob switched off reads `key=off`."""
    def text(k: str, v: Any) -> str | None:
        if k.endswith(".on"):  # on: its value follows under the knob's own key
            return None if v else f"{k.removesuffix('.on')}=off"
        return f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}"

    return "  ".join(t for k, v in params.items() if (t := text(k, v)) is not None)


def rerun_command(overrides: list[str], values: dict[str, Any]) -> str:
    """`python -m training fit ...` that trains a trial alone: the sweep's overrides of the training
    groups, then the trial's sampled values (`++`: `scheduler=none` has no `step_size` to override)."""
    keep = [o for o in overrides if _override_key(o).split(".")[0].split("/")[0] in TRIAL_GROUPS
            and _override_key(o) not in values]  # fmt: skip
    sampled = [f"++{k}={_hydra_value(v)}" for k, v in values.items()]
    return shlex.join(["python", "-m", "training", "fit", *keep, *sampled])


def _override_key(override: str) -> str:
    return override.split("=", 1)[0].lstrip("+~")


def _hydra_value(v: Any) -> str:
    if v is None:
        return "null"
    if isinstance(v, bool):
        return str(v).lower()
    if isinstance(v, list | tuple):
        return "[" + ",".join(_hydra_value(x) for x in v) + "]"
    return repr(v) if isinstance(v, float) else str(v)


def report_sweep(sw: Sweep, run_dir: Path, overrides: list[str]) -> None:
    """Best trial and the command that re-runs it, counts, where to look; then triage's summary."""
    study, job = sw.study, sw.job
    metric = job["sweep"]["objective"]["metric"]
    counts = {s.name: len(study.get_trials(deepcopy=False, states=(s,))) for s in FINISHED}
    cut = sum(interrupted(t) for t in study.get_trials(deepcopy=False, states=(TrialState.FAIL,)))
    console.print(f"study {study.study_name}: " + ", ".join(f"{n} {s.lower()}" for s, n in counts.items())
                  + (f" ({cut} interrupted, not counted toward sweep.n_trials)" if cut else ""))
    if counts["COMPLETE"]:
        best = study.best_trial
        console.print(f"best trial {best.number}: {metric} {best.value:.4f}  {params_text(best.params)}")
        if (values := sw.space.values_of(best.params)) is not None:
            command = rerun_command(overrides, values)
            console.print(f"re-run it: {command}")
            sw.tracker.client.set_tag(sw.parent_run_id, "sweep.best_rerun", command)
    elif sum(counts.values()):
        console.print("[yellow]no trial completed, so there is no best one; triage below says how the trials ended[/]")
    uri, storage = mask(job["tracking"]["uri"]), mask(job["sweep"]["storage"])
    if uri.startswith(("http://", "https://")):
        console.print(f"MLflow experiment '{study.study_name}':  {uri.rstrip('/')}/#/experiments/{sw.tracker.experiment_id}")
    else:
        console.print(f"MLflow experiment '{study.study_name}':  mlflow ui --backend-store-uri {uri}")
    if not storage.startswith("journal"):
        console.print(f"Optuna study '{study.study_name}':  optuna-dashboard {storage}")
    if finished(study):
        import triage

        triage.summarize(study.study_name, tracking_uri=job["tracking"]["uri"], out_dir=run_dir,
                         parent_run_id=sw.parent_run_id, study=study, console=console,
                         thresholds=triage.thresholds.thresholds_from_mapping(job["triage"]))  # fmt: skip

"""``summarize``: triage a whole experiment, write the verdicts back, explain the failures, report.

Steps: read every run and its curves in bulk → classify all of them at once → tag each run
(``triage``, ``triage.reason``, ``triage.confidence``, ``triage.version``) → fit the failure-region
rules over the trials' params → Optuna importances (when a study is given) → write
``triage_summary.md`` / ``triage_summary.html`` (+ plots) → log them to the sweep's parent run →
print a rich table. The ``Summary`` it returns holds everything the sweep's end report prints.
"""

from __future__ import annotations

import warnings
from collections import Counter
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from . import __version__
from .mlflow_io import RunRecord, TriageError, client_for, find_experiment, log_artifacts, read_runs, write_tags
from .names import MetricNames, default_tracking_uri
from .regions import Rule, failure_rules
from .rules import classify_many
from .thresholds import Thresholds, load_thresholds
from .verdict import FAILURE_LABELS, LABELS, UNDETERMINED, Verdict, count_noun


@dataclass
class EpochsSaved:
    """Epochs not trained because a trial was stopped early, per reason (``pruner``, ``diverging``).

    Needs each stopped trial's ``sweep.pruned_epoch`` tag and its ``train.epochs`` param (the plan).
    """

    by_reason: dict[str, int] = field(default_factory=dict)
    trials_by_reason: dict[str, int] = field(default_factory=dict)
    trained: int = 0     # epochs recorded over all runs
    planned: int = 0     # sum of train.epochs over the runs that have it
    at_end: int = 0      # trials stopped at their last epoch (e.g. online triage): PRUNED, nothing saved

    @property
    def total(self) -> int:
        return sum(self.by_reason.values())

    def __str__(self) -> str:
        late = f"{count_noun(self.at_end, 'trial')} stopped at the last epoch" if self.at_end else ""
        if not self.by_reason:
            return f"no epochs saved: {late}" if late else "no trial was stopped early"
        parts = [f"{n} by {reason} ({count_noun(self.trials_by_reason[reason], 'trial')})" for reason, n in sorted(self.by_reason.items())]
        share = f", {100 * self.total / self.planned:.0f}% of the {self.planned} planned" if self.planned else ""
        return f"{count_noun(self.total, 'epoch')} saved{share}: " + ", ".join(parts) + (f"; {late}" if late else "")


@dataclass
class Summary:
    """The result of ``summarize``: verdict per run, failure rules, importances, epochs saved, files."""

    experiment: str
    tracking_uri: str
    runs: list[RunRecord]
    verdicts: dict[str, Verdict]            # run id → verdict
    rules: list[Rule]
    importances: dict[str, float] | None
    epochs: EpochsSaved
    version: str
    parent_run_id: str | None = None
    files: list[Path] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def counts(self) -> dict[str, int]:
        c = Counter(v.label for v in self.verdicts.values())
        return {label: c[label] for label in LABELS if c[label]}

    def by_label(self) -> dict[str, list[RunRecord]]:
        out: dict[str, list[RunRecord]] = {}
        for r in self.runs:
            if r.run_id in self.verdicts:
                out.setdefault(self.verdicts[r.run_id].label, []).append(r)
        return {label: out[label] for label in LABELS if label in out}


def epochs_saved(runs: list[RunRecord]) -> EpochsSaved:
    """Sum over trials stopped early of ``train.epochs - sweep.pruned_epoch``, per ``sweep.pruned_reason``."""
    out = EpochsSaved()
    for r in runs:
        if r.is_parent:
            continue
        out.trained += max((len(c) for c in r.curves.values()), default=0)
        planned = _int(r.params.get("train.epochs"))
        if planned is not None:
            out.planned += planned
        stopped = _int(r.tags.get("sweep.pruned_epoch"))
        if stopped is None or planned is None:
            continue
        if stopped >= planned:  # stopped at its last epoch: nothing saved
            out.at_end += 1
            continue
        reason = r.tags.get("sweep.pruned_reason", "pruner")
        out.by_reason[reason] = out.by_reason.get(reason, 0) + planned - stopped
        out.trials_by_reason[reason] = out.trials_by_reason.get(reason, 0) + 1
    return out


def _int(v: str | None) -> int | None:
    try:
        return int(float(v)) if v is not None else None
    except ValueError:
        return None


def triage_tags(verdict: Verdict, thresholds: Thresholds | None = None) -> dict[str, str]:
    """The tags (and Optuna user attributes) that record a verdict on a run or trial."""
    th = thresholds or load_thresholds()
    return {
        "triage": verdict.label,
        "triage.reason": verdict.reason,
        "triage.confidence": f"{verdict.confidence:.2f}",
        "triage.version": version_string(th),
    }


def version_string(th: Thresholds) -> str:
    """``triage.version``: the package version and a hash of the thresholds the verdict used."""
    return f"{__version__}+{th.fingerprint()}"


def _importances(study: Any) -> tuple[dict[str, float] | None, str | None]:
    """Optuna's importances of the study's params, or a note why there are none. Where Optuna warns that
    it could only make them all equal (too few trials, one regime), they say nothing: a note instead."""
    import optuna

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            importances = dict(optuna.importance.get_param_importances(study))
        except Exception as e:  # no completed trials, a single param value, ...
            return None, f"no hyperparameter importances: {str(e).splitlines()[0]}"
    said = [str(w.message).splitlines()[0] for w in caught]
    equal = next((m for m in said if "importances will be equal" in m.lower()), None)
    if equal:
        return None, f"no hyperparameter importances: too few complete trials to rank the params (Optuna: {equal})"
    return importances, (f"hyperparameter importances are rough: {said[0]}" if said else None)


def summarize(
    experiment_name: str,
    tracking_uri: str | None = None,
    out_dir: Path | None = None,
    metric_names: MetricNames = MetricNames(),
    parent_run_id: str | None = None,
    study: Any = None,
    thresholds: Thresholds | None = None,
    write: bool = True,
    console: Any = None,
) -> Summary:
    """Triage every run of ``experiment_name`` and report (see the module docstring).

    Args:
        experiment_name: the MLflow experiment (the sweep's study name).
        tracking_uri: default ``MLFLOW_TRACKING_URI``, else ``sqlite:///$SWEEPS_HOME/mlflow.db``.
        out_dir: where the reports go (default: the current directory).
        metric_names: the experiment's metric names for the canonical curves.
        parent_run_id: only this sweep's children; reports are logged to it. By default the
            experiment's latest run tagged ``sweep.role=parent`` receives the reports, if any.
        study: an ``optuna.Study``: adds hyperparameter importances of its objective, and records
            each trial's verdict in the study's user attribute ``triage`` (a finished trial's own
            user attributes are read-only in Optuna; the sweep sets those as each trial ends).
        write: set the tags, write and log the reports (False: only compute).
        console: a ``rich.console.Console`` for the table (default: stdout; ``Console(quiet=True)``
            prints nothing).

    Raises:
        TriageError: unknown experiment or parent run, a tracking store that is missing or unreachable,
            loss names no run logs, or an ``out_dir`` that cannot be made (raised before any tag is written).
    """
    th = thresholds or load_thresholds()
    uri = tracking_uri or default_tracking_uri()
    out = Path(out_dir) if out_dir is not None else Path.cwd()
    client = client_for(uri)
    exp = find_experiment(client, experiment_name)
    runs = read_runs(client, exp.experiment_id, metric_names, parent_run_id)
    if parent_run_id is not None and parent_run_id not in {r.run_id for r in runs}:
        raise TriageError(f"no run {parent_run_id} in experiment {experiment_name!r}: pass the id of a sweep's parent "
                          "run (tag sweep.role = parent)")
    if write:  # after every check of the input, before any tag is written
        try:
            out.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise TriageError(f"cannot write the reports to {out} ({e.strerror}); pass another --out") from None
    children = [r for r in runs if not r.is_parent]
    verdict_list = classify_many([r.curves for r in children], th, [r.meta() for r in children])
    verdicts = {r.run_id: v for r, v in zip(children, verdict_list)}
    _name_reruns(children, verdicts)
    space = next((r.tags["sweep.space"] for r in children if r.tags.get("sweep.space")), None)
    # neither an interrupted trial (Ctrl-C, a dead process) nor one too short for a shape says anything of its params
    judged = [r for r in children
              if r.tags.get("sweep.failure") != "interrupted" and verdicts[r.run_id].label != UNDETERMINED]
    rules = failure_rules([r.params for r in judged], [verdicts[r.run_id].label for r in judged], FAILURE_LABELS, space)
    importances, note = _importances(study) if study is not None else (None, None)
    notes = [n for n in (_containers_note(runs), note) if n]
    parents = [r for r in runs if r.is_sweep_parent]
    parent = parent_run_id or (max(parents, key=lambda r: r.start_time).run_id if parents else None)
    summary = Summary(experiment_name, uri, children, verdicts, rules, importances, epochs_saved(children),
                      version_string(th), parent, notes=notes)
    if write:
        write_tags(client, {r.run_id: triage_tags(verdicts[r.run_id], th) for r in children})
        if study is not None:
            _record_in_study(study, children, verdicts)
        from .report import write_reports

        summary.files = write_reports(summary, out)
        if parent is not None:
            log_artifacts(client, parent, summary.files)
    from .report import print_table

    print_table(summary, console)
    return summary


def _containers_note(runs: list[RunRecord]) -> str | None:
    """Name the runs left unjudged because they only hold other runs (another tool's parent runs)."""
    held = [r.label_name for r in runs if r.is_parent and not r.is_sweep_parent]
    if not held:
        return None
    shown = ", ".join(held[:5]) + (f" and {len(held) - 5} more" if len(held) > 5 else "")
    return f"{count_noun(len(held), 'run')} that other runs nest under and that log no loss ({shown}): not judged"


def _name_reruns(runs: list[RunRecord], verdicts: dict[str, Verdict]) -> None:
    """An interrupted trial's evidence says which run repeated it (a resumed sweep's param ``sweep.retry_of``)."""
    again = {r.params["sweep.retry_of"]: r.label_name for r in runs if "sweep.retry_of" in r.params}
    for r in runs:
        if r.tags.get("sweep.failure") == "interrupted" and (name := again.get(str(r.trial))) is not None:
            v = verdicts[r.run_id]
            verdicts[r.run_id] = replace(v, reason=f"{v.reason.rstrip('.')}; run again as {name}.")


def _record_in_study(study: Any, runs: list[RunRecord], verdicts: dict[str, Verdict]) -> None:
    by_trial = {str(r.trial): verdicts[r.run_id].label for r in runs if r.trial is not None}
    if by_trial:
        study.set_user_attr("triage", by_trial)


__all__ = ["EpochsSaved", "Summary", "TriageError", "epochs_saved", "summarize", "triage_tags"]

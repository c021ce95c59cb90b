"""summarize / CLI against a real SQLite MLflow store, checked through MlflowClient."""

from __future__ import annotations

import math
import sys
import time
from pathlib import Path

import numpy as np
import pytest

mlflow = pytest.importorskip("mlflow")
from mlflow.entities import Metric, RunTag  # noqa: E402
from mlflow.tracking import MlflowClient  # noqa: E402

from triage import MetricNames, summarize  # noqa: E402
from tests.conftest import run_cli  # noqa: E402
from triage.mlflow_io import TriageError, build_curves  # noqa: E402

sys.path.insert(0, str(Path(__file__).parent / "fixtures" / "triage"))
from shapes import LN10, SHAPES  # noqa: E402


def _quiet():
    from rich.console import Console

    return Console(quiet=True)


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> str:
    """One SQLite store for the module (creating an MLflow database runs its migrations: seconds);
    every test uses its own experiment."""
    return f"sqlite:///{tmp_path_factory.mktemp('mlflow') / 'mlflow.db'}"


@pytest.fixture(scope="module")
def sweep_store(store: str) -> tuple[str, str, dict[str, str]]:
    """One sweep-shaped experiment shared by the tests that read it."""
    _, parent, expected = make_sweep(store)
    return store, parent, expected


def log_run(client: MlflowClient, exp_id: str, curves: dict, params: dict | None = None, tags: dict | None = None,
            status: str = "FINISHED", parent: str | None = None, omit_nonfinite: bool = True) -> str:
    """Log one run the way the sweep does: step = epoch from 1, non-finite points omitted and tagged."""
    tags = dict(tags or {})
    if parent:
        tags["mlflow.parentRunId"] = parent
    run = client.create_run(exp_id, tags=tags)
    rid = run.info.run_id
    ts = int(time.time() * 1000)
    metrics, bad = [], []
    for key, values in curves.items():
        for epoch, v in enumerate(values, start=1):
            if omit_nonfinite and not math.isfinite(v):
                bad.append(f"{key}@{epoch}")
                continue
            metrics.append(Metric(key, float(v), ts, epoch))
    extra = [RunTag("sweep.nonfinite", ",".join(bad))] if bad else []
    client.log_batch(rid, metrics=metrics, params=[mlflow.entities.Param(k, str(v)) for k, v in (params or {}).items()],
                     tags=extra)
    client.set_terminated(rid, status)
    return rid


def make_sweep(uri: str, name: str = "sweep") -> tuple[MlflowClient, str, dict[str, str]]:
    """A sweep-shaped experiment: trials with lr > 0.5 diverge, lr < 3e-3 plateau, others healthy."""
    client = MlflowClient(uri)
    exp = client.create_experiment(name)
    parent = client.create_run(exp, tags={"sweep.role": "parent"}).info.run_id
    rng = np.random.default_rng(0)
    expected = {}
    for trial, lr in enumerate(np.geomspace(1e-3, 5.0, 24)[rng.permutation(24)]):
        clip = "None" if trial % 2 else "1.0"
        tags = {"sweep.study": name, "sweep.trial": str(trial), "sweep.space": "optimizer.lr,train.clip_theta"}
        params = {"optimizer.lr": repr(float(lr)), "train.clip_theta": clip, "train.epochs": "12",
                  "optimizer.name": "sgd"}
        if lr > 0.5:
            curves = SHAPES["nonfinite"](12, LN10) if trial % 3 else SHAPES["dead"](12, LN10)
            if trial % 3:
                n = int(np.argmax(~np.isfinite(curves["train_loss"]))) + 1
                curves = {k: v[:n] for k, v in curves.items()}
                tags.update({"sweep.state": "FAIL", "sweep.failure": "nonfinite", "sweep.error": "loss is nan"})
                status = "FAILED"
            else:
                curves = {k: v[:4] for k, v in curves.items()}
                tags.update({"sweep.state": "PRUNED", "sweep.pruned_epoch": "4", "sweep.pruned_reason": "diverging"})
                status = "KILLED"
            label = "diverging"
        elif lr < 3e-3:
            curves, label, status = SHAPES["stuck"](12, LN10), "plateau", "FINISHED"
            tags["sweep.state"] = "COMPLETE"
        else:
            curves, label, status = SHAPES["healthy"](12, LN10), "healthy", "FINISHED"
            tags["sweep.state"] = "COMPLETE"
        rid = log_run(client, exp, curves, params, tags, status, parent)
        expected[rid] = label
    # a trial that ran out of memory before its first epoch, and one pruned by the pruner at epoch 3
    rid = log_run(client, exp, {}, {"optimizer.lr": "0.01", "train.clip_theta": "None", "train.epochs": "12"},
                  {"sweep.trial": "24", "sweep.state": "FAIL", "sweep.failure": "oom",
                   "sweep.error": "CUDA out of memory"}, "FAILED", parent)
    expected[rid] = "crashed"
    rid = log_run(client, exp, {k: v[:3] for k, v in SHAPES["stuck"](12, LN10).items()},
                  {"optimizer.lr": "0.0012", "train.clip_theta": "1.0", "train.epochs": "12"},
                  {"sweep.trial": "25", "sweep.state": "PRUNED", "sweep.pruned_epoch": "3",
                   "sweep.pruned_reason": "pruner"}, "KILLED", parent)
    expected[rid] = "plateau"
    client.set_terminated(parent, "FINISHED")
    return client, parent, expected


def test_summarize_tags_every_run_and_logs_reports(sweep_store, tmp_path: Path) -> None:
    store, parent, expected = sweep_store
    client = MlflowClient(store)
    s = summarize("sweep", store, tmp_path / "out", console=_quiet())
    assert {rid: v.label for rid, v in s.verdicts.items()} == expected
    exp = client.get_experiment_by_name("sweep")
    for rid, label in expected.items():
        tags = client.get_run(rid).data.tags
        assert tags["triage"] == label
        assert tags["triage.reason"] and float(tags["triage.confidence"]) > 0 and tags["triage.version"]
    # the MLflow UI filter works
    diverging = client.search_runs([exp.experiment_id], "tags.triage = 'diverging'")
    assert {r.info.run_id for r in diverging} == {rid for rid, lb in expected.items() if lb == "diverging"}
    # the parent is not triaged, but holds the reports
    assert "triage" not in client.get_run(parent).data.tags
    names = {Path(a.path).name for a in client.list_artifacts(parent, "triage")}
    assert {"triage_summary.md", "triage_summary.html", "triage_curves.png", "triage_regions.png"} <= names
    page = (tmp_path / "out" / "triage_summary.html").read_text()
    assert "data:image/png;base64," in page and "<script" not in page and 'src="http' not in page
    md = (tmp_path / "out" / "triage_summary.md").read_text()
    assert "diverging" in md and "optimizer.lr" in md


def test_planted_lr_threshold_is_recovered(sweep_store) -> None:
    store = sweep_store[0]
    s = summarize("sweep", store, write=False, console=_quiet())
    rules = [r for r in s.rules if r.label == "diverging"]
    assert rules, s.rules
    cond = [c for c in rules[0].conditions if c.param == "optimizer.lr"]
    assert cond and cond[0].op == ">" and 0.25 <= float(cond[0].value) <= 1.0
    assert rules[0].hits == rules[0].support == rules[0].label_total
    assert "cap optimizer.lr below" in rules[0].suggestion
    plateau = [r for r in s.rules if r.label == "plateau"]
    assert plateau and plateau[0].conditions[0].op == "<="
    assert float(plateau[0].conditions[0].value) < 0.01


def test_epochs_saved_per_reason(sweep_store) -> None:
    store = sweep_store[0]
    s = summarize("sweep", store, write=False, console=_quiet())
    stopped = [r for r in s.runs if r.tags.get("sweep.pruned_reason") == "diverging"]
    assert s.epochs.by_reason["diverging"] == sum(12 - 4 for _ in stopped) and stopped
    assert s.epochs.by_reason["pruner"] == 12 - 3
    assert "epochs saved" in str(s.epochs)


def test_epochs_saved_reads_in_plain_words() -> None:
    from triage.summary import EpochsSaved

    many = EpochsSaved(by_reason={"pruner": 1, "diverging": 16}, trials_by_reason={"pruner": 1, "diverging": 2}, planned=50)
    assert str(many) == "17 epochs saved, 34% of the 50 planned: 16 by diverging (2 trials), 1 by pruner (1 trial)"
    assert str(EpochsSaved(by_reason={"pruner": 1}, trials_by_reason={"pruner": 1})) == "1 epoch saved: 1 by pruner (1 trial)"
    assert str(EpochsSaved()) == "no trial was stopped early"


def test_a_trial_stopped_at_its_last_epoch_saved_nothing() -> None:
    from triage.mlflow_io import RunRecord
    from triage.summary import epochs_saved

    def run(stopped: int) -> RunRecord:
        tags = {"sweep.pruned_epoch": str(stopped), "sweep.pruned_reason": "diverging"}
        return RunRecord(f"r{stopped}", "", "KILLED", {"train.epochs": "6"}, tags, curves={"train_loss": np.ones(stopped)})

    # NaN in the last epoch: no epoch saved, but the PRUNED trial is accounted for (it read "no trial was stopped early")
    assert str(epochs_saved([run(6)])) == "no epochs saved: 1 trial stopped at the last epoch"
    assert str(epochs_saved([run(6), run(2)])) == ("4 epochs saved, 33% of the 12 planned: 4 by diverging (1 trial); "
                                                   "1 trial stopped at the last epoch")


def test_nonfinite_tag_and_real_nan_read_the_same(store: str) -> None:
    client = MlflowClient(store)
    exp = client.create_experiment("nan")
    curves = {"train_loss": [2.3, 2.0, float("nan")], "val_loss": [2.2, 2.1, float("inf")]}
    omitted = log_run(client, exp, curves)
    stored = log_run(client, exp, curves, omit_nonfinite=False)  # other code: NaN/inf in the history
    s = summarize("nan", store, write=False, console=_quiet())
    assert s.verdicts[omitted].label == s.verdicts[stored].label == "diverging"
    assert "epoch 3" in s.verdicts[omitted].reason and "epoch 3" in s.verdicts[stored].reason


def test_build_curves_puts_omitted_points_back() -> None:
    hist = {"train_loss": [(1, 0, 2.0), (2, 0, 1.5)], "val_loss": [(1, 0, 2.1), (2, 0, 1.7976931348623157e308)]}
    c = build_curves(hist, MetricNames(), "train_loss@3,val_auc@3")
    assert np.isnan(c["train_loss"][2]) and len(c["train_loss"]) == 3 and set(c) == {"train_loss", "val_loss"}
    assert np.isinf(c["val_loss"][1])


def test_per_batch_points_are_grouped_only_on_a_shared_step_axis() -> None:
    batches = [(s, 0, 3.0 - s / 100) for s in range(1, 101)]  # 100 batches, steps 1-100
    per_epoch = {"val_loss": [(s, 0, 3.0 - s / 100) for s in (25, 50, 75, 100)], "train_loss": batches,
                 "grad_norm_max": [(s, 0, float(s)) for s in range(1, 101)]}
    c = build_curves(per_epoch, MetricNames())
    assert np.allclose(c["train_loss"], [2.87, 2.62, 2.37, 2.12]) and np.allclose(c["grad_norm_max"], [25, 50, 75, 100])
    epochs_as_steps = {"val_loss": [(s, 0, 2.0) for s in (1, 2, 3, 4)], "train_loss": batches}  # step = epoch there
    assert len(build_curves(epochs_as_steps, MetricNames())["train_loss"]) == 100  # left as logged


def test_failed_run_without_curve_from_other_code_is_crashed(store: str) -> None:
    client = MlflowClient(store)
    exp = client.create_experiment("other")
    rid = log_run(client, exp, {}, status="FAILED")
    s = summarize("other", store, write=False, console=_quiet())
    assert s.verdicts[rid].label == "crashed"


def test_other_codes_parent_runs_are_not_judged_and_explain_names_them(store: str, tmp_path: Path,
                                                                      capsys: pytest.CaptureFixture) -> None:
    """Another tool's nested runs (a parent that only holds trials, as with MLflow's `nested=True`): the parent,
    with no loss of its own, was called `crashed` ("recorded no epoch"), and `explain` on it, or on a sweep's
    parent run, ended in a ValueError traceback. A parent that logs a loss curve of its own is judged."""
    from triage.cli import main

    client = MlflowClient(store)
    exp = client.create_experiment("nested")
    holder = client.create_run(exp, run_name="search").info.run_id
    client.log_param(holder, "study", "x")
    client.set_terminated(holder)
    trained = client.create_run(exp, run_name="cv").info.run_id  # a parent with a loss curve: e.g. the folds' mean
    client.log_batch(trained, metrics=[Metric("train_loss", 2.3 * 0.8 ** e, 0, e) for e in range(1, 9)])
    client.set_terminated(trained)
    kids = [log_run(client, exp, {"train_loss": [2.3 * (0.8 + 0.01 * i) ** e for e in range(8)]}, {"lr": str(i)},
                    parent=holder if i < 3 else trained) for i in range(5)]
    s = summarize("nested", store, tmp_path, console=_quiet())
    assert set(s.verdicts) == {trained, *kids}, s.verdicts
    assert s.notes == ["1 run that other runs nest under and that log no loss (search): not judged"]
    assert "triage" not in client.get_run(holder).data.tags
    assert client.get_run(trained).data.tags["triage"] == s.verdicts[trained].label
    sweep_parent = make_sweep(store, "nested-sweep")[1]
    for run, held in [(holder, 3), (sweep_parent, 26)]:
        capsys.readouterr()
        assert main(["explain", run[:8], "--tracking-uri", store]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith("triage: run "), err
        assert f"({run[:8]}) holds {held} runs and logs no loss of its own: explain one of them" in err[0], err
    assert main(["explain", kids[0][:8], "--tracking-uri", store]) == 0


def test_a_training_loss_logged_per_batch_is_read_per_evaluation(store: str) -> None:
    """Lightning logs training_step's loss per batch (step = global step) and validation per epoch; read step
    by step, the batches' noise made every run `oscillating`. Mean per evaluation interval, it reads as the
    epochs it is; a NaN mid-epoch still ends the run as diverging at that epoch."""
    client = MlflowClient(store)
    exp = client.create_experiment("per-batch")
    rng = np.random.default_rng(0)
    epochs, batches = 20, 100
    steps = np.arange(1, epochs * batches + 1)
    train = 2.3 * np.exp(-3 * steps / steps[-1]) * (1 + 0.15 * rng.standard_normal(len(steps)))
    evals = steps[batches - 1::batches]
    val = 2.35 * np.exp(-2.5 * evals / steps[-1])
    runs = {}
    for name, n_train, n_val, nan_from in [("healthy", len(steps), epochs, None), ("blew-up", 1450, 14, 1400)]:
        y = train[:n_train].copy()
        if nan_from:
            y[nan_from:] = math.nan
        rid = client.create_run(exp, run_name=name).info.run_id
        points = [Metric("train_loss", float(v), 0, int(st)) for st, v in zip(steps, y)]
        points += [Metric("val_loss", float(v), 0, int(st)) for st, v in zip(evals[:n_val], val[:n_val])]
        for i in range(0, len(points), 1000):
            client.log_batch(rid, metrics=points[i:i + 1000])
        client.set_terminated(rid)
        runs[name] = rid
    s = summarize("per-batch", store, write=False, console=_quiet())
    healthy, blew_up = s.verdicts[runs["healthy"]], s.verdicts[runs["blew-up"]]
    assert healthy.label == "healthy" and "over 20 epochs" in healthy.reason, healthy
    assert blew_up.label == "diverging" and blew_up.reason.startswith("train_loss became NaN at epoch 15"), blew_up


def _plain_logistic_regression_loop(uri: str, experiment: str, lr: float, epochs: int = 30, stepped: bool = True) -> str:
    """A training loop that knows nothing of this project: NumPy logistic regression, MLflow fluent API,
    Keras-style metric names (loss, accuracy, val_loss, val_accuracy); `stepped=False` logs without
    `step=` (MLflow stores step 0 for every point), a few milliseconds apart as epochs are."""
    mlflow.set_tracking_uri(uri)
    mlflow.set_experiment(experiment)
    rng = np.random.default_rng(1)
    x = rng.normal(size=(600, 5))
    y = (x @ np.array([2.0, -1.0, 0.5, 0, 1.5]) + rng.normal(size=600) > 0).astype(float)
    xt, yt, xv, yv = x[:400], y[:400], x[400:], y[400:]
    w = np.zeros(5)

    def loss(xs, ys):
        p = np.clip(1 / (1 + np.exp(-xs @ w)), 1e-12, 1 - 1e-12)
        return float(-np.mean(ys * np.log(p) + (1 - ys) * np.log(1 - p))), float(np.mean((p > 0.5) == ys))

    with mlflow.start_run() as run:
        for epoch in range(1, epochs + 1):
            for i in range(0, 400, 50):
                p = 1 / (1 + np.exp(-xt[i:i + 50] @ w))
                w -= lr * xt[i:i + 50].T @ (p - yt[i:i + 50]) / 50
            tl, ta = loss(xt, yt)
            vl, va = loss(xv, yv)
            mlflow.log_metrics({"loss": tl, "accuracy": ta, "val_loss": vl, "val_accuracy": va}, step=epoch if stepped else None)
            if not stepped:
                time.sleep(0.005)  # MLflow orders points by their millisecond timestamp
    return run.info.run_id


def test_metric_name_mapping_on_a_plain_loop(store: str, tmp_path: Path) -> None:
    rid = _plain_logistic_regression_loop(store, "plain", lr=0.05)
    names = MetricNames(train_loss="loss", val_loss="val_loss", train_acc="accuracy", val_acc="val_accuracy")
    s = summarize("plain", store, tmp_path, names, console=_quiet())
    assert s.verdicts[rid].label in ("healthy", "unconverged"), s.verdicts[rid].reason
    assert "loss" in s.verdicts[rid].reason
    # without the mapping the run has no train_loss curve: its only loss curve is val_loss
    s2 = summarize("plain", store, write=False, console=_quiet())
    assert s2.verdicts[rid].label != "crashed"
    assert MlflowClient(store).get_run(rid).data.tags["triage"] == s.verdicts[rid].label


def test_a_file_store_is_read_where_mlflow_allows_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                     capsys: pytest.CaptureFixture) -> None:
    """An old ./mlruns directory: MLflow 3 opens it only with MLFLOW_ALLOW_FILE_STORE=true. Without it triage
    printed MLflow's traceback; now one line says what to set, and with it the runs are read and tagged."""
    from triage.cli import main

    uri = (tmp_path / "mlruns").as_uri()
    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")
    rid = _plain_logistic_regression_loop(uri, "old-runs", lr=0.05, epochs=8)
    names = ["--train-loss", "loss", "--val-loss", "val_loss", "--train-acc", "accuracy", "--val-acc", "val_accuracy"]
    args = ["summarize", "--experiment", "old-runs", "--tracking-uri", uri, "--out", str(tmp_path / "out"), *names]
    monkeypatch.delenv("MLFLOW_ALLOW_FILE_STORE")
    capsys.readouterr()
    assert main(args) == 2
    assert capsys.readouterr().err.strip().splitlines() == [
        f"triage: {uri} is an MLflow file store, which MLflow 3 opens only with MLFLOW_ALLOW_FILE_STORE=true: set it, "
        "or copy the runs into SQLite (mlflow migrate-filestore --source DIR --target sqlite:///mlflow.db); "
        "check --tracking-uri"]
    assert not (tmp_path / "out").exists()
    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")
    assert main(args) == 0
    assert MlflowClient(uri).get_run(rid).data.tags["triage"] in ("healthy", "unconverged")
    assert (tmp_path / "out" / "triage_summary.md").exists()


def test_metrics_logged_without_step_read_in_logging_order(store: str) -> None:
    names = MetricNames(train_loss="loss", val_loss="val_loss", train_acc="accuracy", val_acc="val_accuracy")
    with_step = _plain_logistic_regression_loop(store, "no-step", lr=0.05, epochs=12)
    without = _plain_logistic_regression_loop(store, "no-step", lr=0.05, epochs=12, stepped=False)
    s = summarize("no-step", store, metric_names=names, write=False, console=_quiet())
    assert "over 12 epochs" in s.verdicts[with_step].reason
    assert s.verdicts[without].label == s.verdicts[with_step].label
    assert s.verdicts[without].reason == s.verdicts[with_step].reason


def test_cli_summarize_with_metric_flags_and_explain(store: str, tmp_path: Path,
                                                     capsys: pytest.CaptureFixture) -> None:
    rid = _plain_logistic_regression_loop(store, "plain-cli", lr=0.05)
    out = run_cli("triage", "summarize", "--experiment", "plain-cli", "--tracking-uri", store, "--out", str(tmp_path / "r"),
                  "--train-loss", "loss", "--val-loss", "val_loss", "--train-acc", "accuracy", "--val-acc", "val_accuracy",
                  cwd=tmp_path, timeout=120)  # fmt: skip
    assert out.returncode == 0, out.stderr
    assert (tmp_path / "r" / "triage_summary.html").exists()
    label = MlflowClient(store).get_run(rid).data.tags["triage"]
    assert label in out.stdout
    from triage.cli import main

    capsys.readouterr()
    assert main(["explain", rid, "--tracking-uri", store, "--train-loss", "loss", "--val-loss", "val_loss"]) == 0
    shown = capsys.readouterr().out
    assert label in shown and "train_loss" in shown and "confidence" in shown
    # the 8 characters the reports show are enough, as with git's commits
    assert main(["explain", rid[:8], "--tracking-uri", store, "--train-loss", "loss", "--val-loss", "val_loss"]) == 0
    assert f"({rid}, FINISHED)" in capsys.readouterr().out


def test_cli_bad_input_is_one_line_and_nonzero(store: str, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    from triage.cli import main

    rid = _plain_logistic_regression_loop(store, "plain-bad", lr=0.05, epochs=3)
    (tmp_path / "a-file").write_text("")
    cases = [
        ("summarize", "--experiment", "plain-bad", "--tracking-uri", store, "--parent-run-id", "0123456789abcdef"),
        ("summarize", "--experiment", "plain-bad", "--tracking-uri", store, "--out", str(tmp_path / "a-file" / "reports")),
        ("summarize", "--experiment", "nope", "--tracking-uri", store),
        ("summarize", "--experiment", "x", "--tracking-uri", f"sqlite:///{tmp_path / 'missing.db'}"),
        ("explain", "0123456789abcdef", "--tracking-uri", store),
        ("summarize", "--experiment", "x", "--tracking-uri", "http://127.0.0.1:9"),
        ("summarize", "--experiment", "x", "--tracking-uri", "http://user:secret@127.0.0.1:9"),
        # a database that does not answer: MLflow alone retried for 100 s, logging each try, then a traceback
        ("summarize", "--experiment", "x", "--tracking-uri", "postgresql://postgres:secret@127.0.0.1:1/none"),
        ("explain", "0123456789abcdef", "--tracking-uri", "mysql+pymysql://root:secret@127.0.0.1:1/none"),
    ]
    for args in cases:
        capsys.readouterr()
        assert main(list(args)) != 0, args
        err = capsys.readouterr().err
        lines = [ln for ln in err.strip().splitlines() if not ln.startswith("20")]  # mlflow logs
        assert len(lines) == 1 and lines[0].startswith("triage: "), (args, lines)
        assert "secret" not in err, err  # passwords are masked: user:***@host
        if "://root" in args[-1] or "://postgres" in args[-1]:
            assert lines == err.strip().splitlines() and "cannot open the MLflow database" in err, err
    assert not (tmp_path / "missing.db").exists()  # a missing store is reported, not created
    assert "triage" not in MlflowClient(store).get_run(rid).data.tags  # stopped before tagging
    out = run_cli("triage", "summarize", "--experiment", "nope", "--tracking-uri", store,
                  cwd=tmp_path, timeout=120)  # the real entry point
    assert out.returncode == 2 and out.stderr.strip().splitlines()[-1].startswith("triage: no experiment named")


def test_mistyped_loss_names_stop_before_any_run_is_tagged(store: str, tmp_path: Path,
                                                          capsys: pytest.CaptureFixture) -> None:
    """Names that match no run's loss would call every run crashed (and tag it so): one line instead."""
    from triage.cli import main

    rid = _plain_logistic_regression_loop(store, "plain-typo", lr=0.05, epochs=5)
    names = ["--tracking-uri", store, "--train-loss", "los", "--val-loss", "val_los"]
    for args in (["summarize", "--experiment", "plain-typo", "--out", str(tmp_path), *names], ["explain", rid, *names]):
        capsys.readouterr()
        assert main(args) == 2, args
        err = [ln for ln in capsys.readouterr().err.strip().splitlines() if not ln.startswith("20")]
        assert err == ["triage: no run logs a loss named 'los' or 'val_los'; the runs log accuracy, loss, val_accuracy, "
                       "val_loss: name the losses with --train-loss and --val-loss"], err  # fmt: skip
    assert "triage" not in MlflowClient(store).get_run(rid).data.tags
    assert not list(tmp_path.glob("triage_summary.*"))


def test_default_tracking_uri(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from triage.names import default_tracking_uri

    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.setenv("SWEEPS_HOME", str(tmp_path))
    assert default_tracking_uri() == f"sqlite:///{tmp_path.resolve() / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://example:5000")
    assert default_tracking_uri() == "http://example:5000"


def test_unknown_experiment_raises(store: str) -> None:
    client = MlflowClient(store)  # makes the store, so that the test also passes alone
    with pytest.raises(TriageError, match="no experiment named 'zzz'"):
        summarize("zzz", store, write=False, console=_quiet())
    client.delete_experiment(client.create_experiment("gone"))  # its runs are hidden: not "no runs to triage"
    with pytest.raises(TriageError, match=r"experiment 'gone' at .* was deleted; restore it first \(MLFLOW_TRACKING_URI="):
        summarize("gone", store, write=False, console=_quiet())


def test_markdown_notes_end_before_the_images(sweep_store) -> None:
    from triage.report import markdown

    s = summarize("sweep", sweep_store[0], write=False, console=_quiet())
    s.notes = ["no hyperparameter importances: too few trials"]
    md = markdown(s, {"curves by verdict": "triage_curves.png"})
    assert "- no hyperparameter importances: too few trials\n\n![curves by verdict](triage_curves.png)" in md  # not in the list


def test_interrupted_trials_make_no_failure_region(store: str) -> None:
    """Ctrl-C (or a dead process) ends whichever trials were running: that says nothing about their params."""
    client = MlflowClient(store)
    exp = client.create_experiment("interrupted")
    for trial, lr in enumerate(np.geomspace(1e-3, 0.1, 8)):
        tags = {"sweep.trial": str(trial), "sweep.space": "optimizer.lr", "sweep.state": "COMPLETE"}
        curves, status = SHAPES["healthy"](12, LN10), "FINISHED"
        if trial < 3:  # the lowest learning rates happened to be running
            tags.update({"sweep.state": "FAIL", "sweep.failure": "interrupted", "sweep.error": "interrupted by the user (Ctrl-C)"})
            curves, status = {k: v[:2] for k, v in curves.items()}, "FAILED"
        log_run(client, exp, curves, {"optimizer.lr": repr(float(lr)), "train.epochs": "12"}, tags, status)
    s = summarize("interrupted", store, write=False, console=_quiet())
    assert s.counts == {"crashed": 3, "healthy": 5} and s.rules == []


def test_runs_too_short_to_judge_are_undetermined_and_make_no_region(store: str, tmp_path: Path) -> None:
    """A trial pruned after its first epoch has no shape: it is `undetermined`, not `healthy` (a filter
    `tags.triage = 'healthy'` must not return it), and it is no evidence for or against a region."""
    from triage.report import _lines

    client = MlflowClient(store)
    exp = client.create_experiment("short")
    lrs = np.geomspace(1e-5, 1e-1, 10)
    for trial, lr in enumerate(lrs):
        tags = {"sweep.trial": str(trial), "sweep.space": "optimizer.lr", "sweep.state": "COMPLETE"}
        shape = "stuck" if trial < 4 else "healthy"
        curves = SHAPES[shape](12, LN10)
        if trial in (1, 2):  # the lowest lrs trail the median after epoch 1: pruned there
            curves = {k: v[:1] for k, v in curves.items()}
            tags.update({"sweep.state": "PRUNED", "sweep.pruned_epoch": "1", "sweep.pruned_reason": "pruner",
                         "sweep.error": "val_acc=0.1 at epoch 1 trails the other trials"})
        rid = log_run(client, exp, curves, {"optimizer.lr": repr(float(lr)), "train.epochs": "12"}, tags,
                      "KILLED" if trial in (1, 2) else "FINISHED")
        if trial == 2:
            pruned = rid
    s = summarize("short", store, console=_quiet(), out_dir=tmp_path)
    assert s.counts == {"plateau": 2, "undetermined": 2, "healthy": 6}, s.counts
    assert _lines(s)["counts"] == "2 plateau, 2 undetermined (too short to judge), 6 healthy"
    assert client.get_run(pruned).data.tags["triage"] == "undetermined"
    # the pruner's own words say more than "too short to judge" alone
    assert s.verdicts[pruned].reason.endswith("(stopped early by the pruner: val_acc=0.1 at epoch 1 trails the other trials).")
    # judged as healthy, the two pruned trials cut the plateau region to "2 of 4 trials", which is no rule at all
    assert [(r.label, r.hits, r.support) for r in s.rules] == [("plateau", 2, 2)], [str(r) for r in s.rules]
    assert str(s.rules[0]).startswith("optimizer.lr ≤ "), str(s.rules[0])


def test_explain_judges_a_run_with_its_sweep_as_summarize_does(store: str, tmp_path: Path,
                                                                capsys: pytest.CaptureFixture) -> None:  # fmt: skip
    """A trial pruned after one exploded epoch is diverging among its sweep's trials (rule `peers`);
    `explain` read it alone and said "too short to judge" while the run's tag said diverging."""
    from triage.cli import main

    client = MlflowClient(store)
    exp = client.create_experiment("exploded")
    parent = client.create_run(exp, tags={"sweep.role": "parent"}).info.run_id
    for trial in range(5):
        tags = {"sweep.trial": str(trial), "sweep.state": "COMPLETE"}
        curves = {"train_loss": [2.30, 2.1, 1.9], "val_acc": [0.15, 0.2, 0.25]}
        if trial == 4:  # lr 4.6 in a full sweep measured here: pruned at epoch 1
            tags.update({"sweep.state": "PRUNED", "sweep.pruned_epoch": "1", "sweep.pruned_reason": "pruner",
                         "sweep.space": "optimizer.lr,scheduler.name"})
            curves = {"train_loss": [78.0], "val_acc": [0.1]}
        params = {"train.epochs": "3", "optimizer.lr": repr(4.6 if trial == 4 else 0.01), "scheduler.name": "cosine"}
        rid = log_run(client, exp, curves, params, tags, "KILLED" if trial == 4 else "FINISHED", parent)
    log_run(client, exp, {"train_loss": [2.3]}, {}, {})  # another run of the experiment, outside the sweep
    s = summarize("exploded", store, parent_run_id=parent, out_dir=tmp_path, console=_quiet())
    assert s.verdicts[rid].label == "diverging" and s.verdicts[rid].rule == "peers"
    assert client.get_run(rid).data.tags["triage"] == "diverging"
    capsys.readouterr()
    assert main(["explain", rid[:8], "--tracking-uri", store]) == 0
    shown = capsys.readouterr().out.splitlines()
    assert shown[1] == "  optimizer.lr=4.6  scheduler.name=cosine", shown  # the sampled params, under the run's name
    verdict = shown[2]  # one line, in a log too (the default console wrapped it at 80 columns)
    assert verdict.startswith("diverging (confidence") and "rule peers" in verdict, shown
    assert verdict.endswith("the 5 runs judged with it (2.3): it blew up at the start."), shown
    assert any(line.startswith("  train_loss        1 epoch  first 78") for line in shown), shown


def test_cli_prints_each_rule_on_one_line_in_a_log(sweep_store, tmp_path: Path) -> None:
    """`python -m triage summarize ... > log` wrapped every rule at 80 columns, splitting it mid-word."""
    out = run_cli("triage", "summarize", "--experiment", "sweep", "--tracking-uri", sweep_store[0], "--no-write",
                  cwd=tmp_path, timeout=120)  # fmt: skip
    assert out.returncode == 0, out.stderr
    rule = next(line for line in out.stdout.splitlines() if "→ diverging" in line)
    assert "lower the learning rate or enable gradient clipping" in rule, out.stdout


def test_plots_show_what_the_verdicts_rest_on(store: str) -> None:
    """A one-param sweep's region plot had a y axis of random jitter, and the overfit panel only the
    training loss, which keeps falling: now the trials stand over their best val_acc (runs without one at
    the bottom) and the overfit panel draws the val_loss that turned up, dashed."""
    from triage.report import curves_figure, regions_figure

    client = MlflowClient(store)
    exp = client.create_experiment("plots")
    lrs = [1e-5, 3e-5, 0.02, 0.05, 3.0]
    for trial, (lr, shape) in enumerate(zip(lrs, ["stuck", "stuck", "overfit", "overfit", "nonfinite"])):
        curves = SHAPES[shape](12, LN10)
        if shape == "overfit":
            curves["val_acc"] = np.linspace(0.15, 0.3 + trial / 100, 12)  # learning: best at the end
        if shape == "nonfinite":
            del curves["val_acc"]  # went NaN before it was evaluated
        log_run(client, exp, curves, {"optimizer.lr": repr(lr)}, {"sweep.trial": str(trial), "sweep.space": "optimizer.lr"})
    s = summarize("plots", store, write=False, console=_quiet())
    assert [s.verdicts[r.run_id].label for r in sorted(s.runs, key=lambda r: r.trial)][:4] == ["plateau"] * 2 + ["overfit"] * 2
    ax = regions_figure(s).axes[0]
    assert ax.get_xlabel() == "optimizer.lr" and ax.get_ylabel() == "best val_acc (1 without one: at the worst end)"
    points = {(round(x, 6), round(y, 4)) for c in ax.collections for x, y in c.get_offsets()}
    assert {(0.02, 0.32), (0.05, 0.33), (1e-05, 0.1), (3.0, 0.1)} <= points, points  # NaN from the start: at the bottom
    overfit = next(a for a in curves_figure(s).axes if a.get_title().startswith("overfit"))
    assert overfit.get_ylabel() == "train_loss / val_loss (dashed)"
    dashed = [c for c in overfit.collections if c.get_linestyle()[0][1] is not None]  # (offset, dashes)
    assert len(dashed) == 1 and len(dashed[0].get_segments()) == 2
    rising = max(seg[:, 1][-1] / seg[:, 1].min() for seg in dashed[0].get_segments())
    assert rising > 1.1  # the val_loss drawn is the one that turned up

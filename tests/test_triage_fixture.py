"""Triage on the labeled real-curve fixture (tests/fixtures/triage/curves.json, made by generate.py):
CIFAR-10 runs of this project's training loop plus NumPy / scikit-learn runs of other shapes and
scales, each label verified by reading the curves."""

from __future__ import annotations

from collections import Counter

import pytest

import triage
from tests.fixtures.triage.load import load_runs

RUNS = load_runs()
VERDICTS = dict(zip((r["id"] for r in RUNS), triage.classify_many(
    [r["curves"] for r in RUNS], metas=[{"failure": r["failure"], "error": r["error"]} for r in RUNS])))


def test_fixture_is_large_and_covers_every_label() -> None:
    counts = Counter(r["label"] for r in RUNS)
    assert sum(1 for r in RUNS if r["source"] == "cifar10-convnet") >= 40
    assert set(counts) == set(triage.LABELS), counts
    assert any(len(r["curves"].get("train_loss", [])) >= 300 for r in RUNS)  # long runs
    assert any(r["curves"].get("train_loss") and r["curves"]["train_loss"][0] > 1e5 for r in RUNS)  # large scale
    assert any(r["curves"].get("train_loss") and 0 < r["curves"]["train_loss"][0] < 1e-3 for r in RUNS)  # tiny


@pytest.mark.parametrize("label", triage.LABELS)
def test_each_label_on_real_curves(label: str) -> None:
    runs = [r for r in RUNS if r["label"] == label]
    hits = [r["id"] for r in runs if VERDICTS[r["id"]].label == label]
    wrong = {r["id"]: (VERDICTS[r["id"]].label, VERDICTS[r["id"]].reason) for r in runs if r["id"] not in hits}
    assert len(hits) >= max(1, int(0.85 * len(runs))), wrong


def test_no_diverging_or_crashed_run_is_called_healthy_or_undetermined() -> None:
    """Among them d1 (1 epoch) and d2, x5 (2 epochs): too short for a shape, but they blew up."""
    bad = [r["id"] for r in RUNS if r["label"] in ("diverging", "crashed")
           and VERDICTS[r["id"]].label in ("healthy", "undetermined")]
    assert not bad


def test_macro_f1_meets_the_goal() -> None:
    from sklearn.metrics import f1_score

    truth = [r["label"] for r in RUNS]
    pred = [VERDICTS[r["id"]].label for r in RUNS]
    assert f1_score(truth, pred, average="macro") >= 0.95


def test_online_never_stops_a_real_run_that_is_not_diverging() -> None:
    for r in RUNS:
        if r["label"] in ("diverging", "crashed"):
            continue
        n = max((len(v) for v in r["curves"].values()), default=0)
        step = max(1, n // 60)  # long runs: every few epochs
        for k in range(1, n + 1, step):
            part = {name: v[:k] for name, v in r["curves"].items()}
            assert triage.online_verdict(part) is None, (r["id"], k)


def test_online_stops_real_diverging_runs_early() -> None:
    stopped = []
    for r in RUNS:
        if r["label"] != "diverging":
            continue
        n = len(r["curves"]["train_loss"])
        first = next((k for k in range(1, n + 1)
                      if triage.online_verdict({name: v[:k] for name, v in r["curves"].items()})), None)
        stopped.append((r["id"], first, n))
    assert sum(1 for _, first, _ in stopped if first is not None) >= len(stopped) // 2, stopped

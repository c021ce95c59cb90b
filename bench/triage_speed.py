"""Triage speed: classify 10,000 runs' curves in memory (goal ≤ 1 s) and summarize 1,000 runs from a
local SQLite MLflow store (goal ≤ 30 s), reading, tagging and reporting included.

    python bench/triage_speed.py [--runs 10000] [--store-runs 1000] [--epochs 30]

The curves are realistic shapes (healthy, plateau, overfit, diverging with NaN, dead, oscillating,
unconverged) at random scales with noise (1% train, 3% validation) and random lengths, so the grouping by length that
the vectorized statistics use gets no easy case. The store is built once in a temporary directory
the way the sweep logs (one ``log_batch`` per run, step = epoch).
"""

from __future__ import annotations

import argparse
import math
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np


def make_curves(n_runs: int, epochs: int, seed: int = 0) -> list[dict[str, np.ndarray]]:
    rng = np.random.default_rng(seed)
    runs = []
    for i in range(n_runs):
        n = int(rng.integers(max(3, epochs // 3), epochs + 1))
        u = np.arange(1, n + 1) / n
        level = float(np.exp(rng.uniform(-3, 5)))
        kind = i % 7
        if kind == 0:
            t, v = 0.15 + 0.85 * np.exp(-5 * u), 0.4 + 0.6 * np.exp(-5 * u)
        elif kind == 1:
            t = v = np.ones(n)
        elif kind == 2:
            t, v = 0.05 + 0.95 * np.exp(-4 * u), 0.5 + 0.5 * np.exp(-8 * u) + 0.8 * np.clip(u - 0.4, 0, None)
        elif kind == 3:
            t = 0.2 + 0.8 * np.exp(-5 * u)
            t[int(0.6 * n):] = np.nan
            v = t * 1.1
        elif kind == 4:
            t = np.ones(n)
            t[0] = 40
            v = np.ones(n)
        elif kind == 5:
            t = 0.7 + 0.25 * np.where(np.arange(n) % 2, 1, -1)
            v = t * 1.1
        else:
            t, v = 1 - 0.5 * u, 1.02 - 0.45 * u
        noise = np.exp(rng.normal(0, [[0.01], [0.03]], (2, n)))  # epoch-average train loss is smoother than val
        grad = np.full(n, 0.5) * noise[0]
        if kind == 4:
            grad[0] = 500.0  # the explosion that killed the network
        runs.append({"train_loss": level * t * noise[0], "val_loss": level * v * noise[1],
                     "val_acc": np.clip(0.9 - 0.5 * t / t[0], 0, 1), "grad_norm": grad})
    return runs


def bench_classify(n_runs: int, epochs: int) -> float:
    import triage

    runs = make_curves(n_runs, epochs)
    triage.classify_many(runs[:50])  # warm-up: thresholds loaded, imports done
    best = best_cpu = math.inf
    for _ in range(3):
        t, c = time.perf_counter(), time.process_time()
        verdicts = triage.classify_many(runs)
        best, best_cpu = min(best, time.perf_counter() - t), min(best_cpu, time.process_time() - c)
    counts: dict[str, int] = {}
    for v in verdicts:
        counts[v.label] = counts.get(v.label, 0) + 1
    lengths = len({len(r["train_loss"]) for r in runs})
    print(f"classify_many: {n_runs} runs ({epochs // 3}-{epochs} epochs, {lengths} distinct lengths) in {best:.3f} s "
          f"wall, {best_cpu:.3f} s CPU ({1e6 * best / n_runs:.0f} µs/run; best of 3)   labels: {counts}")
    return best


def build_store(uri: str, n_runs: int, epochs: int) -> None:
    from mlflow.entities import Metric, Param, RunTag
    from mlflow.tracking import MlflowClient

    client = MlflowClient(uri)
    exp = client.create_experiment("speed")
    parent = client.create_run(exp, tags={"sweep.role": "parent"}).info.run_id
    ts = int(time.time() * 1000)
    rng = np.random.default_rng(1)
    for i, c in enumerate(make_curves(n_runs, epochs, seed=1)):
        run = client.create_run(exp, tags={"mlflow.parentRunId": parent, "sweep.trial": str(i),
                                           "sweep.space": "optimizer.lr,train.l2"})
        metrics, bad = [], []
        for key, values in c.items():
            for epoch, value in enumerate(values, start=1):
                if math.isfinite(value):
                    metrics.append(Metric(key, float(value), ts, epoch))
                else:
                    bad.append(f"{key}@{epoch}")
        params = [Param("optimizer.lr", repr(float(10 ** rng.uniform(-4, 1)))),
                  Param("train.l2", repr(float(rng.uniform(0, 0.1)))), Param("train.epochs", str(epochs))]
        client.log_batch(run.info.run_id, metrics=metrics, params=params,
                         tags=[RunTag("sweep.nonfinite", ",".join(bad[:1]))] if bad else [])
        client.set_terminated(run.info.run_id, "FAILED" if bad else "FINISHED")


def bench_summarize(n_runs: int, epochs: int) -> float:
    from rich.console import Console

    import triage
    from triage.mlflow_io import client_for, read_runs
    from triage.names import MetricNames

    with tempfile.TemporaryDirectory() as tmp:
        uri = f"sqlite:///{Path(tmp) / 'mlflow.db'}"
        t = time.perf_counter()
        build_store(uri, n_runs, epochs)
        print(f"store: {n_runs} runs × ~{epochs} epochs × 4 metrics logged in {time.perf_counter() - t:.1f} s (setup)")
        client = client_for(uri)
        exp = client.get_experiment_by_name("speed")
        t = time.perf_counter()
        runs = read_runs(client, exp.experiment_id, MetricNames())
        read = time.perf_counter() - t
        points = sum(len(c) for r in runs for c in r.curves.values())
        print(f"read_runs: {len(runs)} runs, {points} metric points in {read:.2f} s")
        t, c = time.perf_counter(), time.process_time()
        s = triage.summarize("speed", uri, Path(tmp) / "out", console=Console(quiet=True))
        total, cpu = time.perf_counter() - t, time.process_time() - c
        print(f"summarize: {len(s.verdicts)} runs read, classified, tagged, reported in {total:.2f} s wall, "
              f"{cpu:.2f} s CPU (goal ≤ 30 s; includes importing MLflow's store, scikit-learn, matplotlib)  {s.counts}")
        t = time.perf_counter()
        out = subprocess.run([sys.executable, "-m", "triage", "summarize", "--experiment", "speed", "--tracking-uri",
                              uri, "--out", str(Path(tmp) / "cli")], capture_output=True, text=True)
        cli = time.perf_counter() - t
        print(f"python -m triage summarize (fresh process, imports included): {cli:.2f} s, exit {out.returncode}")
        return max(total, cli)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=10_000)
    ap.add_argument("--store-runs", type=int, default=1_000)
    ap.add_argument("--epochs", type=int, default=30)
    args = ap.parse_args()
    c = bench_classify(args.runs, args.epochs)
    s = bench_summarize(args.store_runs, args.epochs)
    print(f"\nRESULT classify {args.runs} runs: {c:.3f} s (goal ≤ 1 s) | summarize {args.store_runs} runs: "
          f"{s:.1f} s (goal ≤ 30 s)")


if __name__ == "__main__":
    main()

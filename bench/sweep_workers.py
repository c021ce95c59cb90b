"""What worker processes cost beyond their trials: `python -m sweeps run ... sweep.n_workers=K`.

    python bench/sweep_workers.py [--workers 2] [--trials 8] [--images 1000] [--epochs 2]

Runs the lr sweep (learning rate pinned to 0.01, so every trial trains alike; nothing pruned) with K
worker processes on the journal storage in a temporary SWEEPS_HOME, and prints the command's wall
time, the trials' own time (Optuna's start → complete, summed) and what is left per trial: process
start-up (importing torch, MLflow, scikit-learn), opening the stores, loading the cached data and
waiting. Needs CIFAR10_ROOT.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--trials", type=int, default=8)
    ap.add_argument("--images", type=int, default=1000)
    ap.add_argument("--epochs", type=int, default=2)
    args = ap.parse_args()

    import optuna

    home = Path(tempfile.mkdtemp(prefix="sweep-workers-"))
    overrides = ["+sweep=lr", f"sweep.n_trials={args.trials}", f"sweep.n_workers={args.workers}", "storage=journal",
                 f"train.epochs={args.epochs}", f"data.train_size={args.images}", "data.val_size=500",
                 "sweep.space.optimizer.lr.low=0.01", "sweep.space.optimizer.lr.high=0.010001",
                 "sweep.pruner.name=none", "sweep.online_triage=false", f"hydra.run.dir={home / 'run'}"]  # fmt: skip
    env = {**os.environ, "SWEEPS_HOME": str(home)}
    start = time.perf_counter()
    p = subprocess.run([sys.executable, "-m", "sweeps", "run", *overrides], env=env, capture_output=True, text=True)
    wall = time.perf_counter() - start
    if p.returncode != 0:
        sys.exit(p.stderr[-3000:])
    from sweeps.storage import open_storage

    study = optuna.load_study(study_name="lr", storage=open_storage(f"journal:///{home}/optuna.journal"))
    trials = study.get_trials(deepcopy=False)
    inside = sum((t.datetime_complete - t.datetime_start).total_seconds() for t in trials)
    span = (max(t.datetime_complete for t in trials) - min(t.datetime_start for t in trials)).total_seconds()
    workers = {t.user_attrs.get("worker") for t in trials}
    between = (span * args.workers - inside) / len(trials)  # a worker slot's time not spent in a trial
    print(f"{len(trials)} trials of {args.epochs} epochs × {args.images} images, {args.workers} workers "
          f"({len(workers)} processes ran them): command {wall:.1f} s, first trial start → last trial end "
          f"{span:.1f} s, trials {inside:.1f} s summed ({inside / len(trials):.1f} s each); between trials "
          f"{between:.1f} s per trial per worker slot ({100 * between / (between + inside / len(trials)):.0f}% "
          "of a slot's time)")


if __name__ == "__main__":
    main()

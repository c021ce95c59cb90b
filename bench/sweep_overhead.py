"""Cost of the sweep machinery: the same trials through the bare loop and through the sweep.

    python bench/sweep_overhead.py [--images 2000] [--epochs 3] [--trials 4] [--repeats 3] [--grow 0]

The sweep's bookkeeping is Optuna's SQLite storage with heartbeat (ask, suggest, one report + one
prune check per epoch, user attrs, tell) and MLflow's SQLite store (child run, params, one batched
log of the epochs so far at most every 5 s, tags, curve plot when triage flags the trial), plus
triage's online check and verdict.

1. End to end: for each learning rate of a fixed list, `training.fit` and one trial of the sweep,
   timed until its run is published, back to back in alternating order (ABBA); wall and CPU time
   (all threads) per pair, overall and as the median pair. On a shared 2-core machine this swings by
   ±10% from pair to pair, more than the effect measured.
2. Bookkeeping alone: the same trials through the sweep's objective, replaying the recorded epochs
   instead of training, so the noise of training is gone: milliseconds per trial on the main thread
   (what training waits for) and until its MLflow writes are done (the background thread's share
   overlaps training), as a share of the median bare trial.
3. With --grow N: N more replayed trials, the main thread's median per block of 25, to show whether
   the bookkeeping grows with the study (the pruner's check reads the study's trials each epoch).
Needs CIFAR10_ROOT; the stores live in a temporary SWEEPS_HOME.
"""

from __future__ import annotations

import argparse
import math
import os
import statistics
import tempfile
import time
from collections.abc import Callable, Mapping
from typing import Any

import optuna

UNLIMITED = 10**9  # the study's budget here: every replayed trial runs


def timed(f: Callable[[], object]) -> tuple[float, float]:
    """(wall seconds, CPU seconds of every thread of this process) spent in f()."""
    start, cpu = time.perf_counter(), time.process_time()
    f()
    return time.perf_counter() - start, time.process_time() - cpu


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", type=int, default=2000)
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--trials", type=int, default=4)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--grow", type=int, default=0, help="replay this many more trials, timed per block of 25")
    args = ap.parse_args()
    os.environ.setdefault("SWEEPS_HOME", tempfile.mkdtemp(prefix="sweep-overhead-"))

    from sweeps.budget import optimize_one
    from sweeps.driver import open_sweep
    from sweeps.objective import Objective
    from training import fit

    lrs = [0.003 * 2**i for i in range(args.trials)]
    overrides = ["+sweep=lr", f"train.epochs={args.epochs}", f"data.train_size={args.images}", "data.val_size=500",
                 "sweep.pruner.name=median", "sweep.pruner.n_startup_trials=1000"]  # checks run, nothing pruned
    sw, _ = open_sweep([*overrides, "sweep.study_name=overhead"])
    objective = sw.objective()
    data = objective.data(objective.trial_config({}))  # loaded once, shared by (a) and (b)
    recorded: dict[float, list[Mapping[str, float]]] = {}

    def bare(lr: float) -> None:
        recorded[lr] = fit(objective.trial_config({"optimizer.lr": lr}), data).records

    def swept(lr: float, obj: Objective = objective) -> None:
        sw.study.enqueue_trial({"optimizer.lr": lr})
        optimize_one(sw.study, obj, UNLIMITED, sw.lock)  # as the sweep starts a trial: under the study lock
        obj.close()  # its run published

    swept(lrs[0]), bare(lrs[0])  # warm-up: first-call costs (allocator, MLflow's schema) are not counted
    print(f"1. end to end, {args.epochs} epochs × {args.images} images per trial")
    pairs: list[tuple[float, float, float, float]] = []  # (bare wall, sweep wall, bare CPU, sweep CPU)
    for r in range(args.repeats):
        for i, lr in enumerate(lrs):
            if (r * len(lrs) + i) % 2 == 0:
                (bw, bc), (sw_, sc) = timed(lambda: bare(lr)), timed(lambda: swept(lr))
            else:
                (sw_, sc), (bw, bc) = timed(lambda: swept(lr)), timed(lambda: bare(lr))
            pairs.append((bw, sw_, bc, sc))
            print(f"   round {r} lr {lr:.3f}: bare {bw:6.2f}s sweep {sw_:6.2f}s {100 * (sw_ / bw - 1):+5.1f}%   "
                  f"CPU {bc:6.2f}s vs {sc:6.2f}s {100 * (sc / bc - 1):+5.1f}%")
    b, s, bc, sc = (sum(p[k] for p in pairs) for k in range(4))
    median = statistics.median(100 * (p[1] / p[0] - 1) for p in pairs)
    print(f"   {len(pairs)} pairs: wall bare {b:.1f}s sweep {s:.1f}s, overhead {100 * (s / b - 1):+.1f}% overall, "
          f"{median:+.1f}% median pair; CPU {bc:.1f}s vs {sc:.1f}s, {100 * (sc / bc - 1):+.1f}%")

    class Replay(Objective):
        """The sweep's objective with each trial's recorded epochs in place of training."""

        def _train(self, trial: optuna.Trial, values: Mapping[str, Any], run_id: str,
                   records: list[Mapping[str, float]]) -> float:  # fmt: skip
            value = math.nan
            for record in recorded[values["optimizer.lr"]]:
                value = self.after_epoch(trial, run_id, record, records, args.epochs)
            return value

    replay = Replay(sw.job, sw.space, sw.tracker, sw.parent_run_id, sw.typed)

    def replayed(lr: float) -> tuple[float, float]:
        """(ms on the main thread, ms until the trial's writes are done) of one replayed trial."""
        sw.study.enqueue_trial({"optimizer.lr": lr})
        start = time.perf_counter()
        optimize_one(sw.study, replay, UNLIMITED, sw.lock)
        main = 1000 * (time.perf_counter() - start)
        replay.close()
        return main, 1000 * (time.perf_counter() - start)

    main_ms, total_ms = zip(*(replayed(lr) for _ in range(args.repeats) for lr in lrs))
    assert all(t.state.name == "COMPLETE" for t in sw.study.trials)
    trial_ms = 1000 * statistics.median(p[0] for p in pairs)
    m, t = statistics.median(main_ms), statistics.median(total_ms)
    print(f"2. bookkeeping alone, median of {len(main_ms)} trials: {m:.0f} ms on the main thread "
          f"({100 * m / trial_ms:.1f}% of a {trial_ms / 1000:.2f}s bare trial), {t:.0f} ms until its writes are done "
          f"({100 * t / trial_ms:.1f}%)")
    for block in range(0, args.grow, 25):
        before = len(sw.study.trials)
        ms = [replayed(lrs[i % len(lrs)])[0] for i in range(min(25, args.grow - block))]
        print(f"3. trials {before}-{before + len(ms)} of the study: median {statistics.median(ms):.0f} ms on the main thread")


if __name__ == "__main__":
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    main()

"""Cost of the sweep machinery: the same trials through the bare loop and through the sweep.

    python bench/sweep_overhead.py [--images 2000] [--epochs 3] [--trials 4] [--repeats 2]

(a) `training.fit` on a fixed list of learning rates; (b) the same list through the sweep's
objective (Optuna SQLite storage with heartbeat, MLflow SQLite store: child run, params, one
batched log per epoch, report + prune check, online triage, verdict, curve plot when triage flags
the trial). Same data, loaded once before timing; (a) and (b) alternate `--repeats` times after one
uncounted warm-up round. Prints wall and CPU times (all threads) and the overhead of each.
Needs CIFAR10_ROOT; the stores live in a temporary SWEEPS_HOME.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time

import optuna


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", type=int, default=2000)
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--trials", type=int, default=4)
    ap.add_argument("--repeats", type=int, default=2)
    args = ap.parse_args()
    os.environ.setdefault("SWEEPS_HOME", tempfile.mkdtemp(prefix="sweep-overhead-"))

    from sweeps.driver import open_sweep
    from training import fit

    lrs = [0.003 * 2**i for i in range(args.trials)]
    overrides = ["+sweep=lr", f"train.epochs={args.epochs}", f"data.train_size={args.images}", "data.val_size=500",
                 "sweep.pruner.name=median", "sweep.pruner.n_startup_trials=1000"]  # checks run, nothing pruned
    bare_times, sweep_times, bare_cpu, sweep_cpu = [], [], [], []
    for r in range(args.repeats + 1):
        sw, _ = open_sweep([*overrides, f"sweep.study_name=overhead-{r}"])
        objective = sw.objective()
        configs = [objective.trial_config({"optimizer.lr": lr}) for lr in lrs]
        data = objective.data(configs[0])  # loaded once, shared by (a) and (b)

        start, cpu = time.perf_counter(), time.process_time()
        for cfg in configs:
            fit(cfg, data)
        bare, bare_c = time.perf_counter() - start, time.process_time() - cpu

        for lr in lrs:
            sw.study.enqueue_trial({"optimizer.lr": lr})
        start, cpu = time.perf_counter(), time.process_time()
        sw.study.optimize(objective, n_trials=len(lrs))
        objective.close()  # every run published
        swept, swept_c = time.perf_counter() - start, time.process_time() - cpu
        states = {t.state.name for t in sw.study.trials}
        label = " (warm-up, not counted)" if r == 0 else ""
        print(f"round {r}{label}: bare {bare:6.2f}s  sweep {swept:6.2f}s  overhead {100 * (swept / bare - 1):+5.1f}%  "
              f"(CPU {100 * (swept_c / bare_c - 1):+5.1f}%)  states {states}")
        if r > 0:
            bare_times.append(bare)
            sweep_times.append(swept)
            bare_cpu.append(bare_c)
            sweep_cpu.append(swept_c)
    b, s, n = sum(bare_times), sum(sweep_times), args.trials * args.repeats
    bc, sc = sum(bare_cpu), sum(sweep_cpu)
    print(f"{args.trials} trials × {args.epochs} epochs × {args.images} images, {args.repeats} rounds: "
          f"bare {b:.2f}s, sweep {s:.2f}s, overhead {100 * (s / b - 1):+.1f}% ({(s - b) / n:.2f}s per trial); "
          f"CPU time {bc:.1f}s vs {sc:.1f}s, {100 * (sc / bc - 1):+.1f}% ({(sc - bc) / n:.2f} CPU-s per trial)")


if __name__ == "__main__":
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    main()

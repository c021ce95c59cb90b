"""Epochs a sweep spends with and without pruning / online triage, on the same study definition.

    python bench/sweep_efficiency.py [--images 2000] [--val-images 5000] [--batch-size 64] [--epochs 10]
                                     [--trials 20] [--seeds 0 1 2] [--pruners none median successive_halving]
                                     [--pruners none median:n_startup_trials=3,n_warmup_steps=1]
                                     [--eval-batch-size 250] [--no-channels-last] [--trace]
                                     [--reference-cache FILE]

For each sampler seed, the lr sweep (TPE, the `lr` search space) runs once per pruner setting on
the same fixed CIFAR-10 subset and trial budget: `none` = no pruner and no online triage (the
reference), the others = that pruner + triage's online stop of diverging trials. Printed per run:
total epochs trained, wall time, best final val_acc, and the epochs spent until the study first came
within 0.5 point of the reference's best (the speed-up is the reference's own figure over it).
Needs CIFAR10_ROOT; stores live in a temporary SWEEPS_HOME. `--reference-cache FILE` keeps each seed's
reference outcome in a JSON file and reuses it while the settings, the code (conf/, sweeps/, training/)
and the torch build are the same: on one machine trial results are deterministic, so only the pruned
runs need to train again (another torch build, or another CPU, gives other figures).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import statistics
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import optuna
import torch

from training.config import TrainConfig


@dataclass
class Outcome:
    epochs: int
    seconds: float
    best: float
    epochs_to_target: int | None = None
    by_state: dict[str, int] | None = None


def run(pruner: str, seed: int, args: argparse.Namespace, target: float | None) -> Outcome:
    """One study; `target` is the val_acc to come within 0.5 point of (None: the study's own best)."""
    from sweeps.driver import open_sweep

    name, _, settings = pruner.partition(":")  # e.g. median:n_startup_trials=2,n_warmup_steps=1
    study = re.sub(r"[^\w.-]", "_", pruner)  # one study per setting, in a name Hydra's override parser takes
    overrides = [
        "+sweep=lr", f"sweep.study_name=eff-{study}-{seed}", f"sweep.sampler.seed={seed}",
        f"train.epochs={args.epochs}", f"data.train_size={args.images}", f"data.val_size={args.val_images}",
        f"train.batch_size={args.batch_size}", f"train.eval_batch_size={args.eval_batch_size}",
        f"train.channels_last={args.channels_last}",
        f"sweep.n_trials={args.trials}", f"sweep.pruner.name={name}", f"sweep.online_triage={name != 'none'}",
        *[f"sweep.pruner.{kv}" for kv in settings.split(",") if kv],
    ]  # fmt: skip
    sw, _ = open_sweep(overrides)
    epochs_done = 0
    trace: list[tuple[int, float]] = []  # (epochs spent so far, best final val_acc so far) after each trial

    def on_epoch(trial: optuna.Trial, record: dict) -> None:
        nonlocal epochs_done
        epochs_done += 1

    def after_trial(study: optuna.Study, t: optuna.trial.FrozenTrial) -> None:
        best = max([x.value for x in study.get_trials(states=(optuna.trial.TrialState.COMPLETE,))] or [0.0])
        trace.append((epochs_done, best))
        if args.trace:  # one line per trial: how the study got to its best
            value = "-" if t.value is None else f"{t.value:.4f}"
            last = max(t.intermediate_values.items(), default=(0, None))
            print(f"  {pruner} seed {seed} trial {t.number:2d} {t.state.name:8s} lr {t.params.get('optimizer.lr', 0):.3g} "
                  f"epochs {last[0]} last {last[1] if last[1] is None else round(last[1], 4)} value {value} "
                  f"spent {epochs_done} best {best:.4f}", flush=True)  # fmt: skip

    start = time.perf_counter()
    objective = sw.objective(on_epoch=on_epoch)
    sw.study.optimize(objective, n_trials=args.trials, catch=(Exception,), callbacks=[after_trial])
    objective.close()
    seconds = time.perf_counter() - start
    states: dict[str, int] = {}
    for t in sw.study.trials:
        states[t.state.name] = states.get(t.state.name, 0) + 1
    out = Outcome(epochs_done, seconds, trace[-1][1], by_state=states)
    goal = out.best if target is None else target
    out.epochs_to_target = next((e for e, b in trace if b >= goal - 0.005), None)
    return out


def reference(seed: int, args: argparse.Namespace) -> Outcome:
    """The unpruned study's outcome for `seed`: from `--reference-cache` when it holds this setting, else run."""
    root = Path(__file__).resolve().parent.parent
    code = hashlib.sha256()
    for f in sorted(p for d in ("conf", "sweeps", "training") for p in (root / d).rglob("*") if p.suffix in (".py", ".yaml")):
        code.update(f.read_bytes())
    code.update(f"{torch.__version__} {torch.backends.cpu.get_cpu_capability()}".encode())  # other kernels, other trials
    settings = f"{args.images}/{args.val_images}/{args.batch_size}/{args.epochs}/{args.trials}/{seed}"
    key = f"{settings}{'' if args.channels_last else '/nchw'}/{code.hexdigest()[:12]}"
    cache = Path(args.reference_cache) if args.reference_cache else None
    known = json.loads(cache.read_text()) if cache and cache.exists() else {}
    if key in known:
        print(f"seed {seed} none: reused from {cache}")
        return Outcome(**known[key])
    ref = run("none", seed, args, None)
    if cache:
        cache.write_text(json.dumps({**known, key: asdict(ref)}, indent=1))
    return ref


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", type=int, default=2000)
    ap.add_argument("--val-images", type=int, default=5000)  # 0.7-point standard error at 45%; 1,000 would be 1.6
    ap.add_argument("--batch-size", type=int, default=64)  # 1,000 images at 128 are 8 steps: too few to tell trials apart
    ap.add_argument("--epochs", type=int, default=10)  # the sweeps' trial length (conf/train)
    ap.add_argument("--trials", type=int, default=20)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--pruners", nargs="+", default=["none", "median"])  # median = the sweeps' default pruner
    ap.add_argument("--eval-batch-size", type=int, default=TrainConfig.eval_batch_size)
    ap.add_argument("--channels-last", action=argparse.BooleanOptionalAction, default=TrainConfig.channels_last)
    ap.add_argument("--trace", action="store_true", help="print every trial: state, lr, epochs, value")
    ap.add_argument("--reference-cache", help="JSON file that keeps the unpruned reference per seed and setting")
    args = ap.parse_args()
    os.environ.setdefault("SWEEPS_HOME", tempfile.mkdtemp(prefix="sweep-efficiency-"))
    optuna.logging.set_verbosity(optuna.logging.ERROR)

    speedups: dict[str, list[float]] = {p: [] for p in args.pruners if p != "none"}
    gaps: dict[str, list[float]] = {p: [] for p in speedups}
    for seed in args.seeds:
        ref = reference(seed, args)
        print(f"seed {seed} none              : {ref.epochs:4d} epochs {ref.seconds:6.0f}s best {ref.best:.4f} "
              f"target reached after {ref.epochs_to_target} epochs {ref.by_state}")  # fmt: skip
        for pruner in speedups:
            out = run(pruner, seed, args, ref.best)
            reach = out.epochs_to_target
            speed = ref.epochs_to_target / reach if reach else 0.0
            speedups[pruner].append(speed)
            gaps[pruner].append(100 * (ref.best - out.best))
            print(f"seed {seed} {pruner:18s}: {out.epochs:4d} epochs {out.seconds:6.0f}s best {out.best:.4f} "
                  f"target reached after {reach if reach else 'never'} epochs → {speed:.2f}x fewer "
                  f"(total {ref.epochs / out.epochs:.2f}x) {out.by_state}")  # fmt: skip
    for p in speedups:
        s, g = speedups[p], gaps[p]
        print(f"{p:18s}: epochs-to-target speed-up median {statistics.median(s):.2f}x (min {min(s):.2f}, max {max(s):.2f}); "
              f"best val_acc below the reference by {max(g):+.2f} points at worst")  # fmt: skip


if __name__ == "__main__":
    main()

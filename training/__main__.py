"""`python -m training fit [overrides]` trains one trial; `python -m training gradcheck [overrides]` checks gradients."""

from __future__ import annotations

import json
import sys

try:  # importing torch takes seconds: Ctrl-C meanwhile ends quietly
    import torch
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from training.compose import check_command, check_run_dir, compose, config_flag, config_text, write_run_dir
    from training.config import ConfigError, TrialConfig
    from training.data import load_data
    from training.errors import TrainingError, interruption, stop_cleanly_on_sigterm
    from training.gradcheck import DEFAULT_TOLERANCE, gradcheck
    from training.loop import fit, resolve_device, summarize_record
    from training.model import build_model
except KeyboardInterrupt:
    sys.exit(130)

USAGE = "usage: python -m training {fit,gradcheck} [hydra overrides, e.g. optimizer=adam train.epochs=5]"
HELP = """
  fit        train one trial of the composed config; metrics.jsonl in the run directory
  gradcheck  compare the model's autograd gradients (with the L1/L2 penalties) with finite differences

The config groups under conf/ (data, model, optimizer, scheduler, train, ...) take overrides such as
optimizer=adam optimizer.lr=1e-3 scheduler=cosine train.epochs=5 data.root=/path/to/cifar10;
--cfg job prints the composed config and exits."""
console = Console(stderr=True, highlight=False, soft_wrap=True)  # a line per epoch, unwrapped in logs too


def cmd_fit(overrides: list[str]) -> int:
    cfg = compose(overrides)
    trial = TrialConfig.from_omegaconf(cfg)
    check_run_dir(cfg)  # before minutes of decoding and training
    data = load_data(trial.data, resolve_device(trial.train.device))  # bad data fails before the run dir exists
    run_dir = write_run_dir(cfg)
    print(f"run directory: {run_dir}")
    with (
        open(run_dir / "metrics.jsonl", "w") as out,
        Progress(TextColumn("epoch {task.fields[epoch]}"), BarColumn(), MofNCompleteColumn(),
                 TimeElapsedColumn(), console=console, transient=True) as bar,
    ):  # fmt: skip
        task = bar.add_task("train", total=None, epoch=1)

        def on_batch(epoch: int, step: int, total: int) -> None:
            bar.update(task, completed=step, total=total, epoch=epoch)

        done = 0

        def on_epoch(record: dict[str, float]) -> None:
            nonlocal done
            out.write(json.dumps(record) + "\n")
            out.flush()
            done += 1
            bar.console.print(summarize_record(record))

        try:
            result = fit(trial, data, on_epoch, on_batch)
        except KeyboardInterrupt as e:  # Ctrl-C or SIGTERM
            what, status = interruption(e)
            print(f"{what} after {done} of {trial.train.epochs} epochs; they are in {run_dir / 'metrics.jsonl'}",
                  file=sys.stderr)  # fmt: skip
            return status
    if result.status != "completed":
        print(f"trial ended: {result.message}", file=sys.stderr)
        return 3
    best = max(r["val_acc"] for r in result.records)
    n = len(result.records)
    print(f"completed {n} epoch{'' if n == 1 else 's'}; best val_acc {best:.4f}; metrics in {run_dir / 'metrics.jsonl'}")
    return 0


def cmd_gradcheck(overrides: list[str]) -> int:
    trial = TrialConfig.from_omegaconf(compose(overrides))
    torch.manual_seed(trial.train.seed)
    model = build_model(trial.model.name)
    x, y = torch.randn(4, 3, 32, 32), torch.arange(4) % 10
    l1, l2 = trial.train.l1 or 1e-3, trial.train.l2 or 1e-3  # always exercise both penalty terms
    errors = gradcheck(model, x, y, l1=l1, l2=l2)
    for name, err in errors.items():
        print(f"{name:32s} max relative error {err:.2e}")
    worst = max(errors.values())
    ok = worst <= DEFAULT_TOLERANCE
    print(f"gradcheck {'passed' if ok else 'FAILED'}: worst {worst:.2e} (tolerance {DEFAULT_TOLERANCE:.0e}, l1={l1}, l2={l2})")
    return 0 if ok else 1


def main(argv: list[str]) -> int:
    stop_cleanly_on_sigterm()  # `kill`, a scheduler's time limit: stops as Ctrl-C does
    commands = {"fit": cmd_fit, "gradcheck": cmd_gradcheck}
    if {"-h", "--help"} & set(argv):
        print(f"{USAGE}\n{HELP}")
        return 0
    if not argv:
        print(USAGE, file=sys.stderr)
        return 2
    try:
        check_command(argv, "python -m training", list(commands))
        overrides, show = config_flag(argv[1:])
        if show:
            print(config_text(compose(overrides)), end="")
            return 0
        return commands[argv[0]](overrides)
    except (ConfigError, TrainingError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as e:  # Ctrl-C or SIGTERM while loading the data, say (fit says what it kept)
        what, status = interruption(e)
        print(what, file=sys.stderr)
        return status


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

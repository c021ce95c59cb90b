"""`python -m sweeps run +sweep=NAME [overrides]` runs (or resumes) a sweep; `worker` is internal."""

from __future__ import annotations

import sys

try:  # importing torch and MLflow takes seconds: Ctrl-C meanwhile (a worker starting, say) ends quietly
    from sweeps.driver import EXIT_STORE_LOST, SWEEPS, run, worker
    from sweeps.tracking import TrackingError
    from sweeps.workers import WorkerError
    from training.compose import check_command, compose, config_flag, config_text
    from training.config import ConfigError
    from training.errors import TrainingError, interruption, stop_cleanly_on_sigterm
    from triage.names import mask
except KeyboardInterrupt:
    sys.exit(130)

USAGE = f"usage: python -m sweeps run +sweep={{{','.join(SWEEPS)}}} [overrides, e.g. sweep.n_trials=50 train.epochs=5]"


HELP = """
Runs (or resumes: same command, same sweep.study_name) an Optuna study whose trials train and log to
MLflow, then triages them. Sweeps: conf/sweep/*.yaml; one of your own, DIR/sweep/NAME.yaml, with
'hydra.searchpath=[file://DIR]' +sweep=NAME. Overrides take the training groups (optimizer,
scheduler, train, data, ...), storage=sqlite|journal|postgres|mysql and sweep.* (n_trials, n_workers, pack,
pruner, sampler, ...), e.g.
  python -m sweeps run +sweep=full sweep.n_trials=100 sweep.n_workers=2 train.epochs=10 storage=journal
--cfg job prints the composed config and exits. Results: mlflow ui (the command is printed at the
end). README.md tells the rest."""


def main(argv: list[str]) -> int:
    stop_cleanly_on_sigterm()  # `kill`, a scheduler's time limit: stops as Ctrl-C does
    if {"-h", "--help"} & set(argv):
        print(f"{USAGE}\n{HELP}")
        return 0
    if not argv:
        print(USAGE, file=sys.stderr)
        return 2
    try:
        if argv[0] == "worker":  # internal: the processes sweep.n_workers starts
            return worker()
        check_command(argv, "python -m sweeps", ["run"])
        overrides, show = config_flag(argv[1:])
        if show:  # what the sweep would run with; nothing is opened or created
            print(config_text(compose(overrides)), end="")
            return 0
        return run(overrides)
    except (ConfigError, TrainingError) as e:
        print(f"error: {mask(str(e))}", file=sys.stderr)
        return 2
    except TrackingError as e:  # the store failed while the sweep opened it (already masked)
        print(f"error: {e}", file=sys.stderr)
        return EXIT_STORE_LOST
    except WorkerError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt as e:  # Ctrl-C or SIGTERM while starting or reporting (trials handle their own)
        what, status = interruption(e)
        if argv[0] != "worker":
            print(what, file=sys.stderr)
        return status


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

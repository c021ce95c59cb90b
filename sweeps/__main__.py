"""`python -m sweeps run +sweep=NAME [overrides]` runs (or resumes) a sweep; `worker` is internal."""

from __future__ import annotations

import sys

from sweeps.driver import SWEEPS, run, worker
from training.compose import mask
from training.config import ConfigError
from training.errors import TrainingError

USAGE = f"usage: python -m sweeps run +sweep={{{','.join(SWEEPS)}}} [overrides, e.g. sweep.n_trials=50 train.epochs=5]"


def main(argv: list[str]) -> int:
    if argv[:1] == ["worker"]:
        return worker()
    if argv[:1] != ["run"]:
        print(USAGE, file=sys.stderr)
        return 2
    try:
        return run(argv[1:])
    except (ConfigError, TrainingError) as e:
        print(f"error: {mask(str(e))}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

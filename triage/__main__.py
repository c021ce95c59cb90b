"""``python -m triage``: see ``triage.cli``."""

import sys

from .cli import main

sys.exit(main())

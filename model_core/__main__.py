"""`python -m model_core ...`: see model_core/cli.py."""

import sys

from model_core.cli import main

sys.exit(main())

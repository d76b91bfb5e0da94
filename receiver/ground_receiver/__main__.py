"""``python -m ground_receiver`` = ``ground-receiver``."""

import sys

from .cli import main

sys.exit(main())

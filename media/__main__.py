"""``python -m media``: the packaging command line."""

import sys

from .cli import main

sys.exit(main())

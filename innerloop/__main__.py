"""``python -m innerloop`` runs the CLI."""

import sys

from innerloop.cli import main

sys.exit(main())

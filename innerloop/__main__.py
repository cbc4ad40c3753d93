"""``python -m innerloop`` runs the CLI."""

import sys

from innerloop.cli import main

if __name__ == "__main__":
    sys.exit(main())

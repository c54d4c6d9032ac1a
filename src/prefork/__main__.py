"""``python -m prefork``: the same as the ``prefork`` command."""

import sys

from prefork.cli import main

if __name__ == "__main__":
    sys.exit(main())

"""Run the ``emucal`` command line as ``python -m emucal`` (see :mod:`emucal.cli`)."""

import sys

from emucal.cli import main

if __name__ == "__main__":
    sys.exit(main())

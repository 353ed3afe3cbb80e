"""Run a service by name: ``python -m services gateway`` (or ``check gateway`` to probe a running one)."""

import sys

from services.launcher import main

if __name__ == "__main__":
    sys.exit(main())

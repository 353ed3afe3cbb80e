"""``python -m raaf`` is the ``raaf`` command."""

import sys

from raaf.cli import main

sys.exit(main())

"""`python -m raaf.testing.openai_mock`: run the mock server from the command line."""

from shared.openai_mock.cli import main

raise SystemExit(main())

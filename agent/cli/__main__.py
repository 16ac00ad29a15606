"""`python -m agent.cli`: the healwatch command line."""

import sys

from agent.cli.main import main

sys.exit(main())

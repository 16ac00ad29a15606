"""``python3 -m examples.rollback``: a bad deploy, rolled back."""

import sys

from examples.rollback.scenario import main

sys.exit(main())

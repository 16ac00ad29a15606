"""``python3 -m examples.incident``: see it heal."""

import sys

from examples.incident.run import main

sys.exit(main())

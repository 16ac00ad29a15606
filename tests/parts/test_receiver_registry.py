"""The receiver registry imports a kind's module only when the config has a receiver of that kind (issue #14)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.timeout(60)

# A fresh interpreter: loads the whole agent, builds the receivers of the config, prints the receiver modules loaded.
SCRIPT = """
import json, sys
import agent.daemon
from agent.config import parse_config
from agent.notifying import build_receiver
config = parse_config(sys.argv[1], "agent.yaml")
built = [type(build_receiver(r, None)).__name__ for r in config.notify.receivers]
print(json.dumps({"built": built, "loaded": sorted(m for m in sys.modules if m.startswith("exporters.receivers."))}))
"""

ROUTE = "  route: {receiver: first}\n"


def loaded(config: str) -> dict[str, list[str]]:
    """What a fresh interpreter built and loaded for ``config``."""
    done = subprocess.run([sys.executable, "-c", SCRIPT, config], capture_output=True, text=True, timeout=50,
                          cwd=Path(__file__).parents[2], check=True)
    answer: dict[str, list[str]] = json.loads(done.stdout)
    return answer


def test_only_the_kinds_the_config_uses_are_imported() -> None:
    """A webhook-only config loads the webhook module alone; a config without receivers loads none."""
    webhook = loaded("notify:\n  receivers:\n    - {name: first, webhook: {url: 'http://127.0.0.1:9/h'}}\n"
                     + ROUTE)
    assert webhook == {"built": ["WebhookReceiver"], "loaded": ["exporters.receivers.webhook"]}
    nothing = loaded("notify: {}\n")
    assert nothing == {"built": [], "loaded": []}

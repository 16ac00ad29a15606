"""The command line stays light: `--version`, `--help` and the remote commands load neither the daemon,
numpy nor pydantic (each costs a start-up of its own: the whole process is what a user waits for)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from harness.processes import free_port

ROOT = Path(__file__).resolve().parents[2]
HEAVY = ("agent.daemon", "numpy", "pydantic")
# Runs one command in a fresh interpreter, then prints which of HEAVY it loaded.
PROBE = f"""
import sys
from agent.cli.main import main
try:
    main(sys.argv[1:])
except SystemExit:
    pass
print("loaded:", *[name for name in {HEAVY!r} if name in sys.modules])
"""


@pytest.mark.parametrize("command", [["--version"], ["--help"], ["status"], ["alerts"]])
def test_light_commands_load_neither_the_daemon_numpy_nor_pydantic(command: list[str]) -> None:
    """A fresh interpreter running the command (a remote one against a closed port) has none of them in sys.modules."""
    if command[0] in ("status", "alerts"):
        command = [*command, "--url", f"http://127.0.0.1:{free_port()}"]
    done = subprocess.run([sys.executable, "-c", PROBE, *command], capture_output=True, text=True, cwd=ROOT,
                          timeout=60, check=False)
    assert done.stdout.splitlines()[-1] == "loaded:", done.stdout + done.stderr

"""Where a benchmark's results go: one JSON file, its directory made when missing."""

from __future__ import annotations

import json
import signal
from collections.abc import Callable
from pathlib import Path
from typing import Any


def write_json(path: Path, results: Any) -> None:
    """Write ``results`` as indented JSON to ``path`` and say where."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(results, indent=2) + "\n")
    print(f"wrote {path}")


def run_and_write(
    name: str, measure: Callable[[], dict[str, Any]], output: Path, print_table: Callable[[dict[str, Any]], None]
) -> None:
    """Run ``measure`` (which stops its children in ``finally`` blocks), print and write its results.

    SIGTERM unwinds like Ctrl-C, so the children stop either way; an interruption or a RuntimeError
    ends the program with one line naming the benchmark instead of a traceback.
    """
    signal.signal(signal.SIGTERM, _exit_on_sigterm)
    try:
        results = measure()
    except KeyboardInterrupt:
        raise SystemExit(f"{name}: interrupted; every child process was stopped") from None
    except RuntimeError as exc:
        raise SystemExit(f"{name}: {exc}") from None
    print_table(results)
    write_json(output, results)


def _exit_on_sigterm(signum: int, frame: object) -> None:
    raise SystemExit(128 + signum)  # unwinds through the finally blocks that stop the children

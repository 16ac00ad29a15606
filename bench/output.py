"""Where a benchmark's results go: one JSON file, its directory made when missing."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any


def write_json(path: Path, results: Any) -> None:
    """Write ``results`` as indented JSON to ``path`` and say where."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(results, indent=2) + "\n")
    print(f"wrote {path}")

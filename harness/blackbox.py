"""The real blackbox_exporter on a loopback port, with the modules a test gives it, for probe oracles."""

from __future__ import annotations

import contextlib
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import yaml
from prometheus_client.parser import text_string_to_metric_families

from harness.processes import free_port, require_binary, stop, wait_for


@contextlib.contextmanager
def blackbox_exporter(directory: Path, modules: dict[str, Any]) -> Iterator[str]:
    """Run prometheus-blackbox-exporter with ``modules`` (its config's ``modules:``); yield its base URL."""
    binary = require_binary("prometheus-blackbox-exporter")
    config = directory / "blackbox.yml"
    config.write_text(yaml.safe_dump({"modules": modules}))
    port = free_port()
    process = subprocess.Popen([binary, f"--config.file={config}", f"--web.listen-address=127.0.0.1:{port}"],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_for(lambda: httpx.get(f"{url}/-/healthy", timeout=1).status_code == 200, timeout_s=10)
        yield url
    finally:
        stop(process)


def probe(url: str, module: str, target: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """One probe through blackbox_exporter: each sample's (name, sorted labels) -> value."""
    text = httpx.get(f"{url}/probe", params={"module": module, "target": target}, timeout=5).text
    return {(sample.name, tuple(sorted(sample.labels.items()))): sample.value
            for family in text_string_to_metric_families(text) for sample in family.samples}

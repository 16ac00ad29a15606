"""Fixtures shared by several test modules (the throwaway coordination stores, from harness), and the tiers.

Each test file sits in the folder of its tier (unit, parts, e2e, oracle) and carries that tier's marker, so
``pytest tests/unit`` or ``pytest -m unit`` runs one tier; every tier but unit is also ``integration``.

Property tests draw the same examples on every run (hypothesis' ``derandomize``), so a CI run cannot fail
on an example no earlier run met; ``HYPOTHESIS_PROFILE=explore`` draws fresh ones.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from hypothesis import settings

from harness.stores import etcd_server, redis_server

__all__ = ["etcd_server", "redis_server"]

TIERS = ("unit", "parts", "e2e", "oracle")

settings.register_profile("ci", derandomize=True, database=None)
settings.register_profile("explore", derandomize=False)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        tier = Path(str(item.path)).parent.name
        if tier in TIERS:
            item.add_marker(tier)
            if tier != "unit":
                item.add_marker("integration")

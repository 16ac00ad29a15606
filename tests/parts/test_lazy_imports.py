"""What a process imports: the default-config agent, the CLI's quick commands and check config load only what they use."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from harness.agent import ROOT
from harness.processes import free_port

pytestmark = pytest.mark.timeout(60)

# Started on the built-in config, then stopped: which of these modules did it load?
START_DEFAULT_AGENT = """
import asyncio, json, sys
from agent.cli.main import DEFAULT_CONFIG_NAME, default_config_text
from agent.config import parse_config
from agent.daemon import Agent

async def main() -> list[str]:
    agent = Agent(parse_config(default_config_text(), DEFAULT_CONFIG_NAME), listen=sys.argv[1])
    await agent.start()
    try:
        return sorted(sys.modules)
    finally:
        await agent.stop()

print(json.dumps(asyncio.run(main())))
"""
# Backends, stores and probe kinds the built-in config has no use for.
UNUSED_BY_DEFAULT = (
    "redis", "healers.fleet.redis_store", "healers.fleet.etcd_store", "xmlrpc.client",
    "healers.backends.supervisor", "healers.backends.docker", "dns", "grpc",
)


# The CLI's main run in-process on the given arguments; sys.modules is printed to stderr at the end.
RUN_CLI = """
import json, sys
from agent.cli.main import main
try:
    main(sys.argv[1:])
except SystemExit:
    pass
finally:
    print("\\n" + json.dumps(sorted(sys.modules)), file=sys.stderr)
"""


def imported(*args: str) -> set[str]:
    """The modules ``healwatch ARGS`` imported (its exit status is not judged)."""
    done = subprocess.run([sys.executable, "-c", RUN_CLI, *args], cwd=ROOT, capture_output=True, text=True, timeout=30)
    return set(json.loads(done.stderr.splitlines()[-1]))


def test_the_default_config_agent_loads_no_unused_backend_store_or_probe(tmp_path: Path) -> None:
    """An agent started on the built-in config has not imported redis, etcd, supervisor, Docker, DNS or gRPC code."""
    done = subprocess.run(
        [sys.executable, "-c", START_DEFAULT_AGENT, f"127.0.0.1:{free_port()}"],
        cwd=tmp_path, capture_output=True, text=True, timeout=30,
    )
    assert done.returncode == 0, done.stderr
    modules = set(json.loads(done.stdout.splitlines()[-1]))

    assert "agent.daemon" in modules and "agent.healing" in modules
    assert sorted(modules & set(UNUSED_BY_DEFAULT)) == []


@pytest.mark.parametrize("args", [("--version",), ("--help",), ("status", "--url", "http://127.0.0.1:9"),
                                  ("alerts", "--url", "http://127.0.0.1:9")])
def test_quick_commands_import_neither_the_daemon_nor_numpy_nor_pydantic(args: tuple[str, ...]) -> None:
    """--version, --help and the remote reads stay clear of the daemon, numpy and pydantic; the first two of httpx too."""
    modules = imported(*args)

    assert "agent.cli.main" in modules
    assert sorted(modules & {"agent.daemon", "numpy", "pydantic"}) == []
    if args[0].startswith("--"):
        assert "httpx" not in modules


def test_check_config_parses_rules_without_the_evaluator() -> None:
    """check config on the tutorial's example parses its rule files without importing numpy or the PromQL engine."""
    modules = imported("check", "config", "examples/agent.yaml")

    assert "rules.promql.parser" in modules
    assert sorted(modules & {"numpy", "rules.promql.engine", "agent.daemon"}) == []

"""Real programs for tests and benchmarks: find them, give them a free port, wait for them, stop them."""

from __future__ import annotations

import asyncio
import os
import shutil
import socket
import subprocess
import time
from collections.abc import Callable
from typing import Any, TypeVar

import pytest

T = TypeVar("T")


def require_binary(name: str) -> str:
    """Path of a real program; skip the test if missing, or fail it under CI (HEALWATCH_REQUIRE_REAL_PARTS=1)."""
    path = shutil.which(name)
    if path is None:
        message = f"{name} is not installed (make system-deps installs it)"
        if os.environ.get("HEALWATCH_REQUIRE_REAL_PARTS"):
            pytest.fail(message)
        pytest.skip(message)
    return path


def free_port() -> int:
    """A loopback TCP port free at the time of asking."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for(condition: Callable[[], T | None], timeout_s: float = 10.0, interval_s: float = 0.05) -> T:
    """Poll ``condition`` until it returns something truthy; fail after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    last_error: Exception | None = None
    while time.monotonic() < deadline:
        try:
            result = condition()
        except Exception as exc:  # the condition may fail until the thing is up
            last_error = exc
        else:
            if result:
                return result
        time.sleep(interval_s)
    raise AssertionError(f"condition not met within {timeout_s}s (last error: {last_error!r})")


def stop(process: subprocess.Popen[bytes], timeout_s: float = 5.0) -> None:
    """Terminate a child process and reap it, killing it if it does not exit in time."""
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout_s)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout_s)


async def until(condition: Any, timeout_s: float = 10.0) -> None:
    """Await an async or plain condition, polling every 10 ms; fail after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = condition()
        if asyncio.iscoroutine(value):
            value = await value
        if value:
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"condition not met within {timeout_s}s")

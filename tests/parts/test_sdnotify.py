"""systemd's notification protocol against real unix datagram sockets: the notifier, the agent in
process (READY after the first host collection, a stuck loop stops the watchdog pings) and the
agent as a program (abstract socket, SIGTERM, a frozen process).

systemd itself cannot run here as PID 1, so these tests play its part: they bind the socket it
would bind, set the variables it would set, and read what arrives. tests/parts/test_systemd_unit.py
checks the unit file that asks systemd for all this.
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from agent.collectors.host import HostCollector
from agent.config import parse_config
from agent.daemon import Agent
from agent.sdnotify import SystemdNotifier
from harness.processes import free_port, stop, wait_for


class NotifySocket:
    """What systemd binds for a Type=notify service: records each datagram with its arrival time."""

    def __init__(self, address: str) -> None:
        self.address = address  # as in NOTIFY_SOCKET: a path, or "@name" for the abstract namespace
        self._socket = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self._socket.bind("\0" + address[1:] if address.startswith("@") else address)
        self._socket.settimeout(0.05)
        self.received: list[tuple[float, str]] = []
        self._lock = threading.Lock()
        self._closing = False
        # A thread of its own, so arrival times stay true while a test holds the agent's event loop.
        self._thread = threading.Thread(target=self._receive, daemon=True)
        self._thread.start()

    def _receive(self) -> None:
        while not self._closing:
            try:
                data = self._socket.recv(4096)
            except TimeoutError:
                continue
            with self._lock:
                self.received.append((time.monotonic(), data.decode()))

    def messages(self, line: str | None = None) -> list[tuple[float, str]]:
        with self._lock:
            return [(at, text) for at, text in self.received if line is None or line in text.splitlines()]

    def close(self) -> None:
        self._closing = True
        self._thread.join(2)
        self._socket.close()


@pytest.fixture
def notify_socket(tmp_path: Path) -> Iterator[NotifySocket]:
    receiver = NotifySocket(str(tmp_path / "notify.sock"))
    yield receiver
    receiver.close()


@pytest.fixture
def abstract_notify_socket() -> Iterator[NotifySocket]:
    receiver = NotifySocket(f"@healwatch-test-{uuid.uuid4().hex}")
    yield receiver
    receiver.close()


def test_notifier_sends_one_datagram_per_notification(notify_socket: NotifySocket) -> None:
    """READY with a status, WATCHDOG and STOPPING each arrive as one newline-separated datagram."""
    notifier = SystemdNotifier({"NOTIFY_SOCKET": notify_socket.address})
    assert notifier.ready("serving") and notifier.watchdog() and notifier.stopping()
    wait_for(lambda: len(notify_socket.messages()) == 3, timeout_s=5)
    assert [text for _, text in notify_socket.messages()] == ["READY=1\nSTATUS=serving", "WATCHDOG=1", "STOPPING=1"]
    notifier.close()


def test_notifier_reaches_an_abstract_socket(abstract_notify_socket: NotifySocket) -> None:
    """A NOTIFY_SOCKET starting with @ names the abstract namespace, as systemd passes it in containers."""
    notifier = SystemdNotifier({"NOTIFY_SOCKET": abstract_notify_socket.address})
    assert notifier.ready()
    wait_for(lambda: abstract_notify_socket.messages("READY=1"), timeout_s=5)
    notifier.close()


def test_notifier_without_systemd_does_nothing() -> None:
    """With no NOTIFY_SOCKET nothing is sent, no watchdog runs and nothing fails."""
    notifier = SystemdNotifier({"WATCHDOG_USEC": "1000000"})
    assert not notifier.enabled
    assert notifier.ready() is False and notifier.watchdog() is False
    asyncio.run(asyncio.wait_for(notifier.ping_watchdog(), 1))  # returns at once


def test_notifier_survives_a_vanished_socket(tmp_path: Path) -> None:
    """A socket that is gone makes a notification fail quietly, never raise into the agent."""
    notifier = SystemdNotifier({"NOTIFY_SOCKET": str(tmp_path / "gone.sock")})
    assert notifier.ready() is False


@pytest.mark.parametrize(
    ("environ", "interval_s"),
    [
        ({"WATCHDOG_USEC": "30000000"}, 15.0),
        ({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": "4242"}, 15.0),
        ({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": "1"}, None),
        ({"WATCHDOG_USEC": "0"}, None),
        ({"WATCHDOG_USEC": "soon"}, None),
        ({}, None),
    ],
)
def test_watchdog_interval_is_half_of_watchdog_usec_for_this_pid(environ: dict[str, str], interval_s: float | None) -> None:
    """The ping interval is half of WATCHDOG_USEC, and there is none when WATCHDOG_PID names another process."""
    notifier = SystemdNotifier({"NOTIFY_SOCKET": "/run/notify", **environ}, pid=4242)
    assert notifier.watchdog_interval_s == interval_s


def test_watchdog_pings_stop_while_the_loop_is_stuck(notify_socket: NotifySocket) -> None:
    """Pings come every half interval from the event loop, none while a callback holds it, and resume after."""
    notifier = SystemdNotifier({"NOTIFY_SOCKET": notify_socket.address, "WATCHDOG_USEC": "200000"})

    async def main() -> tuple[float, float]:
        pinging = asyncio.create_task(notifier.ping_watchdog())
        await asyncio.sleep(0.5)
        stuck_from = time.monotonic()
        time.sleep(1.0)  # a stuck loop: nothing else on it runs, the pings included
        stuck_until = time.monotonic()
        await asyncio.sleep(0.5)
        pinging.cancel()
        return stuck_from, stuck_until

    stuck_from, stuck_until = asyncio.run(main())
    pings = [at for at, _ in notify_socket.messages("WATCHDOG=1")]
    assert len([at for at in pings if at < stuck_from]) >= 4  # every 0.1 s
    assert not [at for at in pings if stuck_from + 0.05 < at < stuck_until]
    assert len([at for at in pings if at > stuck_until]) >= 3
    notifier.close()


def test_agent_is_ready_only_once_the_first_host_collection_landed(
    notify_socket: NotifySocket, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The agent holds READY=1 while its first host collection is still running and sends it when it lands."""
    monkeypatch.setenv("NOTIFY_SOCKET", notify_socket.address)
    release = threading.Event()
    original = HostCollector.collect

    def slow_collect(self: HostCollector, now: float) -> object:
        release.wait(10)
        return original(self, now)

    monkeypatch.setattr(HostCollector, "collect", slow_collect)
    config = parse_config(f"listen: 127.0.0.1:{free_port()}\nstate_path: ':memory:'\n", "agent.yaml")

    async def main() -> None:
        agent = Agent(config)
        await agent.start()
        try:
            await asyncio.sleep(1.0)
            assert not notify_socket.messages("READY=1"), "READY before the host collection landed"
            release.set()
            async with asyncio.timeout(10):
                while not notify_socket.messages("READY=1"):
                    await asyncio.sleep(0.02)
            body, _, _ = await agent.exposition.response("text/plain", "")
            assert b"node_load1 " in body  # the host collection is what READY waited for
        finally:
            release.set()
            await agent.stop()

    asyncio.run(main())
    assert [text.splitlines()[0] for _, text in notify_socket.messages()] == ["READY=1", "STOPPING=1"]


def test_agent_watchdog_pings_stop_while_its_loop_is_stuck(
    notify_socket: NotifySocket, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With WatchdogSec=0.2s the agent pings every 0.1 s, stops while its event loop is held, then resumes."""
    monkeypatch.setenv("NOTIFY_SOCKET", notify_socket.address)
    monkeypatch.setenv("WATCHDOG_USEC", "200000")
    monkeypatch.setenv("WATCHDOG_PID", str(os.getpid()))
    config = parse_config(f"listen: 127.0.0.1:{free_port()}\nstate_path: ':memory:'\nhost: {{enabled: false}}\n",
                          "agent.yaml")

    async def main() -> tuple[float, float]:
        agent = Agent(config)
        await agent.start()
        try:
            await asyncio.sleep(0.6)
            stuck_from = time.monotonic()
            time.sleep(1.5)  # what a blocking call on the loop does: systemd would see no ping for 1.5 s
            stuck_until = time.monotonic()
            await asyncio.sleep(0.6)
        finally:
            await agent.stop()
        return stuck_from, stuck_until

    stuck_from, stuck_until = asyncio.run(main())
    pings = [at for at, _ in notify_socket.messages("WATCHDOG=1")]
    assert len([at for at in pings if at < stuck_from]) >= 4
    assert not [at for at in pings if stuck_from + 0.05 < at < stuck_until]
    assert len([at for at in pings if at > stuck_until]) >= 3
    assert notify_socket.messages("READY=1") and notify_socket.messages("STOPPING=1")


@pytest.mark.integration
def test_agent_program_notifies_an_abstract_socket_and_its_pings_stop_when_frozen(
    abstract_notify_socket: NotifySocket, tmp_path: Path
) -> None:
    """`healwatch run` as systemd starts it: READY=1, pings, none while SIGSTOPped, STOPPING=1 on SIGTERM."""
    env = {**os.environ, "NOTIFY_SOCKET": abstract_notify_socket.address, "WATCHDOG_USEC": "400000"}
    port = free_port()
    config = tmp_path / "agent.yaml"
    config.write_text(f"state_path: {tmp_path / 'state.db'}\n")
    started = time.monotonic()
    agent = subprocess.Popen(
        [sys.executable, "-m", "agent.cli", "run", "-c", str(config), "--listen", f"127.0.0.1:{port}"],
        env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )
    try:
        wait_for(lambda: abstract_notify_socket.messages("READY=1"), timeout_s=30)
        ready_after_s = abstract_notify_socket.messages("READY=1")[0][0] - started
        wait_for(lambda: len(abstract_notify_socket.messages("WATCHDOG=1")) >= 3, timeout_s=5)
        agent.send_signal(signal.SIGSTOP)
        frozen_from = time.monotonic()
        time.sleep(1.2)
        frozen_until = time.monotonic()
        agent.send_signal(signal.SIGCONT)
        wait_for(lambda: [at for at, _ in abstract_notify_socket.messages("WATCHDOG=1") if at > frozen_until],
                 timeout_s=5)
        pings = [at for at, _ in abstract_notify_socket.messages("WATCHDOG=1")]
        assert not [at for at in pings if frozen_from + 0.05 < at < frozen_until]
        stopping_at = time.monotonic()
        agent.send_signal(signal.SIGTERM)
        assert agent.wait(5) == 0
        assert time.monotonic() - stopping_at < 2.0
        assert abstract_notify_socket.messages("STOPPING=1")
    finally:
        stop(agent)
    print(f"READY=1 {ready_after_s:.2f}s after the start")

"""The durable outbox against a real local webhook receiver, with an injected clock for the long waits."""

from __future__ import annotations

import asyncio
import os
import signal
import sqlite3
import sys
import time
from pathlib import Path

import httpx
import pytest
import structlog
from aiohttp import web
from prometheus_client import CollectorRegistry
from structlog.testing import capture_logs

from agent.state import StateDB
from exporters.notification import AlertPayload, Notification
from exporters.outbox import MIGRATIONS, Backoff, Outbox, OutboxMetrics
from exporters.receivers.webhook import WebhookReceiver, WebhookSettings
from harness.receivers import Received, RecordingServer, run_with_receiver

pytestmark = pytest.mark.timeout(25)

T0 = 1_700_000_000.0
ROOT = Path(__file__).resolve().parents[2]


class Clock:
    def __init__(self, now: float = T0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def notification(group: str, seq: int, created_at: float = T0) -> Notification:
    alert = AlertPayload({"alertname": "Down", "group": group}, {"summary": f"{group} #{seq}"}, created_at - 60,
                         None, "", f"{seq:016x}")
    return Notification(id=f"{group}-{seq}", receiver="hook", group_key=f"{{}}:{{group=\"{group}\"}}",
                        group_labels={"group": group}, alerts=(alert,), created_at=created_at)


def ids_by_group(received: list[Received]) -> dict[str, list[str]]:
    groups: dict[str, list[str]] = {}
    for request in received:
        key = request.headers["Idempotency-Key"]
        groups.setdefault(key.split("-")[0], []).append(key)
    return groups


def outbox_for(db: StateDB, url: str, clock: Clock, **options: object) -> tuple[Outbox, CollectorRegistry]:
    db.migrate("outbox", MIGRATIONS)
    registry = CollectorRegistry()
    receiver = WebhookReceiver("hook", WebhookSettings(url=url + "/hook", timeout_s=5))
    outbox = Outbox(db.conn, {"hook": receiver}, clock=clock, random=lambda: 1.0, metrics=OutboxMetrics(registry),
                    log=structlog.get_logger(), **options)  # type: ignore[arg-type]
    return outbox, registry


async def drain(outbox: Outbox, client: httpx.AsyncClient) -> None:
    """Attempt whatever is due now until nothing is (bounded: each round settles or defers at least one)."""
    for _ in range(1000):
        if await outbox.deliver_due(client) == 0:
            return
    raise AssertionError("the outbox kept finding due notifications")


def test_receiver_down_then_up_delivers_all_once_in_order(tmp_path: Path) -> None:
    """While the receiver is down, heads retry at +1, +2, +4, +8 s (jitter at its ceiling); once up, all 5 arrive once, in group order."""
    db = StateDB(str(tmp_path / "state.db"))
    clock = Clock()

    async def scenario(server: RecordingServer, client: httpx.AsyncClient) -> None:
        outbox, registry = outbox_for(db, server.url, clock)
        await server.stop()
        outbox.enqueue([notification("a", 1), notification("b", 1), notification("a", 2), notification("a", 3),
                        notification("b", 2)])
        schedule = []
        for _ in range(4):
            await drain(outbox, client)
            next_at = outbox.next_attempt_at()
            assert next_at is not None
            schedule.append(next_at - clock.now)
            clock.now = next_at
        assert schedule == [1.0, 2.0, 4.0, 8.0]
        assert registry.get_sample_value("healwatch_notifications_total", {"receiver": "hook", "outcome": "retry"}) == 8
        await server.start()
        next_at = outbox.next_attempt_at()
        assert next_at is not None
        clock.now = next_at
        await drain(outbox, client)
        assert ids_by_group(server.received) == {"a": ["a-1", "a-2", "a-3"], "b": ["b-1", "b-2"]}
        assert outbox.pending() == 0 and outbox.next_attempt_at() is None
        assert registry.get_sample_value("healwatch_notifications_total", {"receiver": "hook", "outcome": "ok"}) == 5

    run_with_receiver(scenario)
    db.close()


def test_backoff_ceiling_doubles_up_to_its_maximum() -> None:
    """The ceiling doubles per retry from initial_s and stops at max_s."""
    backoff = Backoff(initial_s=1, max_s=300)
    assert [backoff.ceiling_s(n) for n in (1, 2, 3, 9, 10, 30)] == [1, 2, 4, 256, 300, 300]


def test_retry_delay_is_the_random_fraction_of_the_ceiling(tmp_path: Path) -> None:
    """Full jitter: a draw of 0 waits the 0.1 s floor; draws of 0.25 wait a quarter of the 2, 4, 8 s ceilings."""
    db = StateDB(str(tmp_path / "state.db"))
    clock = Clock()
    fractions = [0.25, 0.25, 0.25, 0.0]

    async def scenario(server: RecordingServer, client: httpx.AsyncClient) -> None:
        outbox, _ = outbox_for(db, server.url, clock)
        outbox.random = fractions.pop
        await server.stop()
        outbox.enqueue([notification("a", 1)])
        gaps = []
        for _ in range(4):
            await drain(outbox, client)
            next_at = outbox.next_attempt_at()
            assert next_at is not None
            gaps.append(round(next_at - clock.now, 6))
            clock.now = next_at
        assert gaps == [0.1, 0.5, 1.0, 2.0]

    run_with_receiver(scenario)
    db.close()


def test_429_retry_after_is_honoured(tmp_path: Path) -> None:
    """A 429 with Retry-After: 30 defers exactly 30 s: nothing at +29 s, delivered at +30 s."""
    db = StateDB(str(tmp_path / "state.db"))
    clock = Clock()
    answers = [web.Response(status=429, text="slow down", headers={"Retry-After": "30"})]

    async def scenario(server: RecordingServer, client: httpx.AsyncClient) -> None:
        outbox, _ = outbox_for(db, server.url, clock)
        outbox.enqueue([notification("a", 1)])
        await drain(outbox, client)
        assert outbox.next_attempt_at() == T0 + 30
        clock.now = T0 + 29
        assert await outbox.deliver_due(client) == 0
        clock.now = T0 + 30
        await drain(outbox, client)
        assert len(server.attempts) == 2 and len(server.received) == 1 and outbox.pending() == 0

    run_with_receiver(scenario, lambda received: answers.pop() if answers else web.Response(text="ok"))
    db.close()


def test_400_fails_at_once_and_reports_the_body(tmp_path: Path) -> None:
    """A 400 is attempted once, removed, counted as fail and logged with the receiver's body; the group moves on."""
    db = StateDB(str(tmp_path / "state.db"))
    clock = Clock()

    def handler(received: Received) -> web.Response:
        if received.headers["Idempotency-Key"] == "a-1":
            return web.Response(status=400, text="missing field: labels.team")
        return web.Response(text="ok")

    async def scenario(server: RecordingServer, client: httpx.AsyncClient) -> None:
        outbox, registry = outbox_for(db, server.url, clock)
        outbox.enqueue([notification("a", 1), notification("a", 2)])
        with capture_logs() as logs:
            await drain(outbox, client)
        assert [r.headers["Idempotency-Key"] for r in server.attempts] == ["a-1", "a-2"]
        refused = [e for e in logs if e["event"] == "notification refused by its receiver; not retrying"]
        assert refused[0]["error"] == "HTTP 400: missing field: labels.team" and refused[0]["log_level"] == "error"
        assert registry.get_sample_value("healwatch_notifications_total", {"receiver": "hook", "outcome": "fail"}) == 1
        assert outbox.pending() == 0

    run_with_receiver(scenario, handler)
    db.close()


def test_max_age_drops_counts_and_logs(tmp_path: Path) -> None:
    """With max_age 60 s and the receiver down, both notifications are dropped at +60 s, counted and logged as errors."""
    db = StateDB(str(tmp_path / "state.db"))
    clock = Clock()

    async def scenario(server: RecordingServer, client: httpx.AsyncClient) -> None:
        outbox, registry = outbox_for(db, server.url, clock, max_age_s=60.0)
        await server.stop()
        outbox.enqueue([notification("a", 1), notification("a", 2)])
        with capture_logs() as logs:
            while (next_at := outbox.next_attempt_at()) is not None:
                clock.now = next_at
                await drain(outbox, client)
        assert clock.now == T0 + 60
        dropped = [e for e in logs if e["event"] == "notification dropped"]
        assert len(dropped) == 2 and all(e["log_level"] == "error" for e in dropped)
        assert "ConnectError" in dropped[0]["last_error"]
        assert registry.get_sample_value("healwatch_notifications_dropped_total", {"receiver": "hook"}) == 2
        assert registry.get_sample_value("healwatch_outbox_pending") == 0

    run_with_receiver(scenario)
    db.close()


def test_enqueue_is_idempotent_per_id(tmp_path: Path) -> None:
    """Enqueueing a notification id twice (say, re-emitted after a restart) keeps one copy."""
    db = StateDB(str(tmp_path / "state.db"))
    outbox, _ = outbox_for(db, "http://127.0.0.1:9", Clock())
    assert outbox.enqueue([notification("a", 1), notification("a", 2)]) == 2
    assert outbox.enqueue([notification("a", 2), notification("a", 3)]) == 1
    assert outbox.pending() == 3
    db.close()


# The "agent": enqueues 20 notifications in 4 groups, starts delivering to a receiver that never answers.
KILLED_WRITER = """
import asyncio, sys
import httpx
from agent.state import StateDB
from exporters.notification import AlertPayload, Notification
from exporters.outbox import MIGRATIONS, Outbox
from exporters.receivers.webhook import WebhookReceiver, WebhookSettings

db = StateDB(sys.argv[1])
db.migrate("outbox", MIGRATIONS)
outbox = Outbox(db.conn, {"hook": WebhookReceiver("hook", WebhookSettings(url=sys.argv[2], timeout_s=60))})
outbox.enqueue(
    Notification(id=f"{g}-{i}", receiver="hook", group_key=g, group_labels={"g": g},
                 alerts=(AlertPayload({"alertname": "A", "g": g}, {}, 0.0, None, "", f"{i:016x}"),), created_at=0.0)
    for i in range(5) for g in "abcd"
)
print("enqueued", flush=True)

async def deliver():
    async with httpx.AsyncClient() as client:
        await outbox.deliver_due(client)

asyncio.run(deliver())
"""


def test_sigkill_with_pending_notifications_loses_none(tmp_path: Path) -> None:
    """An agent SIGKILLed mid-delivery leaves its outbox on disk; a new outbox on the file delivers all 20, in group order."""
    state = str(tmp_path / "state.db")

    async def main() -> None:
        release = asyncio.Event()

        async def hang(received: Received) -> web.Response:
            await release.wait()
            return web.Response(status=503)

        hanging = await RecordingServer(hang).start()
        receiver = await RecordingServer().start()
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-c", KILLED_WRITER, state, hanging.url + "/hook",
            stdout=asyncio.subprocess.PIPE, cwd=ROOT, env={**os.environ, "PYTHONPATH": os.pathsep.join(
                [str(ROOT), os.environ.get("PYTHONPATH", "")])},
        )
        try:
            assert process.stdout is not None
            async with asyncio.timeout(10):
                assert await process.stdout.readline() == b"enqueued\n"
            await hanging.wait_for(4, attempts=True)  # one in flight per group when the kill lands
            process.send_signal(signal.SIGKILL)
            assert await process.wait() == -signal.SIGKILL
            db = StateDB(state)
            outbox, _ = outbox_for(db, receiver.url, Clock(time.time()))
            assert outbox.pending() == 20
            async with httpx.AsyncClient() as client:
                await drain(outbox, client)
            db.close()
            expected = {g: [f"{g}-{i}" for i in range(5)] for g in "abcd"}
            assert ids_by_group(receiver.received) == expected
            in_flight = sorted(r.headers["Idempotency-Key"] for r in hanging.attempts)
            assert in_flight == ["a-0", "b-0", "c-0", "d-0"]  # at least once: these were sent again, same key
        finally:
            if process.returncode is None:
                process.kill()
                await process.wait()
            release.set()
            await hanging.stop()
            await receiver.stop()

    asyncio.run(main())


def test_backlog_is_due_at_once_when_the_receiver_answers_again(tmp_path: Path) -> None:
    """After an outage the first accepted notification makes the receiver's backlog due at that instant: group a,
    in backoff until +8 s, drains in order right after b-1 is accepted, without the clock moving."""
    db = StateDB(str(tmp_path / "state.db"))
    clock = Clock()

    async def scenario(server: RecordingServer, client: httpx.AsyncClient) -> None:
        outbox, _ = outbox_for(db, server.url, clock)
        await server.stop()
        outbox.enqueue([notification("a", 1), notification("a", 2)])
        for _ in range(4):
            await drain(outbox, client)
            clock.now = outbox.next_attempt_at() or 0.0
        await drain(outbox, client)  # a-1's 5th failure: next in 16 s
        outbox.enqueue([notification("b", 1), notification("b", 2)])
        await drain(outbox, client)  # b-1 fails once: next in 1 s
        clock.now = outbox.next_attempt_at() or 0.0
        await server.start()
        await drain(outbox, client)
        assert [r.headers["Idempotency-Key"] for r in server.received][:1] == ["b-1"]
        assert ids_by_group(server.received) == {"a": ["a-1", "a-2"], "b": ["b-1", "b-2"]}
        assert outbox.pending() == 0

    run_with_receiver(scenario)
    db.close()


def test_an_outcome_the_locked_database_refuses_is_recorded_later_not_resent(tmp_path: Path) -> None:
    """If another connection holds the write lock when an accepted notification is to be deleted, it is neither
    sent again nor overtaken by the next of its group; once the lock is released it is recorded and a-2 follows."""
    db = StateDB(str(tmp_path / "state.db"))
    db.conn.execute("PRAGMA busy_timeout=50")
    other = sqlite3.connect(db.path, isolation_level=None)

    def lock_then_accept(received: Received) -> web.Response:
        if received.headers["Idempotency-Key"] == "a-1":
            other.execute("BEGIN IMMEDIATE")
        return web.Response(text="ok")

    async def scenario(server: RecordingServer, client: httpx.AsyncClient) -> None:
        outbox, _ = outbox_for(db, server.url, Clock())
        outbox.enqueue([notification("a", 1), notification("a", 2)])
        with capture_logs() as logs:
            assert await outbox.deliver_due(client) == 1
        assert any(e["event"].startswith("delivery outcome not recorded") for e in logs)
        with pytest.raises(sqlite3.OperationalError):
            outbox.start_due(client)
        assert outbox.pending() == 2 and len(server.attempts) == 1
        other.rollback()
        await drain(outbox, client)
        assert [r.headers["Idempotency-Key"] for r in server.attempts] == ["a-1", "a-2"]
        assert outbox.pending() == 0

    run_with_receiver(scenario, lock_then_accept)
    other.close()
    db.close()

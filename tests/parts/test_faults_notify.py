"""The README's notification guarantees under real faults: nothing lost, order per (receiver, group) kept,
no receiver delayed by another beyond that one's deadline, across a SQLite write lock held by another
process, a full disk (a real tmpfs), a trickling and a hanging receiver, and a receiver outage."""

from __future__ import annotations

import asyncio
import errno
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from agent.config import parse_config
from agent.notifying import NOTIFY_MIGRATIONS, Notifying
from agent.state import StateDB
from healers.runner import Notice
from rules.model import Alert, AlertState, Labels
from harness.receivers import RecordingServer

pytestmark = pytest.mark.timeout(60)

CONFIG = """
notify:
  outbox: {{backoff_initial: 500ms, backoff_max: 5m}}
  receivers:
    - name: hook
      webhook: {{url: "{hook}/hook", timeout: 5s}}
  route:
    receiver: hook
    group_by: [alertname]
    group_wait: 0s
    group_interval: 1m
"""

# Holds SQLite's write lock on argv[1] until its stdin closes.
LOCK_HOLDER = """
import sqlite3, sys
conn = sqlite3.connect(sys.argv[1], isolation_level=None)
conn.execute("BEGIN IMMEDIATE")
print("locked", flush=True)
sys.stdin.read()
"""


def alert(name: str, now: float, *, resolved: bool = False) -> Alert:
    return Alert(Labels({"alertname": name}), {"summary": f"{name} {'ok' if resolved else 'down'}"}, 1.0,
                 AlertState.INACTIVE if resolved else AlertState.FIRING, active_at=now - 60, fired_at=now - 30,
                 resolved_at=now if resolved else None, valid_until=now + 240)


def notify_db(path: Path) -> StateDB:
    db = StateDB(str(path))
    for namespace, migrations in NOTIFY_MIGRATIONS.items():
        db.migrate(namespace, migrations)
    return db


async def until(condition: Callable[[], object], timeout_s: float = 20.0) -> None:
    """Wait (bounded) for the runtime, which runs on this event loop, to reach a state."""
    async with asyncio.timeout(timeout_s):
        while not condition():
            await asyncio.sleep(0.01)


def loop_errors(notifying: Notifying, loop: str) -> float:
    for family in notifying.families():
        for sample in family.samples:
            if sample.name == "healwatch_notification_loop_errors_total" and sample.labels == {"loop": loop}:
                return sample.value
    return 0.0


def flushed(notifying: Notifying, groups: int, after: float) -> Callable[[], bool]:
    """True once ``groups`` groups exist and each has flushed (its next flush is a group_interval away)."""
    def check() -> bool:
        assert notifying.dispatcher is not None
        state = notifying.dispatcher.state()
        return len(state) == groups and all(g.next_flush_at > after + 30 for g in state)
    return check


def nflog_rows(db: StateDB) -> int:
    return int(db.conn.execute("SELECT COUNT(*) FROM notification_log").fetchone()[0])


def test_a_write_lock_held_by_another_process_loses_no_notification(tmp_path: Path) -> None:
    """Groups flushed while another process holds the write lock past the busy timeout are neither lost nor
    logged as sent; once it lets go they are delivered in order, and later alerts still go out."""

    async def main() -> None:
        hook = await RecordingServer().start()
        db = notify_db(tmp_path / "state.db")
        db.conn.execute("PRAGMA busy_timeout=100")  # any lock held longer than the timeout fails the same way
        notifying = Notifying(parse_config(CONFIG.format(hook=hook.url), "agent.yaml"), db.conn)
        holder = await asyncio.create_subprocess_exec(sys.executable, "-c", LOCK_HOLDER, db.path,
                                                      stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE)
        await notifying.start()
        try:
            assert holder.stdout is not None and holder.stdin is not None
            async with asyncio.timeout(10):
                assert await holder.stdout.readline() == b"locked\n"
            now = time.time()
            notifying.on_alerts([alert("A", now)])
            await until(flushed(notifying, 1, now))
            notifying.on_alerts([alert("B", now)])
            await until(flushed(notifying, 2, now))
            await until(lambda: loop_errors(notifying, "dispatch") >= 1)
            assert hook.received == [] and nflog_rows(db) == 0  # the log says nothing was sent, truthfully
            holder.stdin.close()
            assert await holder.wait() == 0
            received = await hook.wait_for(2, timeout_s=20)
            assert sorted(r.json()["commonLabels"]["alertname"] for r in received) == ["A", "B"]
            notifying.on_alerts([alert("C", now)])
            await hook.wait_for(3, timeout_s=20)
            await until(lambda: notifying.outbox.pending() == 0)
            assert nflog_rows(db) == 3 and len(hook.received) == 3
        finally:
            if holder.returncode is None:
                holder.kill()
                await holder.wait()
            await notifying.stop()
            await hook.stop()
            db.close()

    asyncio.run(main())


@contextmanager
def small_disk(path: Path, size: str = "1m") -> Iterator[Path]:
    """A real tmpfs of ``size`` mounted at ``path`` (root only)."""
    path.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)],
                             capture_output=True, check=False)
    if mounted.returncode != 0:
        message = f"cannot mount a tmpfs: {mounted.stderr.decode().strip()}"
        if os.environ.get("HEALWATCH_REQUIRE_REAL_PARTS"):
            pytest.fail(message)
        pytest.skip(message)
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False)


def fill(disk: Path) -> Path:
    """Write a file until the filesystem is full; return it."""
    filler = disk / "filler"
    with filler.open("wb") as out:
        try:
            while True:
                out.write(b"\0" * 65536)
                out.flush()
        except OSError as exc:
            assert exc.errno == errno.ENOSPC
    return filler


@pytest.mark.integration
def test_a_full_disk_then_freed_delivers_everything_in_order(tmp_path: Path) -> None:
    """With the state database on a full tmpfs, flushes and notices wait in memory; once space is freed all
    are delivered, none lost, a group's firing before its resolved."""

    async def main() -> None:
        hook = await RecordingServer().start()
        with small_disk(tmp_path / "disk") as disk:
            db = notify_db(disk / "state.db")
            offset = [0.0]  # moves the agent's clock past a group_interval without waiting for it
            notifying = Notifying(parse_config(CONFIG.format(hook=hook.url), "agent.yaml"), db.conn,
                                  lambda: time.time() + offset[0])
            await notifying.start()
            try:
                now = time.time()
                notifying.on_alerts([alert("A", now)])
                await hook.wait_for(1)
                db.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")  # the next write needs new space
                filler = fill(disk)
                notifying.on_alerts([alert("B", now)])
                await until(flushed(notifying, 2, now))
                offset[0] = 61.0
                notifying.on_alerts([alert("B", now + 61, resolved=True)])
                notifying.notice(Notice("api", "inc-1", "warning", "restarted", now + 61))
                await until(lambda: loop_errors(notifying, "dispatch") >= 2)
                assert len(hook.received) == 1
                filler.unlink()
                received = await hook.wait_for(4, timeout_s=30)
                b = [r.json()["status"] for r in received if r.json()["commonLabels"].get("alertname") == "B"]
                assert b == ["firing", "resolved"]
                assert [r.json()["groupKey"] for r in received].count("healing:inc-1") == 1
                await until(lambda: notifying.outbox.pending() == 0)
                assert len(hook.received) == 4
            finally:
                await notifying.stop()
                db.close()
        await hook.stop()

    asyncio.run(main())


class StuckServer:
    """A raw TCP server on 127.0.0.1 that reads requests and never completes an answer: ``trickle`` sends
    headers, then a byte every 0.2 s (each within httpx's read timeout); otherwise it sends nothing.
    Records when each connection opened and when the client gave up on it."""

    def __init__(self, trickle: bool) -> None:
        self.trickle = trickle
        self.opened: list[float] = []
        self.closed: list[float] = []
        self._server: asyncio.Server | None = None

    @property
    def url(self) -> str:
        assert self._server is not None
        return f"http://127.0.0.1:{self._server.sockets[0].getsockname()[1]}"

    async def start(self) -> StuckServer:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        return self

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            self._server = None

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.opened.append(time.monotonic())
        try:
            await reader.readuntil(b"\r\n\r\n")
            if self.trickle:
                writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 100000\r\n\r\n")
            while True:
                if self.trickle:
                    writer.write(b"o")
                    await writer.drain()
                try:
                    async with asyncio.timeout(0.2):
                        if not await reader.read(65536):
                            return  # the client closed the connection: it gave up
                except TimeoutError:
                    pass
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            self.closed.append(time.monotonic())
            writer.close()


STUCK_CONFIG = """
notify:
  receivers:
    - name: healthy
      webhook: {{url: "{healthy}/hook", timeout: 5s}}
    - name: trickling
      webhook: {{url: "{trickling}/hook", timeout: 2s}}
    - name: hanging
      webhook: {{url: "{hanging}/hook", timeout: 2s}}
  route:
    receiver: healthy
    group_wait: 0s
    routes:
      - {{receiver: trickling, continue: true}}
      - {{receiver: hanging, continue: true}}
      - {{receiver: healthy}}
"""


def test_trickling_and_hanging_receivers_delay_no_other_receiver(tmp_path: Path) -> None:
    """Beside a receiver trickling a byte every 0.2 s and one that never answers, the healthy receiver gets
    all six notices of two incidents, each incident's in order, before either stuck attempt is given up;
    the stuck attempts are cut at their 2 s deadline and retried."""

    async def main() -> None:
        healthy = await RecordingServer().start()
        trickling, hanging = await StuckServer(trickle=True).start(), await StuckServer(trickle=False).start()
        db = notify_db(tmp_path / "state.db")
        config = parse_config(STUCK_CONFIG.format(healthy=healthy.url, trickling=trickling.url,
                                                  hanging=hanging.url), "agent.yaml")
        notifying = Notifying(config, db.conn)
        await notifying.start()
        try:
            now = time.time()
            for step in range(3):
                for incident in ("inc-1", "inc-2"):
                    notifying.notice(Notice("api", incident, "warning", f"step {step}", now))
            received = await healthy.wait_for(6, timeout_s=20)
            done_at = time.monotonic()
            for incident in ("inc-1", "inc-2"):
                steps = [r.json()["commonAnnotations"]["summary"] for r in received
                         if r.json()["groupKey"] == f"healing:{incident}"]
                assert steps == ["step 0", "step 1", "step 2"]
            # Two incidents: two attempts at once per stuck receiver, both cut, then retried.
            await until(lambda: all(len(s.closed) >= 2 and len(s.opened) >= 3 for s in (trickling, hanging)))
            for stuck in (trickling, hanging):
                assert done_at < stuck.closed[0]  # the healthy receiver never waited for a stuck one
                assert stuck.closed[0] - stuck.opened[0] < 2 + 3  # deadline 2 s, generous on a busy machine
        finally:
            await notifying.stop()
            for server in (healthy, trickling, hanging):
                await server.stop()
            db.close()

    asyncio.run(main())


def test_a_receiver_back_from_an_outage_gets_its_backlog_at_once(tmp_path: Path) -> None:
    """While the receiver is down its backlog backs off (0.5, 1, 2, 4 s); the first notification it accepts
    after coming back makes the backlog due at once, delivered in order before its old retry time."""

    async def main() -> None:
        hook = await RecordingServer().start()
        db = notify_db(tmp_path / "state.db")
        notifying = Notifying(parse_config(CONFIG.format(hook=hook.url), "agent.yaml"), db.conn,
                              random_fraction=lambda: 1.0)
        await hook.stop()
        await notifying.start()
        try:
            now = time.time()
            for step in range(3):
                notifying.notice(Notice("api", "inc-1", "warning", f"step {step}", now))
            await until(lambda: (db.conn.execute("SELECT MAX(attempts) FROM outbox").fetchone()[0] or 0) >= 4)
            retry_at = notifying.outbox.next_attempt_at()
            assert retry_at is not None and retry_at - time.time() > 2  # the old schedule: 4 s after the 4th
            await hook.start()
            notifying.notice(Notice("db", "inc-2", "warning", "new", time.time()))
            received = await hook.wait_for(4, timeout_s=20)
            assert time.time() < retry_at
            steps = [r.json()["commonAnnotations"]["summary"] for r in received if r.json()["groupKey"] == "healing:inc-1"]
            assert steps == ["step 0", "step 1", "step 2"]
        finally:
            await notifying.stop()
            await hook.stop()
            db.close()

    asyncio.run(main())

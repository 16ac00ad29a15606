"""Time intervals in the notification runtime (issue #18): muted routes send nothing to a real webhook receiver."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

from agent.config import parse_config
from agent.notifying import NOTIFY_MIGRATIONS, Notifying
from agent.state import StateDB
from harness.receivers import RecordingServer
from healers.runner import Notice
from rules.model import Alert, AlertState, Labels

pytestmark = pytest.mark.timeout(20)

CONFIG = """
time_intervals:
  - name: quiet
    time_intervals: [{{years: ["{years}"]}}]
notify:
  receivers:
    - {{name: hook, webhook: {{url: "{hook}/hook"}}}}
  route:
    receiver: hook
    group_by: [alertname]
    group_wait: 0s
    group_interval: 1s
    routes:
      - {{matchers: ['severity="critical"'], mute_time_intervals: [quiet]}}
"""


def firing(name: str, severity: str, now: float) -> Alert:
    return Alert(Labels({"alertname": name, "severity": severity}), {}, 1.0, AlertState.FIRING,
                 active_at=now - 60, fired_at=now - 30, valid_until=now + 240)


async def delivered(notifying: Notifying, hook: RecordingServer, count: int) -> list[str]:
    """Wait (bounded) for ``count`` deliveries and an empty outbox: nothing else was queued."""
    await hook.wait_for(count)
    async with asyncio.timeout(5):
        while notifying.outbox.pending():
            await asyncio.sleep(0.01)
    return [r.json()["commonLabels"].get("alertname", "") for r in hook.received]


def test_a_muted_route_holds_alerts_and_notices_until_a_reload_ends_the_interval(tmp_path: Path) -> None:
    """Inside 'quiet' the critical route sends neither alerts nor healing notices (the gauge counts its group);
    a reload whose 'quiet' no longer holds keeps the groups and lets both through."""
    this_year = time.gmtime().tm_year

    async def main() -> None:
        hook = await RecordingServer().start()
        db = StateDB(str(tmp_path / "state.db"))
        for namespace, migrations in NOTIFY_MIGRATIONS.items():
            db.migrate(namespace, migrations)
        notifying = Notifying(parse_config(CONFIG.format(years=this_year, hook=hook.url), "agent.yaml"), db.conn)
        await notifying.start()
        try:
            now = time.time()
            notifying.on_alerts([firing("DiskFull", "critical", now), firing("Slow", "warning", now)])
            notifying.notice(Notice("web", "inc1", "critical", "web is down", now))
            notifying.notice(Notice("web", "inc1", "info", "healing web", now))
            assert sorted(await delivered(notifying, hook, 2)) == ["HealwatchHealing", "Slow"]
            assert [r.json()["alerts"][0]["labels"]["severity"] for r in hook.received
                    if r.json()["commonLabels"]["alertname"] == "HealwatchHealing"] == ["info"]
            muted = [f for f in notifying.families() if f.name == "healwatch_alert_groups_time_muted"]
            assert [s.value for f in muted for s in f.samples] == [1.0]

            notifying.reload(parse_config(CONFIG.format(years=this_year - 1, hook=hook.url), "agent.yaml"))
            notifying.notice(Notice("web", "inc2", "critical", "web is down again", time.time()))
            notifying.on_alerts([firing("DiskFull", "critical", time.time())])
            assert (await delivered(notifying, hook, 3))[2] == "HealwatchHealing"
            assert (await delivered(notifying, hook, 4))[3] == "DiskFull"  # at the group's next flush after the reload
        finally:
            await notifying.stop()
            await hook.stop()
            db.close()

    asyncio.run(main())

"""Time intervals against the real Alertmanager 0.25 (issue #18): the same text, the same verdicts.

Parsing: each ``time_intervals`` block goes through ``amtool check-config`` and ``healwatch``'s
config loader; both accept it, or both refuse it with Alertmanager's words. Matching: a real
Alertmanager cannot be given a clock, so the intervals are built around the present (today's
weekday in Sydney, this hour in New York, the days left in Berlin's month...), and each gets one
route active in it and one muted in it; exactly one of the two notifies, and which one must be
the one our intervener picks for the same instant.
"""

from __future__ import annotations

import asyncio
import calendar
import json
import subprocess
import time
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import aiohttp
import pytest
import yaml

from agent.config.load import parse_config
from agent.config.timeintervals import intervener
from harness.processes import free_port, require_binary, stop
from harness.receivers import RecordingServer
from rules.errors import SourceError

# Where our message differs from Alertmanager's: a missing key is named as for every other section.
OUR_WORDS = {"both start and end times must be provided": "missing required key 'end_time'"}
# (an interval spec, Alertmanager's error or "" when it accepts it)
PARSE_CASES: list[tuple[dict[str, Any], str]] = [
    ({"weekdays": ["monday:friday", "Sunday"]}, ""),
    ({"times": [{"start_time": "00:00", "end_time": "24:00"}]}, ""),
    ({"days_of_month": ["1:-1", "-7:-1", "10"]}, ""),
    ({"months": ["January:march", "5", "december"], "years": ["2020:2030"]}, ""),
    ({"location": "Australia/Sydney"}, ""),
    ({"location": "Local"}, ""),
    ({"times": [{"start_time": "01:99", "end_time": "23:59"}]}, "couldn't parse timestamp 01:99, invalid format"),
    ({"times": [{"start_time": "12:30", "end_time": "24:01"}]}, "couldn't parse timestamp 24:01, invalid format"),
    ({"times": [{"start_time": "9:00", "end_time": "17:00"}]}, "couldn't parse timestamp 9:00, invalid format"),
    ({"times": [{"start_time": "17:31", "end_time": "17:31"}]}, "start time cannot be equal or greater than end time"),
    ({"times": [{"start_time": "14:03"}]}, "both start and end times must be provided"),
    ({"weekdays": ["friday:monday"]}, "start day cannot be before end day"),
    ({"weekdays": ["blurgsday"]}, "blurgsday is not a valid weekday"),
    ({"weekdays": ["1:3"]}, "1 is not a valid weekday"),
    ({"weekdays": ["monday:tuesday:friday"]}, "couldn't parse range monday:tuesday:friday, invalid format"),
    ({"days_of_month": ["0"]}, "0 is not a valid day of the month: out of range"),
    ({"days_of_month": ["1:50"]}, "50 is not a valid day of the month: out of range"),
    ({"days_of_month": ["-15:5"]}, "end day must be negative if start day is negative"),
    ({"days_of_month": ["10:-25"]}, "end day -25 is always before start day 10"),
    ({"months": ["martius:june"]}, "martius is not a valid month"),
    ({"months": ["december:january"]}, "end month january is before start month december"),
    ({"years": ["2022:2020"]}, "end year 2020 is before start year 2022"),
    ({"location": "Mars/Olympus"}, "unknown time zone Mars/Olympus"),
]


def _alertmanager_config(intervals: list[dict[str, Any]], routes: list[dict[str, Any]], hook_url: str) -> str:
    receivers = [{"name": "root"}] + [
        {"name": r["receiver"], "webhook_configs": [{"url": f"{hook_url}/{r['receiver']}"}]} for r in routes]
    route = {"receiver": "root", "group_wait": "1s", "group_by": ["..."], "routes": routes}
    return yaml.safe_dump({"route": route, "receivers": receivers, "time_intervals": intervals})


@pytest.mark.timeout(60)
def test_parsing_gives_alertmanagers_verdicts(tmp_path: Path) -> None:
    """Every case is accepted by both or refused by both with Alertmanager's message, at the value's line."""
    amtool = require_binary("amtool")
    files = []
    for index, (spec, _) in enumerate(PARSE_CASES):
        path = tmp_path / f"case{index}.yml"
        path.write_text(_alertmanager_config([{"name": "x", "time_intervals": [spec]}], [], "http://127.0.0.1:9"))
        files.append(path)
    report = subprocess.run([amtool, "check-config", *map(str, files)], capture_output=True, text=True, timeout=30)
    verdicts = {}
    for chunk in report.stdout.split("Checking '")[1:]:
        name, _, rest = chunk.partition("'")
        verdicts[Path(name).name] = rest.split("FAILED: ", 1)[1].splitlines()[0] if "FAILED: " in rest else ""
    for index, (spec, error) in enumerate(PARSE_CASES):
        assert verdicts[f"case{index}.yml"] == error, (spec, verdicts[f"case{index}.yml"])
        text = yaml.safe_dump({"time_intervals": [{"name": "x", "time_intervals": [spec]}]})
        if not error:
            parse_config(text, "agent.yaml")
            continue
        with pytest.raises(SourceError) as caught:
            parse_config(text, "agent.yaml")
        message = str(caught.value)
        assert message.startswith("agent.yaml:") and message.endswith(OUR_WORDS.get(error, error)), (spec, message)


def _around(now: datetime) -> dict[str, dict[str, Any]]:
    """Intervals that hold at ``now`` and intervals that do not, in several zones, named by what they are."""
    sydney, new_york, berlin = (now.astimezone(ZoneInfo(z)) for z in ("Australia/Sydney", "America/New_York",
                                                                         "Europe/Berlin"))
    weekday = calendar.day_name[sydney.weekday()].lower()
    tomorrow = calendar.day_name[(sydney.weekday() + 1) % 7].lower()
    hour = new_york.hour
    left = calendar.monthrange(berlin.year, berlin.month)[1] - berlin.day + 1
    next_month = calendar.month_name[berlin.month % 12 + 1].lower()
    return {
        "today-sydney": {"weekdays": [weekday], "location": "Australia/Sydney"},
        "tomorrow-sydney": {"weekdays": [tomorrow], "location": "Australia/Sydney"},
        "this-hour-new-york": {"times": [{"start_time": f"{hour:02}:00", "end_time": f"{hour + 1:02}:00"}],
                               "location": "America/New_York"},
        "next-hour-new-york": {"times": [{"start_time": f"{(hour + 1) % 24:02}:00",
                                          "end_time": f"{(hour + 1) % 24 + 1:02}:00"}],
                               "location": "America/New_York"},
        "rest-of-month-berlin": {"days_of_month": [f"-{left}:-1"], "location": "Europe/Berlin"},
        "next-month-berlin": {"months": [next_month], "location": "Europe/Berlin"},
        "this-year-utc": {"years": [f"{now.year - 1}:{now.year}"]},
    }


@pytest.mark.timeout(60)
def test_routes_mute_and_activate_as_alertmanager(tmp_path: Path) -> None:
    """For each interval, the real Alertmanager notifies through exactly the route our intervener says may send."""
    binary = require_binary("prometheus-alertmanager")
    now = time.time()
    intervals = _around(datetime.fromtimestamp(now).astimezone())
    ours = intervener(parse_config(yaml.safe_dump({"time_intervals": [
        {"name": name, "time_intervals": [spec]} for name, spec in intervals.items()]}), "agent.yaml").time_intervals)
    expected = {name: ours.active([name], now) for name in intervals}
    if expected != {name: ours.active([name], now + 30) for name in intervals}:
        pytest.skip("an interval boundary falls within the next 30 s; the verdict would depend on the moment")
    assert set(expected.values()) == {True, False}  # both kinds are compared
    routes = []
    for name in intervals:
        routes.append({"receiver": f"active-{name}", "active_time_intervals": [name], "continue": True})
        routes.append({"receiver": f"muted-{name}", "mute_time_intervals": [name], "continue": True})
    hooks = RecordingServer(port=free_port())
    (tmp_path / "alertmanager.yml").write_text(_alertmanager_config(
        [{"name": name, "time_intervals": [spec]} for name, spec in intervals.items()], routes, hooks.url))
    port = free_port()
    argv = [binary, f"--config.file={tmp_path / 'alertmanager.yml'}", f"--storage.path={tmp_path / 'data'}",
            f"--web.listen-address=127.0.0.1:{port}", "--cluster.listen-address=", "--log.level=warn"]
    with (tmp_path / "alertmanager.log").open("wb") as log:
        process = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=log)
    try:
        sent = asyncio.run(_notified_routes(f"http://127.0.0.1:{port}", hooks, process, len(intervals)))
    finally:
        stop(process)
    assert {name: f"active-{name}" in sent for name in intervals} == expected
    assert {name: f"muted-{name}" in sent for name in intervals} == {n: not v for n, v in expected.items()}


async def _notified_routes(url: str, hooks: RecordingServer, process: subprocess.Popen[bytes], pairs: int) -> set[str]:
    """Push one alert and wait (bounded) until one route of each active/muted pair has notified."""
    await hooks.start()
    try:
        async with aiohttp.ClientSession() as session:
            async with asyncio.timeout(20):
                while True:
                    assert process.poll() is None, "alertmanager exited; see alertmanager.log"
                    try:
                        async with session.get(f"{url}/-/ready") as response:
                            if response.status == 200:
                                break
                    except aiohttp.ClientError:
                        pass
                    await asyncio.sleep(0.05)
                starts = (datetime.now().astimezone() - timedelta(seconds=1)).isoformat()
                async with session.post(f"{url}/api/v2/alerts", json=[{"labels": {"alertname": "Probe"},
                                                                        "startsAt": starts}]) as response:
                    assert response.status == 200, await response.text()
                await hooks.wait_for(pairs, timeout_s=15)
        return {json.loads(r.body)["receiver"] for r in hooks.received}
    finally:
        await hooks.stop()

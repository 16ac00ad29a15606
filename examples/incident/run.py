"""See it heal: start the whole scenario on loopback and walk through six ways web1 gets sick.

    python3 -m examples.incident [--dir DIR] [--cases errors,hang,crash,leak,slow,deploy] [--no-agent-crash]

Needs haproxy, supervisor, prometheus and prometheus-alertmanager (Debian packages). Takes about 3 minutes
(all cases and the agent crash); Ctrl-C (or SIGTERM) stops everything at any point. Prints what it starts, each
case as it runs, and a PASS/FAIL line per case with its timings; exits 1 if any case failed. Logs and rendered
configs stay in the printed directory.
"""

from __future__ import annotations

import argparse
import signal
import sys
import time
from pathlib import Path

from examples.incident.scenario import (
    CASES,
    ScenarioError,
    Stack,
    agent_crash_problems,
    agent_crash_verdict,
    case_problems,
    kill_agent_mid_heal,
    narrate_agent_crash,
    narrate_case,
    run_case,
    verdict,
)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dir", type=Path, help="where configs, logs and state go (default: a new temp dir)")
    parser.add_argument("--cases", default=",".join(c.name for c in CASES),
                        help="which cases to run, in order (default: %(default)s)")
    parser.add_argument("--no-agent-crash", action="store_true", help="skip SIGKILLing healwatch mid-heal")
    args = parser.parse_args(argv)
    by_name = {case.name: case for case in CASES}
    unknown = [name for name in args.cases.split(",") if name not in by_name]
    if unknown:
        parser.error(f"unknown case {', '.join(unknown)}; expected some of {', '.join(by_name)}")
    # The children run in sessions of their own: a SIGTERM must unwind like Ctrl-C, or they outlive us.
    signal.signal(signal.SIGTERM, _interrupt)
    started = time.monotonic()

    def say(line: str) -> None:
        print(f"[{time.monotonic() - started:5.1f}s] {line}", flush=True)

    verdicts: list[str] = []
    failed = 0
    try:
        with Stack(args.dir, log=say) as stack:
            say(f"HAProxy {stack.frontend_url}  healwatch {stack.agent_url}  Prometheus {stack.prometheus_url}"
                f"  Alertmanager {stack.alertmanager_url}")
            for name in args.cases.split(","):
                report = run_case(stack, by_name[name], progress=say)
                for line in narrate_case(report):
                    print(line, flush=True)
                verdicts.append(verdict(report))
                failed += bool(case_problems(report))
                say(verdicts[-1])
            if not args.no_agent_crash:
                crash = kill_agent_mid_heal(stack, progress=say)
                for line in narrate_agent_crash(crash):
                    print(line, flush=True)
                verdicts.append(agent_crash_verdict(crash))
                failed += bool(agent_crash_problems(crash))
                say(verdicts[-1])
            say("stopping everything")
    except ScenarioError as exc:
        print(f"scenario failed: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted; everything is stopped", file=sys.stderr)
        return 130
    for line in verdicts:
        print(line)
    print(f"done in {time.monotonic() - started:.0f}s ({len(verdicts) - failed} passed, {failed} failed);"
          " everything is stopped")
    return 1 if failed else 0


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


if __name__ == "__main__":
    sys.exit(main())

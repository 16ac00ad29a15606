"""The ``healwatch`` command line."""

from __future__ import annotations

import argparse
import os
import signal
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from agent import __version__
from agent.cli import remote
from agent.cli.render import plural
from rules.durations import format_duration
from rules.errors import SourceError

# Each handler imports what it needs when it runs: `--version`, `--help` and the remote commands
# load neither the config schema (pydantic), the rules engine (numpy) nor the daemon.
if TYPE_CHECKING:
    from agent.config import AgentConfig

LEVELS = ("debug", "info", "warning", "error")
DEFAULT_CONFIG_NAME = "<built-in default config>"


def default_config_text() -> str:
    from importlib import resources

    return resources.files("agent.config").joinpath("default.yaml").read_text(encoding="utf-8")


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    if not getattr(args, "handler", None):
        parser.print_help()
        return 2
    try:
        code = int(args.handler(args))
        sys.stdout.flush()
    except BrokenPipeError:
        # The reader stopped reading (`| head -1`): end quietly, as tools killed by SIGPIPE do, and point stdout
        # at /dev/null so that the interpreter's last flush does not report the pipe again.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 128 + signal.SIGPIPE
    return code


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="healwatch", description="Monitoring and self-healing sidecar.",
        epilog="Commands marked (token) send the agent's API token, read from $HEALWATCH_TOKEN.",
    )
    parser.add_argument("--version", action="version", version=f"healwatch {__version__}")
    commands = parser.add_subparsers(title="commands", metavar="COMMAND")

    run = commands.add_parser("run", help="run the agent")
    run.add_argument("-c", "--config", help="config file (default: the built-in default config)")
    run.add_argument("--listen", metavar="HOST:PORT", help="override the config's listen address")
    run.add_argument("--log-level", choices=LEVELS, default="info")
    run.set_defaults(handler=_run)

    check = commands.add_parser("check", help="validate files without running anything")
    check_kinds = check.add_subparsers(title="what", metavar="WHAT", required=True)
    check_config = check_kinds.add_parser("config", help="validate agent config files")
    check_config.add_argument("files", nargs="+", metavar="FILE")
    check_config.set_defaults(handler=_check_config)
    check_rules = check_kinds.add_parser("rules", help="validate Prometheus rule files (like promtool check rules)")
    check_rules.add_argument("files", nargs="+", metavar="FILE")
    check_rules.add_argument("--lint-fatal", action="store_true",
                             help="exit with code 3 on lint errors (duplicate rules), as promtool does")
    check_rules.set_defaults(handler=_check_rules)

    test = commands.add_parser("test", help="run unit tests")
    test_kinds = test.add_subparsers(title="what", metavar="WHAT", required=True)
    test_rules = test_kinds.add_parser("rules", help="run rule unit tests (promtool's test file format)")
    test_rules.add_argument("files", nargs="+", metavar="TEST_FILE")
    test_rules.set_defaults(handler=_test_rules)

    remote.add_commands(commands)

    schema = commands.add_parser("schema", help="print the JSON Schema of the config file")
    schema.add_argument("--markdown", action="store_true", help="print the config reference in Markdown instead")
    schema.set_defaults(handler=_schema)
    return parser


def _run(args: argparse.Namespace) -> int:
    import asyncio

    import structlog

    from agent.config import AgentConfig, load_config, parse_config
    from agent.daemon import Agent
    from agent.limits import raise_fd_limit
    from agent.logsetup import configure_logging

    configure_logging(args.log_level)
    log = structlog.get_logger("healwatch")
    try:
        config = load_config(args.config) if args.config else parse_config(default_config_text(), DEFAULT_CONFIG_NAME)
        if args.listen:
            AgentConfig.model_validate({"listen": args.listen})
    except SourceError as exc:
        for issue in exc.issues:
            log.error("invalid config", error=str(issue))
        return 1
    except ValueError as exc:
        log.error("invalid --listen", error=str(exc).splitlines()[-1].strip())
        return 1
    before, after = raise_fd_limit()
    if after != before:
        log.info("descriptor limit raised", soft_before=before, soft=after)

    agent = Agent(config, config_path=args.config, listen=args.listen)
    try:
        asyncio.run(agent.run())
    except SourceError as exc:
        for issue in exc.issues:
            log.error("invalid rules", error=str(issue))
        return 1
    except OSError as exc:
        log.error("cannot start", error=str(exc))
        return 1
    return 0


def _check_config(args: argparse.Namespace) -> int:
    from agent.config import load_config
    from agent.playbooks import fleet_warnings
    from agent.schedule.rulefiles import rule_files_of, unmatched_rule_globs
    from rules.rulefile import load_rule_files

    failed = False
    for file in args.files:
        print(f"Checking {file}")
        try:
            config = load_config(file)
        except SourceError as exc:
            failed = True
            _print_failure("FAILED", exc)
            continue
        try:
            rule_files = rule_files_of(config, Path(file).parent)
            groups = load_rule_files(rule_files)
        except SourceError as exc:
            failed = True
            _print_failure("FAILED (rule files)", exc)
            continue
        print(f"  SUCCESS: {_summary(config)}")
        for line in _service_lines(config):
            print(f"    {line}")
        rules = sum(len(group.rules) for group in groups)
        print(f"    rules: {rules} in {plural(len(groups), 'group')} from {plural(len(rule_files), 'file')}")
        for pattern in unmatched_rule_globs(config, Path(file).parent):
            print(f"  WARNING: {file}: rule_files: {pattern!r} matches no file yet")
        for warning in fleet_warnings(config):
            print(f"  WARNING: {file}: {warning}")
    return 1 if failed else 0


def _check_rules(args: argparse.Namespace) -> int:
    from rules.rulefile import duplicate_rules, load_rule_file

    failed = linted = False
    for file in args.files:
        print(f"Checking {file}")
        try:
            groups = load_rule_file(file)
        except SourceError as exc:
            failed = True
            _print_failure("FAILED", exc)
            print()
            continue
        rules = [rule for group in groups for rule in group.rules]
        lint = duplicate_rules(groups)
        if lint is not None:  # promtool reports it as a failure that exits 0 unless --lint-fatal
            linted = True
            print(f"  FAILED:\n{lint}\n")
            continue
        print(f"  SUCCESS: {len(rules)} rules found")
        for rule in rules:
            if rule.simple:
                print(f"    {rule.name} (simple form) compiles to: {rule.expr}")
        print()
    if failed:
        return 1
    return 3 if linted and args.lint_fatal else 0


def _test_rules(args: argparse.Namespace) -> int:
    from rules.unittest import run_test_files

    return run_test_files(args.files, sys.stdout)


def _print_failure(heading: str, exc: SourceError) -> None:
    """promtool's layout: the heading, then every issue indented (multi-line ones line by line)."""
    print(f"  {heading}:")
    for issue in exc.issues:
        print("\n".join(f"    {line}" for line in str(issue).splitlines()))


def _summary(config: AgentConfig) -> str:
    checks = sum(len(s.checks) for s in config.services.values())
    scrapes = sum(1 for s in config.services.values() if s.scrape)
    host = f"host metrics every {format_duration(config.host.interval)}" if config.host.enabled else "host metrics off"
    return (
        f"listen {config.listen}, {host}, {plural(len(config.services), 'service')}, {plural(checks, 'check')}, "
        f"{plural(scrapes, 'scrape target')}"
    )


def _service_lines(config: AgentConfig) -> list[str]:
    lines = []
    for name, service in config.services.items():
        parts = []
        if service.process is not None:
            how = next(k for k in ("pidfile", "name", "cmdline") if getattr(service.process, k) is not None)
            parts.append(f"process by {how} {getattr(service.process, how)!r}")
        parts.extend(
            f"check {c.name} ({c.kind} every {format_duration(c.interval)})" for c in service.checks
        )
        if service.scrape is not None:
            parts.append(f"scrape every {format_duration(service.scrape.interval)}")
        lines.append(f"{name}: " + ("; ".join(parts) or "nothing watched"))
    return lines


def _schema(args: argparse.Namespace) -> int:
    import json

    from agent.config import AgentConfig
    from agent.config.reference import markdown_reference

    schema = AgentConfig.model_json_schema()
    if args.markdown:
        print(markdown_reference(schema), end="")
        return 0
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = "healwatch agent config"
    print(json.dumps(schema, indent=2))
    return 0


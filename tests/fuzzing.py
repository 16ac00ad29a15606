"""Generated bad input for the three kinds of file a user hands the CLI: agent configs, rule files, rule tests.

Each input is a mutation of a real file of the repository (a YAML tree edit, a text edit, or one of the
known attacks: alias bombs, deep nesting, huge repeat counts and evaluation times). It is written to a
temporary folder and run through ``healwatch check config``, ``check rules`` or ``test rules`` in this
process, as ``agent.cli.main`` runs it. A finding is an exception escaping the CLI (what a user would see as
a traceback), an exit status other than 0 or 1, or an input that takes longer than the time limit.

``python -m tests.fuzzing --count 10000`` generates that many inputs of each kind and stops by itself;
``tests/unit/test_fuzz_inputs.py`` runs a small fixed sample in CI.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import io
import json
import random
import signal
import statistics
import sys
import time
import traceback
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any

import yaml

from agent.cli import main as cli

ROOT = Path(__file__).resolve().parent.parent
RULE_TESTS = ROOT / "tests" / "data" / "ruletests"
KINDS = ("config", "rules", "ruletest")
TIME_LIMIT_S = 10.0

# Values a mutation puts in place of any node: wrong types, edge numbers, durations, secrets, giants.
INTERESTING: tuple[Any, ...] = (
    None, True, False, 0, -1, 1, 2**63, -(2**63) - 1, 1e308, -1e-308, float("inf"), float("nan"),
    "", " ", "0s", "-1s", "1ms", "0.5s", "10000000000d", "1y", "5m", "1h30m", "1.5h", "99999999999999999999s",
    "yes", "no", "on", "0x1F", "1e3", "6E-01", ".inf", ".nan", "~", "null",
    "${HOME}", "${UNSET_VARIABLE_FOR_FUZZ}", "${", "$${X}", "http://u:hunter2@127.0.0.1:1/x?apikey=s3cret",
    "127.0.0.1:0", "0.0.0.0:99999", "unix:///nonexistent.sock", "/nonexistent/file", "*", "[", "{{", "}}",
    "{{ .Labels.x }}", "{{ range }}", "{{ template \"x\" }}", "{{ humanize 1e300 }}", "\x00", "\u202e\u0000x",
    "é" * 3, "x" * 5000, [], {}, [None], {"": None}, {"x": [1, {"y": "z"}]}, ["a"] * 50,
)
PROMQL: tuple[str, ...] = (
    "up", "up{job=\"x\"}", "rate(x[5m])", "sum by (a) (rate(x[1m]))", "x > 0", "x and on(a) y",
    "histogram_quantile(0.9, rate(b_bucket[5m]))", "absent(x)", "time()", "vector(1)",
    "sum_over_time(vector(1)[1h:1ms])", "max_over_time(x[10000d:1ms])", "x offset -1h", "x @ 1e18",
    "quantile_over_time(2, x[1m])", "label_replace(x, \"a\", \"$1\", \"b\", \"(.*\")", "x[5m]", "sum(",
    "((((((((((x))))))))))", "-" * 300 + "1", "1" + " + 1" * 1500, "abs(" * 250 + "x" + ")" * 250,
    "x{a=~\"(((((\"}", "x{a=~\".*\" , b!~\"\"}", "topk(1e9, x)", "count_values(\"v\", x)", "x / 0",
    "predict_linear(x[5m], 1e300)", "{__name__=~\".+\"}", "x @ start()", "sort_desc(x) == bool 1",
)
SERIES_VALUES: tuple[str, ...] = (
    "1 2 3", "0+1x100000000", "1x1000000000", "_x5", "stale", "0-1x10 _ 5", "1e308+1e308x10",
    "NaN Inf -Inf", "1+1x-5", "x", "1 2 abc", "0+0.1x100",
)
EVAL_TIMES: tuple[str, ...] = ("0", "5m", "-5m", "10000000000d", "1y", "999999999999999999999h", "1.5")


@dataclass(frozen=True)
class Case:
    """One generated input: its kind, the main file's name and text, and files it refers to."""

    kind: str
    name: str
    text: str
    companions: tuple[tuple[str, str], ...] = ()


@dataclass
class Finding:
    """What went wrong with one input."""

    kind: str
    problem: str
    detail: str
    case: Case


@dataclass
class Summary:
    """Counts and times of a run, and its findings."""

    inputs: dict[str, int] = field(default_factory=lambda: dict.fromkeys(KINDS, 0))
    seconds: dict[str, list[float]] = field(default_factory=lambda: {kind: [] for kind in KINDS})
    findings: list[Finding] = field(default_factory=list)

    def lines(self) -> list[str]:
        out = []
        for kind in KINDS:
            times = self.seconds[kind] or [0.0]
            out.append(
                f"{kind}: {self.inputs[kind]} inputs, median {statistics.median(times) * 1e3:.1f} ms, "
                f"max {max(times):.2f} s")
        out.append(f"findings: {len(self.findings)}")
        out.extend(f"  {f.kind}: {f.problem}: {f.detail}" for f in self.findings)
        return out


class _TimeLimit(BaseException):
    """Raised in the fuzzed call when it runs past the limit (a BaseException, so no handler swallows it)."""


def seeds() -> dict[str, list[Case]]:
    """The repository's own files of each kind, the starting points of every mutation."""
    configs = [ROOT / "agent" / "config" / "default.yaml", ROOT / "examples" / "agent.yaml"]
    rule_files = sorted((ROOT / "rules").glob("*.rules.yaml")) + sorted(RULE_TESTS.glob("*_rules.yml"))
    companions = tuple((p.name, p.read_text()) for p in sorted(RULE_TESTS.glob("*_rules.yml")))
    return {
        "config": [Case("config", "agent.yaml", p.read_text()) for p in configs]
        + [Case("config", "agent.yaml", _config_with_rules(), (("extra.rules.yaml", rule_files[0].read_text()),))],
        "rules": [Case("rules", "x.rules.yaml", p.read_text()) for p in rule_files],
        "ruletest": [Case("ruletest", "test.yml", p.read_text(), companions) for p in sorted(RULE_TESTS.glob("pass_*.yml"))],
    }


def _config_with_rules() -> str:
    return yaml.safe_dump({
        "listen": "127.0.0.1:9877", "rule_files": ["extra.rules.yaml"],
        "services": {"web": {
            "process": {"pidfile": "/run/web.pid"},
            "checks": [{"name": "http", "http": {"url": "http://127.0.0.1:8080/health"}, "interval": "5s"}],
            "scrape": {"url": "http://127.0.0.1:8080/metrics"},
            "restart": {"exec": ["systemctl", "restart", "web"]},
        }},
        "playbooks": [{"name": "heal", "when": [{"check_failed": {"service": "web"}}],
                       "steps": [{"restart": {}}, {"wait_healthy": {"timeout": "30s"}}]}],
        "notify": {"receivers": [{"name": "hook", "webhook": {"url": "${HOOK_URL}"}}], "route": {"receiver": "hook"}},
    }, sort_keys=False)


def generate(rng: random.Random, seed_cases: list[Case]) -> Case:
    """One mutated input from a random seed case."""
    case = rng.choice(seed_cases)
    roll = rng.random()
    if roll < 0.06:
        return _attack(rng, case)
    if roll < 0.6:
        text = _mutate_tree(rng, case)
    else:
        text = _mutate_text(rng, case.text)
    return Case(case.kind, case.name, text, case.companions)


def _mutate_tree(rng: random.Random, case: Case) -> str:
    try:
        tree = yaml.safe_load(case.text)
    except yaml.YAMLError:
        return _mutate_text(rng, case.text)
    for _ in range(rng.randint(1, 4)):
        tree = _mutate_node(rng, tree, case.kind)
    return yaml.safe_dump(tree, sort_keys=False, allow_unicode=True)


def _mutate_node(rng: random.Random, tree: Any, kind: str) -> Any:
    """Replace, delete, duplicate or rename one node chosen at random; the root itself is rarely replaced."""
    slots = list(_slots(tree))
    if not slots or rng.random() < 0.02:
        return _value(rng, kind, "")
    parent, key = rng.choice(slots)
    op = rng.random()
    if op < 0.55:
        parent[key] = _value(rng, kind, str(key))
    elif op < 0.7:
        del parent[key]
    elif op < 0.8 and isinstance(parent, list):
        parent.insert(key, parent[key])
    elif isinstance(parent, dict):
        value = parent.pop(key)
        parent[_rename(rng, str(key))] = value
    else:
        parent[key] = [parent[key]]
    return tree


def _slots(node: Any) -> Iterator[tuple[Any, Any]]:
    if isinstance(node, dict):
        for key, value in list(node.items()):
            yield node, key
            yield from _slots(value)
    elif isinstance(node, list):
        for index, value in enumerate(node):
            yield node, index
            yield from _slots(value)


def _value(rng: random.Random, kind: str, key: str) -> Any:
    """An interesting value, shaped for the key where that makes a deeper path reachable."""
    if key in ("expr", "expr_test") or (kind != "config" and rng.random() < 0.15):
        return _promql(rng)
    if key == "values":
        return rng.choice(SERIES_VALUES)
    if key in ("eval_time", "interval", "evaluation_interval", "for", "keep_firing_for"):
        return rng.choice(EVAL_TIMES + ("1ms", "0s", "-1s"))
    return copy.deepcopy(rng.choice(INTERESTING))  # a copy: later mutations must not edit the pool


def _promql(rng: random.Random) -> str:
    expr = rng.choice(PROMQL)
    if rng.random() < 0.3:
        expr = f"{expr} {rng.choice(['+', 'and', 'or', '>', 'unless', '/ on(a) group_left'])} {rng.choice(PROMQL)}"
    return expr


def _rename(rng: random.Random, key: str) -> str:
    if not key or rng.random() < 0.3:
        return rng.choice(["unknown_key", "", "x" * 300, "é", "0"])
    i = rng.randrange(len(key))
    return key[:i] + rng.choice("abcxyz_-") + key[i + 1:]


TOKENS = ("&a ", "*a", "!!python/object:os.system ", "{", "}", "[", "]", "? ", ": ", "- ", "%YAML 1.1\n",
          "---\n", "...\n", "\t", "'", '"', "\\", "#", "|", ">-", "<<: *a\n", "\x00", "\ufeff", "\n  ", "${", "!!binary ")


def _mutate_text(rng: random.Random, text: str) -> str:
    lines = text.splitlines(keepends=True) or [""]
    op = rng.random()
    if op < 0.2:
        return text[: rng.randrange(len(text) + 1)]
    if op < 0.35:
        del lines[rng.randrange(len(lines))]
        return "".join(lines)
    if op < 0.5:
        i = rng.randrange(len(lines))
        lines.insert(i, lines[i])
        return "".join(lines)
    if op < 0.6:
        i = rng.randrange(len(lines))
        lines[i] = " " * rng.randint(1, 3) + lines[i]
        return "".join(lines)
    at = rng.randrange(len(text) + 1)
    return text[:at] + rng.choice(TOKENS) + text[at:]


def _attack(rng: random.Random, case: Case) -> Case:
    """Inputs known to hurt YAML and expression readers: alias bombs, deep nesting, huge expansions."""
    depth = rng.choice([100, 500, 5000])
    attacks = [
        "a: &a [x,x,x,x,x,x,x,x,x]\n" + "".join(
            f"{chr(98 + i)}: &{chr(98 + i)} [*{chr(97 + i)},*{chr(97 + i)},*{chr(97 + i)},*{chr(97 + i)},"
            f"*{chr(97 + i)},*{chr(97 + i)},*{chr(97 + i)},*{chr(97 + i)},*{chr(97 + i)}]\n" for i in range(8)),
        "x: " + "[" * depth + "]" * depth + "\n",
        "x: " + "{a: " * depth + "1" + "}" * depth + "\n",
        "".join("  " * i + "a:\n" for i in range(min(depth, 1000))) + "  " * min(depth, 1000) + "b: 1\n",
    ]
    if case.kind == "rules":
        attacks.append(f"groups:\n- name: g\n  rules:\n  - record: r\n    expr: '{'abs(' * depth}x{')' * depth}'\n")
        attacks.append("groups:\n- name: g\n  rules:\n  - record: r\n    expr: '" + " + ".join(["x"] * depth) + "'\n")
    if case.kind == "ruletest":
        attacks.append(_rule_test_attack(rng))
    return Case(case.kind, case.name, rng.choice(attacks), case.companions)


def _rule_test_attack(rng: random.Random) -> str:
    return yaml.safe_dump({
        "rule_files": ["alerts_rules.yml"], "evaluation_interval": rng.choice(["1ms", "1m"]),
        "tests": [{"interval": rng.choice(["1ms", "1m"]),
                   "input_series": [{"series": "up{job=\"api\"}", "values": rng.choice(SERIES_VALUES)}],
                   "promql_expr_test": [{"expr": "up", "eval_time": rng.choice(EVAL_TIMES), "exp_samples": []}]}],
    }, sort_keys=False)


def run_case(case: Case, folder: Path, time_limit_s: float = TIME_LIMIT_S) -> tuple[float, Finding | None]:
    """Run one input through the CLI in this process; its time and what went wrong, if anything."""
    for name, text in case.companions:
        (folder / name).write_text(text)
    main = folder / case.name
    main.write_text(case.text, encoding="utf-8", errors="surrogatepass")
    argv = {"config": ["check", "config"], "rules": ["check", "rules"], "ruletest": ["test", "rules"]}[case.kind]
    output = io.StringIO()
    started = time.perf_counter()
    try:
        with _limit(time_limit_s), contextlib.redirect_stdout(output), contextlib.redirect_stderr(output):
            code: int | str | None = cli.main([*argv, str(main)])
    except SystemExit as exc:
        code = exc.code
    except _TimeLimit:
        return time.perf_counter() - started, Finding(case.kind, "slow", f"over {time_limit_s:.0f} s", case)
    except BaseException as exc:  # noqa: BLE001 - that is what is being looked for
        frame = traceback.extract_tb(exc.__traceback__)[-1]
        where = f"{Path(frame.filename).name}:{frame.lineno}"
        return time.perf_counter() - started, Finding(case.kind, "traceback", f"{type(exc).__name__} at {where}: "
                                                      f"{str(exc)[:200]}", case)
    elapsed = time.perf_counter() - started
    if code not in (0, 1):
        return elapsed, Finding(case.kind, "exit status", repr(code), case)
    if "Traceback (most recent call last)" in output.getvalue():
        return elapsed, Finding(case.kind, "printed traceback", output.getvalue()[-300:], case)
    return elapsed, None


@contextlib.contextmanager
def _limit(seconds: float) -> Iterator[None]:
    def expire(signum: int, frame: FrameType | None) -> None:
        raise _TimeLimit

    previous: Callable[[int, FrameType | None], Any] | int | None = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def fuzz(count: int, seed: int, workdir: Path, *, time_limit_s: float = TIME_LIMIT_S,
         progress: Callable[[str], None] | None = None) -> Summary:
    """``count`` inputs of each kind, generated from ``seed``; each runs in its own folder under ``workdir``."""
    rng = random.Random(seed)
    summary = Summary()
    starting_points = seeds()
    created = not workdir.exists()
    for kind in KINDS:
        for i in range(count):
            case = generate(rng, starting_points[kind])
            folder = workdir / f"{kind}-{i}"
            folder.mkdir(parents=True)
            elapsed, finding = run_case(case, folder, time_limit_s)
            summary.inputs[kind] += 1
            summary.seconds[kind].append(elapsed)
            if finding is not None:
                summary.findings.append(finding)
                (folder / "finding.json").write_text(json.dumps({"problem": finding.problem, "detail": finding.detail}))
            else:
                for file in folder.iterdir():
                    file.unlink()
                folder.rmdir()
            if progress is not None and (i + 1) % 1000 == 0:
                progress(f"{kind}: {i + 1}/{count}, findings so far: {len(summary.findings)}")
    if created and not summary.findings:
        workdir.rmdir()  # nothing found: leave no empty folder behind
    return summary


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=10_000, help="inputs of each kind (default 10000)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--keep", type=Path, default=Path("fuzz-findings"),
                        help="folder for the inputs that found something (default ./fuzz-findings)")
    args = parser.parse_args(argv)
    started = time.monotonic()
    summary = fuzz(args.count, args.seed, args.keep, progress=lambda line: print(line, flush=True))
    print("\n".join(summary.lines()))
    print(f"total {time.monotonic() - started:.0f} s")
    return 1 if summary.findings else 0


if __name__ == "__main__":
    sys.exit(main())

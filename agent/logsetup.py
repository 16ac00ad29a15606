"""structlog set-up: JSON lines when not on a TTY, readable lines on one, repeated warnings rate-limited.

The standard library's loggers (asyncio's "socket.accept() out of system resource", the HTTP server's,
APScheduler) are routed through the same processors, so their lines share the format and
the rate limit: out of descriptors, asyncio alone wrote tens of thousands of identical
tracebacks a second.
"""

from __future__ import annotations

import logging
import re
import sys
import time
from collections import OrderedDict
from collections.abc import Callable, MutableMapping
from dataclasses import dataclass
from typing import Any, TextIO

import structlog

# Lines at these levels are rate-limited; info and debug lines are each a distinct event of the agent's own.
LIMITED_LEVELS = frozenset({"warning", "error", "critical", "exception"})
# Fields that differ between otherwise identical lines.
_VOLATILE = frozenset({"timestamp", "level"})
# Numbers and addresses in a message: the standard library's messages embed timer deadlines and object ids
# ("handle: <TimerHandle when=1022.16 ...>"); the agent's own events are constant names with separate fields.
_MESSAGE_NUMBERS = re.compile(r"0x[0-9a-fA-F]+|\d+(?:\.\d+)?")


@dataclass
class _Window:
    started: float
    emitted: int = 0
    suppressed: int = 0


class RateLimiter:
    """A structlog processor: at most ``burst`` identical warning-or-worse lines per ``window_s``.

    Lines are identical when all fields but the timestamp agree (the exception text included) and
    their messages differ at most in numbers.
    The first line over the limit goes out marked ``suppressing: true``; the first line after the
    window carries ``suppressed_similar: N``, the count of lines dropped in between.
    """

    def __init__(
        self,
        burst: int = 10,
        window_s: float = 60.0,
        *,
        max_keys: int = 1000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.burst = burst
        self.window_s = window_s
        self.max_keys = max_keys
        self._clock = clock
        self._windows: OrderedDict[str, _Window] = OrderedDict()

    def __call__(self, logger: Any, method_name: str, event_dict: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
        if method_name not in LIMITED_LEVELS and event_dict.get("level") not in LIMITED_LEVELS:
            return event_dict
        key = repr(sorted(
            (name, _MESSAGE_NUMBERS.sub("#", value) if name == "event" and isinstance(value, str) else repr(value))
            for name, value in event_dict.items() if name not in _VOLATILE
        ))
        now = self._clock()
        window = self._windows.get(key)
        if window is None or now - window.started >= self.window_s:
            if window is not None and window.suppressed:
                event_dict["suppressed_similar"] = window.suppressed
            window = self._new_window(key, now)
        window.emitted += 1
        if window.emitted <= self.burst:
            return event_dict
        if window.emitted == self.burst + 1:
            event_dict["suppressing"] = True
            event_dict["note"] = f"more lines like this are suppressed for up to {self.window_s:g}s"
            return event_dict
        window.suppressed += 1
        raise structlog.DropEvent

    def _new_window(self, key: str, now: float) -> _Window:
        self._windows.pop(key, None)
        while len(self._windows) >= self.max_keys:
            self._windows.popitem(last=False)  # the oldest window: its count is lost, not the memory bound
        window = self._windows[key] = _Window(now)
        return window


class _ToStructlog(logging.Handler):
    """Hands standard-library log records to structlog, so they pass the same processors."""

    def emit(self, record: logging.LogRecord) -> None:
        event: dict[str, Any] = {"logger": record.name}
        if record.exc_info:
            event["exc_info"] = record.exc_info
        structlog.get_logger(record.name).log(record.levelno, record.getMessage(), **event)


class _MultilineConsole:
    """The console renderer, with a multi-line value's lines below the event as written, not as one repr.

    A rule error's caret then stands under the character it points at.
    """

    def __init__(self, renderer: structlog.dev.ConsoleRenderer) -> None:
        self._renderer = renderer

    def __call__(self, logger: Any, method_name: str, event_dict: MutableMapping[str, Any]) -> str:
        tails = []
        for key, value in event_dict.items():
            # The renderer prints these two below the line itself.
            if key not in ("exception", "stack") and isinstance(value, str) and "\n" in value:
                event_dict[key], tail = value.split("\n", 1)
                tails.append(tail)
        return "\n".join([self._renderer(logger, method_name, event_dict), *tails])


def configure_logging(level: str = "info", stream: TextIO | None = None, *, limiter: RateLimiter | None = None) -> None:
    """Route structlog and standard-library events at ``level`` and above to ``stream`` (stderr by default)."""
    stream = stream or sys.stderr
    renderer: structlog.typing.Processor
    if stream.isatty():
        renderer = _MultilineConsole(structlog.dev.ConsoleRenderer())
    else:
        renderer = structlog.processors.JSONRenderer()
    numeric_level = getattr(logging, level.upper())
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.format_exc_info,
            limiter if limiter is not None else RateLimiter(),
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(numeric_level),
        logger_factory=structlog.PrintLoggerFactory(stream),
        cache_logger_on_first_use=False,
    )
    root = logging.getLogger()
    root.handlers = [*(h for h in root.handlers if not isinstance(h, _ToStructlog)), _ToStructlog()]
    root.setLevel(numeric_level)
    # httpx logs every request at info: one line per probe and scrape, which the probes' own results already say.
    logging.getLogger("httpx").setLevel(max(numeric_level, logging.WARNING))

"""Go's time.Time as templates see it (UTC only): String(), Format(layout) and accessors."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from rules.golang.fmt import GoStringer, GoStruct

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MONTHS = ["January", "February", "March", "April", "May", "June", "July", "August",
           "September", "October", "November", "December"]
_DAYS = ["Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"]


# Seconds from Go's internal epoch (year 1) to the Unix epoch.
_UNIX_TO_INTERNAL = 62135596800


class GoTime(GoStringer, GoStruct):
    """A ``*time.Time`` in UTC with nanosecond resolution."""

    go_type = "*time.Time"
    is_pointer = True

    def __init__(self, unix_nanos: int) -> None:
        self.unix_nanos = unix_nanos
        seconds, self.nanos = divmod(unix_nanos, 1_000_000_000)
        self.moment = _EPOCH + timedelta(seconds=seconds)

    def go_string(self) -> str:
        return self.format("2006-01-02 15:04:05.999999999 -0700 MST")

    def go_fields(self) -> list[tuple[str, object]]:
        """time.Time's private fields, which fmt shows for non-string verbs (nil zone prints 0)."""
        seconds = self.unix_nanos // 1_000_000_000
        return [("wall", self.nanos), ("ext", seconds + _UNIX_TO_INTERNAL), ("loc", 0)]

    def format(self, layout: str) -> str:
        """time.Time.Format for the UTC zone."""
        out: list[str] = []
        i = 0
        while i < len(layout):
            token, width = _next_chunk(layout, i)
            if token is None:
                out.append(layout[i])
                i += 1
                continue
            out.append(self._render(token, layout[i:i + width]))
            i += width
        return "".join(out)

    def _render(self, token: str, text: str) -> str:
        m = self.moment
        hour12 = m.hour % 12 or 12
        simple = {
            "2006": f"{m.year:04d}", "06": f"{m.year % 100:02d}",
            "January": _MONTHS[m.month - 1], "Jan": _MONTHS[m.month - 1][:3],
            "01": f"{m.month:02d}", "1": str(m.month),
            "Monday": _DAYS[m.weekday()], "Mon": _DAYS[m.weekday()][:3],
            "02": f"{m.day:02d}", "_2": f"{m.day:2d}", "2": str(m.day),
            "002": f"{m.timetuple().tm_yday:03d}", "__2": f"{m.timetuple().tm_yday:3d}",
            "15": f"{m.hour:02d}", "03": f"{hour12:02d}", "3": str(hour12),
            "04": f"{m.minute:02d}", "4": str(m.minute),
            "05": f"{m.second:02d}", "5": str(m.second),
            "PM": "PM" if m.hour >= 12 else "AM", "pm": "pm" if m.hour >= 12 else "am",
            "MST": "UTC", "Z07:00": "Z", "Z0700": "Z", "Z07": "Z", "Z07:00:00": "Z",
            "Z070000": "Z", "-07:00": "+00:00", "-0700": "+0000", "-07": "+00",
            "-07:00:00": "+00:00:00", "-070000": "+000000",
        }
        if token in simple:
            return simple[token]
        # Fractional seconds: ".000" keeps trailing zeros, ".999" trims them.
        digits = len(text) - 1
        fraction = f"{self.nanos:09d}"[:digits]
        if token == "frac9":
            fraction = fraction.rstrip("0")
            return text[0] + fraction if fraction else ""
        return text[0] + fraction

    def method(self, name: str) -> tuple[list[str], Callable[..., object]] | None:
        """The Go methods templates commonly call on a time: (parameter types, implementation)."""
        m = self.moment
        methods: dict[str, tuple[list[str], Callable[..., object]]] = {
            "Format": (["string"], self.format),
            "String": ([], self.go_string),
            "Unix": ([], lambda: self.unix_nanos // 1_000_000_000),
            "UnixMilli": ([], lambda: self.unix_nanos // 1_000_000),
            "UnixNano": ([], lambda: self.unix_nanos),
            "Year": ([], lambda: m.year),
            "YearDay": ([], lambda: m.timetuple().tm_yday),
            "Day": ([], lambda: m.day),
            "Hour": ([], lambda: m.hour),
            "Minute": ([], lambda: m.minute),
            "Second": ([], lambda: m.second),
            "Nanosecond": ([], lambda: self.nanos),
            "UTC": ([], lambda: self),
        }
        return methods.get(name)


_STD_TOKENS = sorted(
    ["January", "Jan", "Monday", "Mon", "MST", "2006", "01", "02", "03", "04", "05", "06",
     "002", "__2", "_2", "15", "1", "2", "3", "4", "5", "PM", "pm", "Z07:00:00", "Z070000",
     "Z07:00", "Z0700", "Z07", "-07:00:00", "-070000", "-07:00", "-0700", "-07"],
    key=len, reverse=True)


def _next_chunk(layout: str, i: int) -> tuple[str | None, int]:
    """The layout element starting at ``i`` (Go's nextStdChunk, simplified), and its width."""
    rest = layout[i:]
    if rest[:1] in ".," and len(rest) > 1 and rest[1] in "09":
        digit = rest[1]
        j = 1
        while j < len(rest) and rest[j] == digit:
            j += 1
        # Go treats ".000" as fractional seconds only when not followed by a digit.
        if j == len(rest) or not rest[j].isdigit():
            return ("frac0" if digit == "0" else "frac9"), j
        return None, 1
    for token in _STD_TOKENS:
        if rest.startswith(token):
            if token in ("Jan", "Mon") and rest[3:4].islower():
                return None, 1  # "Janet" and "Month" are plain text to Go
            return token, len(token)
    return None, 1


def time_from_seconds(seconds: float) -> GoTime:
    """model.TimeFromUnixNano(int64(seconds*1e9)).Time().UTC(): millisecond resolution."""
    nanos = int(seconds * 1e9)
    millis = nanos // 1_000_000 if nanos >= 0 else -(-nanos // 1_000_000)
    return GoTime(millis * 1_000_000)

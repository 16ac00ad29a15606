"""Smoke traffic for an instance out of rotation: GET URL at RATE per second for SECONDS, whatever it answers.

    python3 smoke.py URL SECONDS RATE

Exit 0 when every request got an HTTP answer (any status: judging them is the verify step's job, from
the instance's own metrics), 1 when the instance could not be reached. Standard library only.
"""

from __future__ import annotations

import sys
import time
import urllib.error
import urllib.request


def main() -> int:
    url, seconds, rate = sys.argv[1], float(sys.argv[2]), float(sys.argv[3])
    answered: dict[int, int] = {}
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                status = response.status
        except urllib.error.HTTPError as exc:
            status = exc.code
        except OSError as exc:
            print(f"smoke: {url} unreachable: {exc}")
            return 1
        answered[status] = answered.get(status, 0) + 1
        time.sleep(1 / rate)
    print("smoke: " + ", ".join(f"{n} x {status}" for status, n in sorted(answered.items())))
    return 0


if __name__ == "__main__":
    sys.exit(main())

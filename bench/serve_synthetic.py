"""Serve N synthetic series with the agent's HttpServer, for the scrape-latency benchmark.

Run from the repository root: ``python3 -m bench.serve_synthetic --series 10000``.
Prints ``listening <port>`` once the server accepts connections, serves until
SIGTERM or SIGINT, then stops cleanly.
"""

from __future__ import annotations

import argparse
import asyncio
import signal

from prometheus_client.core import GaugeMetricFamily, Metric

from agent.http.server import HttpServer
from exporters.exposition import Exposition

SERIES_PER_FAMILY = 50


def synthetic_families(series: int) -> list[Metric]:
    """``series`` gauge series in families of 50, labelled like per-device host metrics."""
    families: list[Metric] = []
    for start in range(0, series, SERIES_PER_FAMILY):
        family = GaugeMetricFamily(
            f"bench_synthetic_{start // SERIES_PER_FAMILY}_bytes",
            "Synthetic series for the scrape-latency benchmark.",
            labels=["device", "mode"],
        )
        for index in range(start, min(start + SERIES_PER_FAMILY, series)):
            family.add_metric([f"dev{index % SERIES_PER_FAMILY}", f"m{index % 7}"], index * 1024.5)
        families.append(family)
    return families


async def serve(series: int) -> None:
    exposition = Exposition()
    exposition.update("synthetic", synthetic_families(series))
    exposition.render()
    server = HttpServer(exposition, lambda service: True, "127.0.0.1", 0)
    await server.start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    print(f"listening {server.port}", flush=True)
    try:
        await stop.wait()
    finally:
        await server.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--series", type=int, required=True, help="number of series to serve")
    args = parser.parse_args()
    if args.series < 0:
        parser.error("--series must be 0 or more")
    asyncio.run(serve(args.series))


if __name__ == "__main__":
    main()

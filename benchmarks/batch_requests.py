"""Requests needed to resolve 200 arXiv IDs: cold cache, then warm cache.

    python benchmarks/batch_requests.py [--ids 200]

Starts the loopback Atom server from tests/arxiv_server.py and resolves through the real HTTP
client with the real clock, so the printed time includes arXiv's 3 s spacing between requests.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.arxiv_server import ArxivServer, numbered_papers  # noqa: E402
from tools.sources import open_source  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ids", type=int, default=200)
    args = parser.parse_args()
    papers = numbered_papers(args.ids)
    ids = [p.id for p in papers]
    with tempfile.TemporaryDirectory() as folder, ArxivServer(papers) as server:
        cache = Path(folder) / "cache.sqlite"
        for label in ("cold cache", "warm cache"):
            source = open_source("arxiv", arxiv_url=server.url, cache_path=cache)
            before, started = len(server.requests), time.perf_counter()
            found = source.lookup(ids)
            resolved = sum(answer.status == "found" for answer in found.values())
            print(f"{label}: {resolved}/{len(ids)} IDs resolved in {len(server.requests) - before} requests, {time.perf_counter() - started:.1f}s")


if __name__ == "__main__":
    main()

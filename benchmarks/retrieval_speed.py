"""Timings of the offline literature stack: index build, search, embeddings, related-paper retrieval.

Run: python benchmarks/retrieval_speed.py   (prints one line per measurement)
"""

from __future__ import annotations

import statistics
import tempfile
import time
from pathlib import Path

from tools.embeddings import get_embedder
from tools.dense import dense_index
from tools.retrieval import find_related, paper_text
from tools.snapshot import Snapshot

QUERIES = [
    "model collapse when training on synthetic data",
    "mixing real data with generated data prevents collapse",
    "self-BLEU and distinct-n diversity metrics",
    "tails of the distribution vanish under recursive training",
    "does accumulating data avoid collapse?",
]


def timed(action):
    start = time.perf_counter()
    result = action()
    return result, time.perf_counter() - start


def main() -> None:
    snapshot, seconds = timed(Snapshot.open)
    print(f"in-memory index build ({len(snapshot)} papers): {seconds * 1000:.0f} ms")
    with tempfile.TemporaryDirectory() as home:
        _, seconds = timed(lambda: Snapshot.open(Path(home) / "index.sqlite"))
        print(f"persistent index, first build: {seconds * 1000:.0f} ms")
        _, seconds = timed(lambda: Snapshot.open(Path(home) / "index.sqlite"))
        print(f"persistent index, reopen: {seconds * 1000:.1f} ms")

    latencies = [timed(lambda q=q: snapshot.search(q, limit=20))[1] for q in QUERIES * 20]
    print(f"FTS5 search, limit 20: median {statistics.median(latencies) * 1000:.2f} ms over {len(latencies)} queries")

    texts = [paper_text(p) for p in snapshot.papers()]
    for name in ("lexical", "minilm"):
        embedder, seconds = timed(lambda name=name: get_embedder(name))
        print(f"{name}: load {seconds:.2f} s")
        _, seconds = timed(lambda: embedder.encode(texts))
        print(f"{name}: encode {len(texts)} papers (title + summary) {seconds:.2f} s")
        _, seconds = timed(lambda: embedder.encode(texts))
        print(f"{name}: encode again (cached) {seconds * 1000:.1f} ms")
        dense_index(snapshot, embedder).prepare()  # the corpus embedded (tools.dense)
        latencies = [timed(lambda q=q: find_related(q, snapshot, embedder, since=None, until=None, limit=10))[1] for q in QUERIES]
        print(f"{name}: find_related, corpus embedded: median {statistics.median(latencies) * 1000:.1f} ms over {len(QUERIES)} new queries")


if __name__ == "__main__":
    main()

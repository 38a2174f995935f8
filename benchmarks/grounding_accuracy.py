"""Citation grounding accuracy on the gold set, offline (snapshot) and live (loopback arXiv server).

    python benchmarks/grounding_accuracy.py [--gold PATH] [--mode snapshot|live|both] [--embeddings auto|lexical]

Prints per-status precision/recall, accuracy, and the dangerous errors: a real citation called
nonexistent / not_found / malformed, or a flagged one called grounded. The live run starts the
loopback Atom server from tests/arxiv_server.py with the snapshot's papers (which hold every gold
paper) and resolves through the real HTTP client; its clock is simulated, so the 3 s spacing
costs no wall time.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from datetime import date
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.arxiv_server import LIVE_ONLY_PAPERS, ArxivServer, SimulatedClock, snapshot_papers  # noqa: E402
from tools.embeddings import get_embedder  # noqa: E402
from tools.grounding import CitationCheck, verify_text  # noqa: E402
from tools.snapshot import Snapshot  # noqa: E402
from tools.sources import open_source  # noqa: E402

DEFAULT_GOLD = ROOT.parent / "shared" / "data" / "grounding_gold.jsonl"
REAL_CITATION_KILLERS = {"nonexistent", "not_found", "malformed"}


def evaluate(cases: list[dict], source, run_date: date, embedder) -> list[tuple[dict, CitationCheck | None]]:
    results = []
    for case in cases:
        checks = verify_text(case["text"], source, run_date=run_date, embedder=embedder)
        results.append((case, checks[0] if checks else None))
    return results


def report(label: str, results: list[tuple[dict, CitationCheck | None]], seconds: float) -> int:
    truth = [c["expected"] for c, _ in results]
    predicted = [check.status if check else "missed" for _, check in results]
    print(f"\n== {label}: {len(results)} cases, {seconds:.1f}s")
    print(f"{'status':<14}{'precision':>10}{'recall':>8}{'n':>5}")
    for status in sorted(set(truth) | set(predicted)):
        tp = sum(t == p == status for t, p in zip(truth, predicted))
        n_pred, n_true = predicted.count(status), truth.count(status)
        precision = f"{tp / n_pred:.2f}" if n_pred else "-"
        recall = f"{tp / n_true:.2f}" if n_true else "-"
        print(f"{status:<14}{precision:>10}{recall:>8}{n_true:>5}")
    accuracy = sum(t == p for t, p in zip(truth, predicted)) / len(results)
    dangerous = [
        (c, check) for c, check in results
        if (c["expected"] == "grounded" and check and check.status in REAL_CITATION_KILLERS)
        or (c["expected"] != "grounded" and check and check.status == "grounded")
    ]
    print(f"accuracy {accuracy:.3f}   dangerous errors {len(dangerous)}")
    for case, check in results:
        status = check.status if check else "missed"
        if status != case["expected"]:
            print(f"  case {case['case']}: expected {case['expected']}, got {status}: {check.reason if check else ''}")
    return len(dangerous)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--gold", type=Path, default=DEFAULT_GOLD)
    parser.add_argument("--mode", choices=("snapshot", "live", "both"), default="both")
    parser.add_argument("--embeddings", choices=("auto", "minilm", "lexical"), default="auto")
    args = parser.parse_args()
    cases = [json.loads(line) for line in args.gold.read_text().splitlines() if line.strip()]
    run_date = date.today()
    embedder = get_embedder(args.embeddings)
    print(f"gold: {args.gold} ({len(cases)} cases), run date {run_date}, embeddings {embedder.name}")
    if args.mode in ("snapshot", "both"):
        source = open_source("snapshot", cache_path=None, snapshot=Snapshot.open(None))
        started = time.perf_counter()
        report("offline (snapshot)", evaluate(cases, source, run_date, embedder), time.perf_counter() - started)
    if args.mode in ("live", "both"):
        clock = SimulatedClock()
        with ArxivServer(snapshot_papers() + LIVE_ONLY_PAPERS, clock=clock) as server:
            source = open_source("arxiv", arxiv_url=server.url, cache_path=None, clock=clock)
            started = time.perf_counter()
            results = evaluate(cases, source, run_date, embedder)
            report(f"live (loopback arXiv, {len(server.requests)} requests)", results, time.perf_counter() - started)


if __name__ == "__main__":
    main()

"""Citation grounding accuracy on case files, offline (snapshot) and live (loopback arXiv server).

    python benchmarks/grounding_accuracy.py [--gold PATH ...] [--mode snapshot|live|both]
                                            [--embeddings auto|minilm|lexical] [--findings shown|hidden]
                                            [--llm none|openai] [--errors]

Case files are JSON lines with the gold set's fields (`case`, `text`, `arxiv_id`, `expected`, ...);
the default is the hand-written gold (tests/data/grounding_gold.jsonl) and the generated cases
(tests/data/citation_cases.jsonl, from benchmarks/citation_cases.py). A case is scored on the
citation with its `arxiv_id` (the first citation when it has none); `expected_offline`, when
present, is what the snapshot alone can say. Files with a `split` field are reported per split
(`dev`: where thresholds were chosen; `heldout`: never looked at while tuning).

Prints per-status precision/recall, accuracy, and the dangerous errors: a real citation called
nonexistent / not_found / malformed, or a flagged one called grounded. The live run starts the
loopback Atom server from tests/arxiv_server.py with the snapshot's papers (one version each, so
cited versions above v1 are "above those listed") plus papers only the live API holds, and
resolves through the real HTTP client; its clock is simulated, so the 3 s spacing costs no wall time.

`--findings hidden` strips the snapshot's `findings` (our paraphrased key results) from every paper
the grounding sees. The generated cases restate papers from those findings, so hiding them asks
what matters for papers we hold only an abstract of, and for sentences that are not copies of what
we hold: the content must then be recognised as a paraphrase.

`--llm openai` also asks a model, through any OpenAI-compatible endpoint (OPENAI_BASE_URL /
OPENAI_API_KEY / COLLAPSE_AUDIT_MODEL; none configured: one line, exit 3), the fit question for every
citation whose ID resolved: does this sentence describe this paper? (agent/llm_analyst.py
`citation_fit`, prompts/citation_fit.md.j2: yes / no / undetermined.) The model's status is the
offline check's where the model is not asked (no ID, malformed, nonexistent, not found, unverifiable);
where it is, the model's answer and the offline check combine as a run with a model combines them
(tools/grounding.py `with_model_fit`: the model judges the content, code keeps identity conflicts
and the year). The summary then prints the offline and the model figures side by side, and the
tokens the model used with their cost (tools/llm_costs.py).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from collections import defaultdict
from datetime import date
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.arxiv_server import LIVE_ONLY_PAPERS, ArxivServer, SimulatedClock, snapshot_papers  # noqa: E402
from tools.arxiv_id import canonical  # noqa: E402
from tools.embeddings import get_embedder  # noqa: E402
from tools.grounding import CitationCheck, fit_readings, verify_text, with_model_fit  # noqa: E402
from tools.snapshot import Snapshot  # noqa: E402
from tools.sources import open_source  # noqa: E402

EXIT_NO_LLM = 3
EXIT_LLM_FAILED = 2
DEFAULT_FILES = [ROOT / "tests" / "data" / "grounding_gold.jsonl", ROOT / "tests" / "data" / "citation_cases.jsonl"]
REAL_CITATION_KILLERS = {"nonexistent", "not_found", "malformed"}
REAL_PAPER = {"grounded", "wrong_paper", "year_mismatch"}  # expected statuses whose ID is a real paper

Result = tuple[dict, str, CitationCheck | None]  # case, expected status in this mode, check


def load_cases(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def pick(case: dict, checks: list[CitationCheck]) -> CitationCheck | None:
    """The check of the case's citation: its ID (canonical), else the first."""
    if case.get("arxiv_id"):
        wanted = canonical(case["arxiv_id"])
        for check in checks:
            if check.arxiv_id in (wanted, case["arxiv_id"]):
                return check
    return checks[0] if checks else None


def evaluate(cases: list[dict], source, run_date: date, embedder, offline: bool) -> list[Result]:
    results = []
    for case in cases:
        checks = verify_text(case["text"], source, run_date=run_date, embedder=embedder)
        expected = case.get("expected_offline", case["expected"]) if offline else case["expected"]
        results.append((case, expected, pick(case, checks)))
    return results


def is_dangerous(case: dict, expected: str, check: CitationCheck | None) -> bool:
    if check is None:
        return False
    real = case["expected"] in REAL_PAPER
    return (real and check.status in REAL_CITATION_KILLERS) or (expected != "grounded" and check.status == "grounded")


def report(label: str, results: list[Result], seconds: float, *, show_errors: bool) -> dict:
    truth = [expected for _, expected, _ in results]
    predicted = [check.status if check else "missed" for _, _, check in results]
    print(f"\n== {label}: {len(results)} cases, {seconds:.1f}s")
    print(f"{'status':<14}{'precision':>10}{'recall':>8}{'n':>5}")
    for status in sorted(set(truth) | set(predicted)):
        tp = sum(t == p == status for t, p in zip(truth, predicted))
        n_pred, n_true = predicted.count(status), truth.count(status)
        precision = f"{tp / n_pred:.2f}" if n_pred else "-"
        recall = f"{tp / n_true:.2f}" if n_true else "-"
        print(f"{status:<14}{precision:>10}{recall:>8}{n_true:>5}")
    accuracy = sum(t == p for t, p in zip(truth, predicted)) / len(results) if results else 0.0
    dangerous = [(c, check) for c, e, check in results if is_dangerous(c, e, check)]
    print(f"accuracy {accuracy:.3f}   dangerous errors {len(dangerous)}")
    if show_errors:
        for case, expected, check in results:
            status = check.status if check else "missed"
            if status != expected:
                flag = " DANGEROUS" if is_dangerous(case, expected, check) else ""
                print(f"  case {case['case']} [{case.get('shape', '')}]: expected {expected}, got {status}{flag}: {case['text'][:160]!r}")
                print(f"      {check.reason if check else ''}")
    return {"accuracy": accuracy, "dangerous": len(dangerous), "n": len(results)}


def report_file(label: str, results: list[Result], seconds: float, show_errors: bool) -> dict[str, dict]:
    by_split: dict[str, list[Result]] = defaultdict(list)
    for result in results:
        by_split[result[0].get("split", "all")].append(result)
    figures = {}
    for split in sorted(by_split, key=lambda s: {"dev": 0, "heldout": 1}.get(s, 2)):
        name = f"{label}" if split == "all" else f"{label} [{split}]"
        figures[split] = report(name, by_split[split], seconds * len(by_split[split]) / len(results), show_errors=show_errors)
    return figures


def llm_analyst(embedder):
    """The LLM analyst on the configured endpoint; with none configured, one line and exit 3."""
    from agent.analyst import OfflineAnalyst
    from agent.llm_analyst import configured_analyst
    from tools.llm import LLMError

    try:
        return configured_analyst(OfflineAnalyst(embedder))
    except LLMError as error:
        print(str(error))
        raise SystemExit(EXIT_NO_LLM) from None


def with_model(results: list[Result], source, analyst) -> tuple[list[Result], dict]:
    """The results with the model's fit answer combined in, as a run with a model combines it."""
    from agent.nodes.grounding import fit_answers
    from tools.llm import LLMError

    try:
        answers = fit_answers([check for _, _, check in results], source, analyst)
    except LLMError as error:
        print(f"LLM stopped: {error}")
        raise SystemExit(EXIT_LLM_FAILED) from None
    asked = [a for a in answers if a is not None]
    counts = {"asked": len(asked), "undetermined": sum(a.fits == "undetermined" for a in asked),
              "failed": sum(a.failed for a in asked)}
    out = [(case, expected, check if answer is None else
            with_model_fit(check, answer.fits, f"({answer.confidence:.2f}) {answer.reason}"))
           for (case, expected, check), answer in zip(results, answers)]
    return out, counts


def open_snapshot(findings: str) -> Snapshot:
    if findings == "shown":
        return Snapshot.open(None)
    packaged = ROOT / "tools" / "data" / "arxiv_snapshot.jsonl"
    records = [json.loads(line) for line in packaged.read_text(encoding="utf-8").splitlines() if line.strip()]
    with tempfile.TemporaryDirectory() as folder:
        stripped = Path(folder) / "snapshot.jsonl"
        stripped.write_text("".join(json.dumps({**r, "findings": []}) + "\n" for r in records), encoding="utf-8")
        return Snapshot.open(None, packaged=stripped)


def readings(source, embedder) -> str:
    """How many fits the wording settled, and how many the embedder read again (tools/grounding.py)."""
    counts = fit_readings(source)
    by_wording = counts.get("lexical", 0)
    if embedder.name == "lexical":
        return f"fits read: {by_wording}, by wording alone (lexical embedder)"
    again = counts.get(embedder.name, 0)
    return f"fits read: {by_wording}; settled by wording {by_wording - again}, read again by {embedder.name} {again}"


def main(argv: list[str] | None = None) -> list[tuple]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--gold", type=Path, action="append", help="a case file (repeatable); default: gold + generated cases")
    parser.add_argument("--mode", choices=("snapshot", "live", "both"), default="both")
    parser.add_argument("--embeddings", choices=("auto", "minilm", "lexical"), default="auto")
    parser.add_argument("--run-date", type=date.fromisoformat, default=None, help="default: today")
    parser.add_argument("--findings", choices=("shown", "hidden"), default="shown", help="hidden: ground without the snapshot's findings")
    parser.add_argument("--errors", action="store_true", help="print every case scored wrong, with the reason")
    parser.add_argument("--llm", choices=("none", "openai"), default="none",
                        help="openai: also ask a model whether each resolved citation's sentence describes its paper")
    args = parser.parse_args(argv)
    files = args.gold or [f for f in DEFAULT_FILES if f.exists()]
    run_date = args.run_date or date.today()
    embedder = get_embedder(args.embeddings)
    analyst = llm_analyst(embedder) if args.llm == "openai" else None  # no endpoint: one line, before any work
    print(f"run date {run_date}, embeddings {embedder.name}, findings {args.findings}"
          + (f", model {analyst.client.model!r} at {analyst.client.endpoint}" if analyst else ""))
    summary = []

    def score(path: Path, mode: str, label: str, results: list[Result], seconds: float, source) -> None:
        figures = report_file(label, results, seconds, args.errors)
        model = {}
        if analyst is not None:
            started = time.perf_counter()
            answered, counts = with_model(results, source, analyst)
            print(f"\nmodel asked {counts['asked']} citations: {counts['undetermined']} undetermined "
                  f"({counts['failed']} of them because the model failed)")
            model = report_file(f"{label} + model fit", answered, time.perf_counter() - started, args.errors)
        for split, fig in figures.items():
            summary.append((path.name, mode, split, fig, model.get(split)))
    for path in files:
        cases = load_cases(path)
        print(f"\n### {path} ({len(cases)} cases)")
        if args.mode in ("snapshot", "both"):
            source = open_source("snapshot", cache_path=None, snapshot=open_snapshot(args.findings))
            started = time.perf_counter()
            results = evaluate(cases, source, run_date, embedder, offline=True)
            score(path, "offline", f"{path.name} offline (snapshot)", results, time.perf_counter() - started, source)
            print(readings(source, embedder))
        if args.mode in ("live", "both"):
            clock = SimulatedClock()
            with ArxivServer(snapshot_papers() + LIVE_ONLY_PAPERS, clock=clock, lifetime=3600) as server:
                # in arxiv mode the snapshot only calibrates similarity; every answer comes from the server
                source = open_source("arxiv", arxiv_url=server.url, cache_path=None, clock=clock, snapshot=open_snapshot(args.findings))
                started = time.perf_counter()
                results = evaluate(cases, source, run_date, embedder, offline=False)
                label = f"{path.name} live (loopback arXiv, {len(server.requests)} requests)"
                score(path, "live", label, results, time.perf_counter() - started, source)
    print("\n== summary")
    if analyst is None:
        for name, mode, split, fig, _ in summary:
            print(f"{name:<28}{mode:<9}{split:<9}n={fig['n']:<5} accuracy {fig['accuracy']:.3f}  dangerous {fig['dangerous']}")
        return summary
    print(f"{'':<46}{'offline grounding':<22}{'+ model fit':<22}")
    print(f"{'case file':<28}{'mode':<9}{'split':<9}{'accuracy':>9}{'dangerous':>11}  {'accuracy':>9}{'dangerous':>11}  n")
    for name, mode, split, fig, model in summary:
        print(f"{name:<28}{mode:<9}{split:<9}{fig['accuracy']:>9.3f}{fig['dangerous']:>11}  "
              f"{model['accuracy']:>9.3f}{model['dangerous']:>11}  {fig['n']}")
    print(usage_line(analyst.client))
    return summary


def usage_line(client) -> str:
    """The tokens the model used, per stage, and their cost at the configured price table."""
    from agent.config import Settings
    from tools.llm_costs import PriceTable, PriceTableError, load_prices, usage_summary

    try:
        prices = load_prices(Settings().llm_prices_path)
    except PriceTableError as error:
        print(str(error))
        prices = PriceTable(source="none")
    figures = usage_summary(client.usage, prices)
    total = figures["total"]
    cost = f"${total['cost_usd']:.4f} at {prices.source}" if total["cost_usd"] is not None else (
        f"not computed (no price for {', '.join(figures['prices']['unpriced_models']) or 'some replies'})")
    return (f"model usage: {total['requests']} requests, {total['prompt_tokens']:,} prompt + "
            f"{total['completion_tokens']:,} completion tokens; cost {cost}")


if __name__ == "__main__":
    main()

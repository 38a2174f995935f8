"""Stance accuracy on the stance gold: the offline judge (or an LLM) against hand labels, per split.

    python benchmarks/stance_accuracy.py [--gold PATH] [--llm none|openai] [--split dev|held_out|all]
                                         [--fit] [--embeddings auto|minilm|lexical] [--errors]
                                         [--papers JSONL ...]

Gold lines are `{"case", "assertion", "arxiv_id", "expected", "note"}` (default tests/data/stance_dev.jsonl,
a copy of ../shared/data/stance_dev.jsonl). The gold is split deterministically by the assertion text
(sha256 of the whitespace-normalised assertion; even = `dev`, odd = `held_out`), so every pair of one
assertion lands in the same half. Thresholds are chosen on `dev` only (`--fit`) and reported on
`held_out`, which the fit never sees.

Prints, per split, a per-label precision/recall table and the abstentions; without --split it prints
dev and then held-out. The last line is one JSON object for the last split printed:
`{"accuracy", "answered", "abstention", "opposite_errors"}` — accuracy over answered pairs, answered
and abstention as shares of all pairs, opposite errors = `supports` given for a `contradicts` gold or
the reverse.

`--fit` runs the threshold search on dev (grid below; the largest answered share with supports and
contradicts precision >= 0.9, no opposite error and answered accuracy >= 0.7; ties go to higher
accuracy, then stricter thresholds), prints the chosen `Thresholds`, and reports both splits with them.
The judge's defaults (agent/stance_judge.py) are literals copied from that output.

Papers come from the packaged snapshot (tools/snapshot.py); a gold paper the package lacks is looked up
in the `--papers` files (default: ../shared/data/arxiv_snapshot.jsonl when it exists), and a pair whose
paper is found nowhere is reported and left out.

`--llm openai` asks an OpenAI-compatible endpoint (OPENAI_BASE_URL / OPENAI_API_KEY / COLLAPSE_AUDIT_MODEL)
the same question per pair, as a run asks it (agent/llm_analyst.py `assess`, prompts/stance.md.j2, the
assertion standing as its own claim), with "undetermined" as a sixth answer; a pair the model fails
on is judged by the offline judge as in a run, and counted; with no endpoint configured it prints
one line and exits 3.
"""

from __future__ import annotations

import argparse
import hashlib
import itertools
import json
import sys
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import asdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from agent.stance_judge import (
    STANCES,
    OfflineStanceJudge,
    Signals,
    StanceJudgement,
    Thresholds,
    decide,
    default_thresholds,
)
from tools.papers import Paper

DEFAULT_GOLD = ROOT / "tests" / "data" / "stance_dev.jsonl"
SHARED_SNAPSHOT = ROOT.parent / "shared" / "data" / "arxiv_snapshot.jsonl"
SPLITS = ("dev", "held_out")
EXIT_NO_LLM = 3
EXIT_LLM_FAILED = 2

# The threshold grids --fit searches (cosine / alignment units); word-overlap similarities run lower.
GRIDS = {
    "minilm": {
        "unrelated": [0.20, 0.24, 0.28, 0.32, 0.36, 0.40],
        "position": [0.30, 0.35, 0.40, 0.45, 0.50, 0.55, 0.60],
        "supports": [0.45, 0.50, 0.55, 0.60, 0.65, 0.70, 0.75, 0.80],
        "contradicts": [0.40, 0.45, 0.50, 0.55, 0.60, 0.65, 0.70, 0.75, 0.80],
        "restate": [0.55, 0.60, 0.65, 0.70, 0.75, 0.80, 0.85, 0.90],
        "dominance": [0.1, 0.15, 0.2, 0.3, 1.0],  # 1.0: never
    },
    "lexical": {
        "unrelated": [0.04, 0.08, 0.12, 0.16, 0.20, 0.24],
        "position": [0.15, 0.20, 0.25, 0.30, 0.35, 0.40, 0.45],
        "supports": [0.30, 0.35, 0.40, 0.45, 0.50, 0.55, 0.60, 0.65],
        "contradicts": [0.25, 0.30, 0.35, 0.40, 0.45, 0.50, 0.55, 0.60, 0.65],
        "restate": [0.40, 0.45, 0.50, 0.55, 0.60, 0.65, 0.70, 0.75],
        "dominance": [0.1, 0.15, 0.2, 0.3, 1.0],
    },
}
MIN_PRECISION = 0.9  # supports and contradicts, on dev
MIN_ACCURACY = 0.7  # over answered dev pairs, so that background/unrelated answers are not given blindly

Case = dict
Predict = Callable[[Case, Paper], StanceJudgement]


def load_gold(path: Path) -> list[Case]:
    cases = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    for case in cases:
        missing = {"case", "assertion", "arxiv_id", "expected"} - case.keys()
        if missing:
            raise ValueError(f"{path}: case {case.get('case', '?')} lacks {', '.join(sorted(missing))}")
        if case["expected"] not in STANCES:
            raise ValueError(f"{path}: case {case['case']} expects {case['expected']!r}, not one of {STANCES}")
    return cases


def split_of(assertion: str) -> str:
    """'dev' or 'held_out', from a hash of the assertion text, so an assertion's pairs stay together."""
    digest = hashlib.sha256(" ".join(assertion.split()).encode("utf-8")).hexdigest()
    return "dev" if int(digest, 16) % 2 == 0 else "held_out"


def load_papers(ids: set[str], extra_files: Sequence[Path]) -> tuple[dict[str, Paper], list[str]]:
    """Papers by ID from the packaged snapshot, then from the extra JSONL files; and where each came from."""
    from tools.snapshot import Snapshot, _packaged_paper

    snapshot = Snapshot.open()
    try:
        papers = snapshot.get_many(ids)
    finally:
        snapshot.close()
    notes = []
    for path in extra_files:
        wanted = ids - papers.keys()
        if not wanted or not path.exists():
            continue
        found = 0
        for line in path.read_text(encoding="utf-8").splitlines():
            if line.strip():
                record = json.loads(line)
                if record.get("id") in wanted:
                    papers[record["id"]] = _packaged_paper(record)
                    found += 1
        if found:
            notes.append(f"{found} gold paper(s) not in the packaged snapshot were read from {path}")
    return papers, notes


def metrics(rows: list[tuple[Case, StanceJudgement]]) -> dict:
    n = len(rows)
    answered = [(c, j) for c, j in rows if j.stance is not None]
    correct = sum(c["expected"] == j.stance for c, j in answered)
    opposite = sum({c["expected"], j.stance} == {"supports", "contradicts"} for c, j in answered)
    return {
        "accuracy": round(correct / len(answered), 3) if answered else 0.0,
        "answered": round(len(answered) / n, 3) if n else 0.0,
        "abstention": round((n - len(answered)) / n, 3) if n else 0.0,
        "opposite_errors": opposite,
    }


def per_label(rows: list[tuple[Case, StanceJudgement]]) -> dict[str, tuple[float | None, float | None, int, int]]:
    """label -> (precision, recall, predicted, gold); abstentions count against recall."""
    table = {}
    for label in STANCES:
        predicted = [c for c, j in rows if j.stance == label]
        gold = [j for c, j in rows if c["expected"] == label]
        hits = sum(c["expected"] == label for c in predicted)
        table[label] = (
            hits / len(predicted) if predicted else None,
            sum(j.stance == label for j in gold) / len(gold) if gold else None,
            len(predicted),
            len(gold),
        )
    return table


def report(label: str, rows: list[tuple[Case, StanceJudgement]], *, show_errors: bool) -> dict:
    assertions = len({c["assertion"] for c, _ in rows})
    print(f"\n== {label}: {len(rows)} pairs, {assertions} assertions")
    print(f"{'stance':<12} {'precision':>9} {'recall':>7} {'given':>6} {'gold':>5}")
    for stance, (precision, recall, given, gold) in per_label(rows).items():
        p = f"{precision:.2f}" if precision is not None else "-"
        r = f"{recall:.2f}" if recall is not None else "-"
        print(f"{stance:<12} {p:>9} {r:>7} {given:>6} {gold:>5}")
    abstained = [c for c, j in rows if j.stance is None]
    by_gold = Counter(c["expected"] for c in abstained)
    print(f"{'abstained':<12} {'':>9} {'':>7} {len(abstained):>6}   ({', '.join(f'{k} {v}' for k, v in sorted(by_gold.items())) or 'none'})")
    result = metrics(rows)
    print(
        f"accuracy over answered {result['accuracy']:.3f}; answered {result['answered']:.3f}; "
        f"opposite errors {result['opposite_errors']}"
    )
    if show_errors:
        for case, judgement in rows:
            if judgement.stance != case["expected"]:
                print(f"  {case['case']} gold={case['expected']} got={judgement.stance}: {judgement.reason[:160]}")
    return result


def acceptable(rows: list[tuple[Case, StanceJudgement]]) -> tuple[bool, dict]:
    table = per_label(rows)
    result = metrics(rows)
    ok = result["opposite_errors"] == 0 and result["accuracy"] >= MIN_ACCURACY
    for label in ("supports", "contradicts"):
        precision = table[label][0]
        ok = ok and (precision is None or precision >= MIN_PRECISION)
    return ok, result


def fit(dev: list[tuple[Case, Signals]], grid: dict[str, list[float]]) -> tuple[Thresholds, dict]:
    """The grid point with the largest answered share on dev that meets the precision constraints."""
    best: tuple | None = None
    names = list(grid)
    for values in itertools.product(*(grid[name] for name in names)):
        t = Thresholds(**dict(zip(names, values, strict=True)))
        if not (t.position <= t.supports <= t.restate and t.position <= t.contradicts):
            continue
        ok, result = acceptable([(case, decide(found, t)) for case, found in dev])
        if not ok:
            continue
        strictness = t.supports + t.contradicts + t.restate + t.position + t.dominance - t.unrelated
        score = (result["answered"], result["accuracy"], strictness)
        if best is None or score > best[0]:
            best = (score, t, result)
    if best is None:
        raise SystemExit("no threshold in the grid meets the constraints on dev")
    return best[1], best[2]


def offline_rows(
    cases: list[Case], papers: dict[str, Paper], embeddings: str
) -> tuple[list[tuple[Case, Signals]], OfflineStanceJudge]:
    from tools.embeddings import get_embedder

    judge = OfflineStanceJudge(get_embedder(embeddings))
    judge.warm([(case["assertion"], papers[case["arxiv_id"]]) for case in cases])
    return [(case, judge.signals(case["assertion"], papers[case["arxiv_id"]])) for case in cases], judge


def llm_judge():
    """The LLM analyst on the configured endpoint (the offline judge in its place where the model
    fails, as in a run); with none configured, one line and exit 3."""
    from agent.analyst import OfflineAnalyst
    from agent.llm_analyst import configured_analyst
    from tools.embeddings import get_embedder
    from tools.llm import LLMError

    try:
        return configured_analyst(OfflineAnalyst(get_embedder("lexical")))
    except LLMError as error:
        print(str(error))
        raise SystemExit(EXIT_NO_LLM) from None


def llm_predict(analyst, cases: list[Case], papers: dict[str, Paper]) -> list[tuple[Case, StanceJudgement]]:
    """The analyst's stance per pair; the assertion stands as its own claim, undated."""
    from agent.analyst import concurrently
    from agent.assertions import Assertion
    from agent.models import Claim
    from tools.llm import LLMError

    def judge(case: Case):
        text = case["assertion"]
        assertion = Assertion(id="A.a", text=text, start=0, end=len(text))
        return analyst.assess(assertion, Claim(id="A", text=text), papers[case["arxiv_id"]], 0.0, "benchmark pair")

    try:
        judged = concurrently(analyst, judge, cases)
    except LLMError as error:
        print(f"LLM judge stopped: {error}")
        raise SystemExit(EXIT_LLM_FAILED) from None
    fell_back = sum(e.fallback for e in judged)
    if fell_back:
        print(f"the model failed on {fell_back} of {len(cases)} pairs; the offline judge judged them, as in a run")
    return [(case, StanceJudgement(stance=e.stance, confidence=e.confidence, quote=e.quote, reason=e.rationale))
            for case, e in zip(cases, judged)]


def main(argv: Sequence[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--gold", type=Path, default=DEFAULT_GOLD)
    parser.add_argument("--llm", choices=["none", "openai"], default="none")
    parser.add_argument("--split", choices=["dev", "held_out", "all"], default=None)
    parser.add_argument("--fit", action="store_true", help="choose thresholds on dev (offline judge only)")
    parser.add_argument("--embeddings", choices=["auto", "minilm", "lexical"], default="auto")
    parser.add_argument("--papers", type=Path, nargs="*", default=[SHARED_SNAPSHOT])
    parser.add_argument("--errors", action="store_true", help="list every wrong or abstained pair")
    args = parser.parse_args(argv)
    if args.fit and args.llm != "none":
        parser.error("--fit chooses the offline judge's thresholds; it does not apply to --llm openai")

    started = time.perf_counter()
    llm = llm_judge() if args.llm == "openai" else None  # before any output: no endpoint is one line
    cases = load_gold(args.gold)
    papers, notes = load_papers({c["arxiv_id"] for c in cases}, args.papers)
    for note in notes:
        print(note)
    absent = [c for c in cases if c["arxiv_id"] not in papers]
    if absent:
        print(f"left out {len(absent)} pair(s) whose paper is in no snapshot: {', '.join(c['case'] for c in absent)}")
    cases = [c for c in cases if c["arxiv_id"] in papers]
    halves = {name: [c for c in cases if split_of(c["assertion"]) == name] for name in SPLITS}
    print(
        f"gold {args.gold.name}: {len(cases)} pairs; split by assertion hash: "
        + ", ".join(f"{name} {len(rows)} pairs / {len({c['assertion'] for c in rows})} assertions" for name, rows in halves.items())
    )

    if llm is not None:
        rows = llm_predict(llm, cases, papers)
        judged_by = f"LLM {llm.client.model} at {llm.client.endpoint}"
    else:
        found, judge = offline_rows(cases, papers, args.embeddings)
        thresholds = judge.thresholds
        if args.fit:
            dev = [(c, s) for c, s in found if split_of(c["assertion"]) == "dev"]
            thresholds, dev_result = fit(dev, GRIDS["lexical" if judge.embedder.name == "lexical" else "minilm"])
            print(f"\nfit on dev ({len(dev)} pairs, embeddings {judge.embedder.name}): {thresholds}")
            print(f"dev at the chosen thresholds: {json.dumps(dev_result)}")
            print(f"as a literal: Thresholds({', '.join(f'{k}={v}' for k, v in asdict(thresholds).items())})")
            if thresholds != default_thresholds(judge.embedder):
                print(f"(the judge's current defaults for {judge.embedder.name} differ: {default_thresholds(judge.embedder)})")
        rows = [(c, decide(s, thresholds)) for c, s in found]
        judged_by = f"offline judge, embeddings {judge.embedder.name}, {thresholds}"

    print(f"\njudged by: {judged_by}")
    by_split = {name: [(c, j) for c, j in rows if split_of(c["assertion"]) == name] for name in SPLITS}
    order = [args.split] if args.split else list(SPLITS)
    result: dict = {}
    for name in order:
        selected = rows if name == "all" else by_split[name]
        result = report(name, selected, show_errors=args.errors)
    print(f"\n({time.perf_counter() - started:.1f} s)")
    print(json.dumps(result))
    return result


if __name__ == "__main__":
    main()

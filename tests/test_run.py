"""`collapse-audit run` end to end on the default inquiry, resume after a crash, and every bad-input path."""

from __future__ import annotations

import json
import re
from html import escape as html_escape
from pathlib import Path

import pytest
import torch

from agent.models import SCHEMA_VERSION, Report, migrate_report
from agent.verdicts import EVIDENCE_STANCES, Judged, assertion_verdict
from simulations.analysis import Boundary, CellEffect, ScaleTest, Stationarity
from tests.subprocess_cli import Result, run_cli


@pytest.fixture(scope="module")
def audit(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Result]:
    root = tmp_path_factory.mktemp("audit")
    out = root / "report"
    result = run_cli("run", "--sim-budget", "tiny", "--out", str(out), home=root / "home")
    assert result.returncode == 0, result.stderr
    return out, result


def test_run_writes_every_report_format(audit):
    out, result = audit
    report = Report.model_validate_json((out / "report.json").read_text())
    assert [c.id for c in report.claims] == ["C1", "C2", "C3", "C4"]
    figures = sorted((out / "figures").glob("*.png"))
    assert figures, "the simulation figures are part of the report"
    html = (out / "report.html").read_text()
    assert html.count("data:image/png;base64,") == len(figures), "the HTML embeds every figure"
    md = (out / "report.md").read_text()
    for section in ("## Bottom line", "## Claims", "## Flagged citations", "## Simulation evidence",
                    "## Follow-up questions", "## The inquiry's tasks", "## Method and reproducibility"):
        assert section in md
    assert "citations grounded" in result.stderr and "report written" in result.stderr


def test_report_bib_holds_every_grounded_citation_and_listed_paper(audit):
    out, _ = audit
    report = json.loads((out / "report.json").read_text())
    bib = (out / "report.bib").read_text()
    keys = re.findall(r"^@misc\{arxiv:([^,]+),$", bib, re.M)
    grounded = {c["arxiv_id"] for c in report["citations"] if c["status"] == "grounded"}
    listed = {e["arxiv_id"] for c in report["claims"] for a in c["assertions"] for e in a["evidence"]}
    assert set(keys) == grounded | listed and len(keys) == len(set(keys))
    entry = bib.split("@misc{arxiv:2305.17493,")[1].split("\n}\n")[0]
    assert "title = {{The Curse of Recursion" in entry and "Shumailov" in entry and "year = {2023}" in entry
    assert len(re.findall(r"(?<!\\)\{", bib)) == len(re.findall(r"(?<!\\)\}", bib)), "unescaped braces balance"


def test_markdown_tables_are_well_formed(audit):
    out, _ = audit
    lines = (out / "report.md").read_text().splitlines()
    tables = [i for i, line in enumerate(lines) if set(line.replace("|", "").strip()) == {"-"}]
    assert tables, "the report has tables"
    for i in tables:
        header = lines[i - 1].count("|")
        assert lines[i].count("|") == header, lines[i - 1]
        for row in lines[i + 1:]:
            if not row.startswith("|"):
                break
            assert row.count("|") - row.count("\\|") == header, row


def test_report_content_is_computed_from_the_run(audit):
    out, _ = audit
    report = json.loads((out / "report.json").read_text())
    by_id = {c["id"]: c for c in report["claims"]}
    assert [c["status"] for c in by_id["C2"]["citations"]] == ["no_id"], "the undated-ID ratio claim has no arXiv ID"
    assert {c["arxiv_id"] for c in by_id["C3"]["citations"]} == {"2410.18447", "2603.29791"}
    assert len(report["follow_up_questions"]) == 2
    assert all(q["grounded_in"] for q in report["follow_up_questions"])
    assert {t["task_id"] for t in report["tasks"]} >= {"1a", "1b", "2", "3a", "3b"}
    assert report["method"]["claim_coverage"] == {"claims": 4, "with_checkable_id": 3, "share": 0.75}
    # the inquiry's task 3 asks for two questions, (a) and (b): each is asked in its words, with the lab's results
    first, second = report["follow_up_questions"]
    assert first["question"].startswith("If diversity is the true lever") and "task 3a" in first["grounded_in"]
    assert second["question"].startswith("Do multi-agent or retrieval-augmented") and "task 3b" in second["grounded_in"]
    assert any(g.startswith("simulations.boundaries[") for g in first["grounded_in"]), "3a: built from a boundary"
    assert any(g.startswith("simulations.") for g in second["grounded_in"]), "3b: a lab result too"
    assert set(first["grounded_in"]) & set(second["grounded_in"]) <= {"simulations.result"} | {
        g for g in first["grounded_in"] if not g.startswith("simulations.")}, "each brings its own lab result"
    assert report["title"] == "Claims about synthetic-data-induced model collapse"
    for claim in report["claims"]:
        for e in claim["evidence"]:
            assert e["rationale"].startswith("heuristic:"), "offline judgements say they are heuristic"


FIVE = {"supported", "partly_supported", "contested", "refuted", "insufficient_evidence"}


def test_verdicts_rest_only_on_evidence_stances(audit):
    out, _ = audit
    raw = json.loads((out / "report.json").read_text())
    assert raw["schema_version"] == SCHEMA_VERSION == 2
    report = Report.model_validate(raw)
    for claim in report.claims:
        assert claim.assertions and all(a.id.startswith(f"{claim.id}.") for a in claim.assertions)
        assert claim.verdict.label in FIVE
        assert claim.verdict.durability in ("durable", "perishable", "unassessed") and claim.verdict.durability_reason
        assert claim.citation_support
        for a in claim.assertions:
            assert a.label in FIVE and a.text in claim.text and a.reason
            sources = [*a.evidence, *a.cited]
            assert all(e.assertion_id == a.id for e in sources)
            assert all(e.retrieved_because for e in sources), "every paper says why it was retrieved"
            assert all(e.retrieved_because == "cited by the claim" for e in a.cited)
            # What a verdict rests on is every source with an evidence stance, and nothing else.
            positions = {e.arxiv_id for e in sources if e.is_evidence} | {s.key for s in a.simulation
                                                                          if s.stance in EVIDENCE_STANCES}
            rests = [r.rsplit(" ", 1) for r in a.rests_on]
            assert all(stance in EVIDENCE_STANCES for _, stance in rests), a.rests_on
            assert {ref for ref, _ in rests} == positions, a.id
            context_only = {e.arxiv_id for e in sources if e.stance == "background"} - positions
            assert not context_only & {ref for ref, _ in rests}, "background is never agreement"
            # The label is the calculus's, recomputed from the report's own stances.
            judged = ([Judged(source="literature", ref=e.arxiv_id, stance=e.stance, confidence=e.confidence,
                              newer_than_claim=e.newer_than_claim) for e in a.evidence]
                      + [Judged(source="cited", ref=e.arxiv_id, stance=e.stance, confidence=e.confidence,
                                newer_than_claim=e.newer_than_claim) for e in a.cited]
                      + [Judged(source="simulation", ref=s.key, stance=s.stance, newer_than_claim=True)
                         for s in a.simulation])  # fmt: skip
            recomputed = assertion_verdict(judged)
            assert (recomputed.label, recomputed.rests_on) == (a.label, a.rests_on), a.id
            assert a.simulation or "no simulation result" in a.simulation_note
    # The offline run abstains where its signals cannot decide, and says so.
    stances = [e.stance for c in report.claims for a in c.assertions for e in a.evidence]
    assert None in stances and "background" in stances
    judgements = report.method["judgements"]
    assert judgements["heuristic"] == sum(len(a.evidence) + len(a.cited) for c in report.claims for a in c.assertions)
    assert judgements["model"] == 0 and judgements["undetermined"] == sum(s is None for s in stances) + sum(
        e.stance is None for c in report.claims for a in c.assertions for e in a.cited)


def test_report_md_shows_assertions_and_keeps_background_out_of_the_evidence(audit):
    out, _ = audit
    report = Report.model_validate_json((out / "report.json").read_text())
    md = (out / "report.md").read_text()
    claims = md[md.index("## Claims"):md.index("## Flagged citations")]
    header = next(line for line in claims.splitlines() if line.startswith("| claim |"))
    columns = [h.strip() for h in header.strip("|").split("|")]
    assert columns[3:] == ["verdict", "durability (this run)", "labelled", "evidence (supports / qualifies / contradicts)",
                           "context, not evidence"]  # fmt: skip
    rows = {row.split("**")[1]: [x.strip() for x in row.strip("|").split(" | ")] for row in _table(claims, "| claim |")}
    for claim in report.claims:
        row = rows[claim.id]
        assert row[3] == claim.verdict.label.replace("_", " ")
        assert row[4].startswith(f"{claim.verdict.durability}: ")
        assert row[5] == (claim.durability if claim.durability != "unassessed" else "not labelled")
        assert "background" not in row[6] and "undetermined" not in row[6] and "unrelated" not in row[6]
        rested_on = {r.rsplit(" ", 1)[0] for a in claim.assertions for r in a.rests_on}
        assert set(re.findall(r"\d{4}\.\d{4,5}|simulations\.\w+", row[6])) == rested_on, "only what a verdict rests on"
        for a in claim.assertions:
            assert f"#### {a.id} — {a.label.replace('_', ' ')}" in claims
        assert claim.citation_support in claims
        assert claim.verdict.durability_reason in claims
    assert "undetermined offline** (heuristic)" in claims, "an abstention says who abstained"
    assert "(heuristic, confidence " in claims and "(by rule, from the lab's numbers" in claims
    assert "heuristic: heuristic" not in claims


def test_a_version_1_report_is_read_as_the_current_schema():
    # fmt: off
    v1 = {
        "run_id": "20250101-000000-abcd",
        "created_at": "2025-01-01T00:00:00Z",
        "config": {"llm": "none"},
        "question": "q",
        "bottom_line": "b",
        "claims": [{
            "id": "C1", "text": "Tails vanish first.", "dated": "2023", "tags": ["tails"], "durability": "durable",
            "origin": "inquiry", "citations": [],
            "verdict": {"label": "supported", "rationale": "heuristic: on topic", "judged_by": "heuristic"},
            "evidence": [
                {"arxiv_id": "2404.01413", "title": "t", "published": "2024-04-01", "stance": "consistent",
                 "score": 0.6, "rationale": "heuristic: on topic"},
                {"arxiv_id": "2410.04840", "title": "u", "published": "2024-10-01", "stance": "contradicts",
                 "score": 0.5, "rationale": "heuristic: opposite"},
            ],
        }],
        "citations": [], "anchor_citations": [], "simulations": {}, "follow_up_questions": [], "tasks": [],
        "sources": [], "method": {},
    }
    # fmt: on
    report = migrate_report(json.loads(json.dumps(v1)))
    assert report.schema_version == SCHEMA_VERSION
    [claim] = report.claims
    consistent, contradicts = claim.evidence
    assert consistent.stance == "background" and not consistent.is_evidence, "'consistent' was never agreement"
    assert contradicts.stance == "contradicts" and contradicts.is_evidence
    assert claim.assertions == [] and claim.verdict.durability == "unassessed" and claim.durability == "durable"
    with pytest.raises(ValueError, match="schema_version 3"):
        migrate_report({**v1, "schema_version": 3})


def test_the_current_report_migrates_to_itself(audit):
    out, _ = audit
    data = json.loads((out / "report.json").read_text())
    assert migrate_report(data) == Report.model_validate(data)


def test_simulations_carry_the_labs_typed_results(audit):
    out, _ = audit
    report = json.loads((out / "report.json").read_text())
    sims = report["simulations"]
    assert not {"verdict", "effect_of_ratio", "effect_of_diversity", "analysis"} & set(sims), "the old contract is gone"
    # The lab's models, dumped: they validate back as themselves.
    effects = [CellEffect.model_validate(e) for e in sims["effects"]]
    boundaries = [Boundary.model_validate(b) for b in sims["boundaries"]]
    scale = [ScaleTest.model_validate(t) for t in sims["scale"]]
    assert [Stationarity.model_validate(s) for s in sims["stationarity"]]
    assert effects and boundaries and scale
    assert sims["design"]["held_fixed"] and set(sims["design"]["held_fixed"]) <= {"fixed_real", "fresh"}
    assert sims["design"]["config"]["diversity_control"] == "temperature"
    assert all(len(b.band) == 2 and (b.status == "crossed") == (b.ratio is not None) for b in boundaries)
    assert all(e.relative_tail_mass is None or e.relative_tail_mass.ci[0] <= e.relative_tail_mass.mean <= e.relative_tail_mass.ci[1]
               for e in effects)
    mixed = [c for c in sims["cells"] if 0 < c["ratio"] < 1]
    assert mixed and all(set(c["counterfactuals"]) == {"same_real", "same_total"} for c in mixed)

    # The lab's answer is quoted verbatim: in the bottom line, in report.md, and in every tagged claim's verdict.
    md = (out / "report.md").read_text()
    html = (out / "report.html").read_text()
    assert sims["result"] in report["bottom_line"] and sims["result"] in md
    assert html_escape(sims["result"]) in html
    # The lab enters the verdicts through the propositions an assertion states, with its numbers.
    tagged = [c for c in report["claims"] if {"ratio", "diversity", "tails"} & set(c["tags"])]
    lab = [s for c in tagged for a in c["assertions"] for s in a["simulation"]]
    assert lab and all(s["key"].startswith("simulations.") and any(ch.isdigit() for ch in s["detail"]) for s in lab)

    section = md[md.index("## Simulation evidence"):md.index("## Follow-up questions")]
    for heading in ("### Boundaries", "### Effects against the real-only counterfactuals", "### Stationarity"):
        assert heading in section
    for held in sims["design"]["held_fixed"].values():
        assert held in section
    for banned in ("tail loss", "variance", "threshold", "verdict"):
        assert banned not in section.lower(), banned
    rows = _table(section, "crossing share")
    assert len(rows) == len(boundaries)
    for status, words in (("not_reached", "| not reached |"), ("crossed", "| crossed |")):
        assert sum(words in row for row in rows) == sum(b.status == status for b in boundaries)
    for row in rows:
        crossing, band = [x.strip() for x in row.split("|")[-3:-1]]
        if "| not reached |" in row:
            assert crossing.startswith("not reached up to share") and band.startswith(("not reached", "0."))
        if "| crossed |" in row:
            assert " to " in band, "every crossing has its bootstrap band"
    effect_rows = _table(section, "relative tail mass, mean [95% CI]")
    assert effect_rows and all(row.count("[") >= 4 for row in effect_rows), "every estimate has its interval"


def _table(text: str, column: str) -> list[str]:
    """The body rows of the Markdown table whose header names `column`."""
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("|") and column in line)
    body = []
    for line in lines[start + 2:]:
        if not line.startswith("|"):
            break
        body.append(line)
    return body


def test_existing_report_is_not_overwritten_without_force(audit, tmp_path):
    out, _ = audit
    before = (out / "report.json").read_text()
    result = run_cli("run", "--sim-budget", "tiny", "--out", str(out), home=tmp_path / "home")
    assert result.returncode == 2 and "--force" in result.stderr
    assert (out / "report.json").read_text() == before


@pytest.mark.parametrize(
    "args, message",
    [
        (["--inquiry", "{tmp}/missing.md"], "cannot read inquiry"),
        (["--inquiry", "{tmp}/empty.md"], "inquiry"),
        (["--inquiry", "{tmp}/noclaims.md"], "claims"),
        (["--since", "last tuesday"], "--since"),
        (["--since", "0mo"], "no time before today"),
        (["--since", "2999-01-01"], "no time before today"),
        (["--device", "tpu"], "--device"),
        (["--source", "google"], "--source"),
        (["--sim-budget", "huge"], "--sim-budget"),
        (["--out", "{tmp}/afile"], "--out"),
        (["--out", "/proc/collapse-audit-test"], "--out"),
        (["--resume", "no-such-run"], "no run"),
        (["--claims", "{tmp}/missing.jsonl"], "missing.jsonl"),
        pytest.param(["--device", "cuda"], "cuda", marks=pytest.mark.skipif(torch.cuda.is_available(), reason="CUDA present")),
    ],
)
def test_bad_input_is_one_line_and_exit_2(args, message, tmp_path):
    (tmp_path / "empty.md").write_text("")
    (tmp_path / "noclaims.md").write_text("# Notes\n\nJust some prose about synthetic data, no claims.\n")
    (tmp_path / "afile").write_text("x")
    args = [a.format(tmp=tmp_path) for a in args]
    if "--out" not in args:
        args += ["--out", str(tmp_path / "out")]
    result = run_cli("run", "--sim-budget", "tiny", *args, home=tmp_path / "home", timeout=120)
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and message in lines[0], result.stderr

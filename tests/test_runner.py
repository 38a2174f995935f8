"""agent/runner.py (config in, result out), the run store (agent/store.py), the pure diff of two runs'
records (agent/changes.py), `collapse-audit schema`, and bad input refused before any heavy import."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import time
from datetime import date, datetime, timezone
from pathlib import Path

import pytest

from agent.changes import changes_view, compare
from agent.models import Report
from agent.runner import BadInput, RecheckOptions, RunOptions, plan_recheck, plan_resume, plan_run, run_audit
from agent.state import RunConfig
from agent.store import (
    DB_NAME,
    AssertionRecord,
    AuditRecord,
    CitationRecord,
    ClaimRecord,
    PaperSeen,
    RunRecord,
    RunStore,
    UnknownRun,
)
from tests.subprocess_cli import run_cli

INQUIRY = Path(__file__).parent / "data" / "inquiries" / "recursive_training.md"


# --- the diff: pure, on hand-made records ------------------------------------------------------


def paper(arxiv_id: str, stance: str | None, cited: bool = False) -> PaperSeen:
    return PaperSeen(arxiv_id=arxiv_id, title=f"Paper {arxiv_id}", published=date(2025, 1, 1), stance=stance, cited=cited)


def record(*, label="supported", a_label="supported", rests=("2401.00001 supports",), papers=None, status="grounded",
           extra_claim: str | None = None, claim_id="C1", sim="The lab found nothing.") -> AuditRecord:
    papers = papers if papers is not None else [paper("2401.00001", "supports"), paper("2401.00002", "background")]
    claims = [ClaimRecord(
        id=claim_id, text="Tails vanish first (2023, arXiv:2305.17493).", label=label, durability="durable",
        citations=[CitationRecord(as_written="arXiv:2305.17493", arxiv_id="2305.17493", status=status)],
        assertions=[AssertionRecord(id=f"{claim_id}.a", text="Tails vanish first", label=a_label, rests_on=list(rests),
                                    papers=papers)],
    )]
    if extra_claim:
        claims.append(ClaimRecord(id="U1", text=extra_claim, origin="user", label="insufficient_evidence"))
    return AuditRecord(title="t", question="q", claims=claims, simulation=sim)


def test_identical_records_show_no_change():
    diff = compare(record(), record(), against="R1", against_date=date(2026, 1, 1))
    assert not diff.changed and not diff.assertions and not diff.claims and not diff.citations
    assert diff.summary == ("Nothing changed since run R1 (2026-01-01): the same papers with the same stances, "
                            "the same verdicts and the same citation statuses.")
    assert changes_view(diff).sections == []


def test_a_new_paper_that_moves_a_verdict_is_shown_with_what_moved_it():
    after = record(label="contested", a_label="contested", rests=("2401.00001 supports", "2502.00009 contradicts"),
                   papers=[paper("2401.00001", "supports"), paper("2401.00002", "background"), paper("2502.00009", "contradicts")])
    diff = compare(record(), after, against="R1", since=date(2025, 6, 1))
    assert diff.changed
    [change] = diff.assertions
    assert [(p.arxiv_id, p.stance) for p in change.new_papers] == [("2502.00009", "contradicts")]
    assert (change.verdict_before, change.verdict_after) == ("supported", "contested")
    assert [(m.ref, m.before, m.after) for m in change.moved_by] == [("2502.00009", None, "contradicts")]
    [claim] = diff.claims
    assert (claim.verdict_before, claim.verdict_after) == ("supported", "contested")
    assert claim.moved_by == ["C1.a: supported → contested"]
    assert "1 new paper for 1 assertion" in diff.summary and "C1 supported → contested" in diff.summary
    view = dict(changes_view(diff).sections)
    assert view["New papers"] == ["C1.a: arXiv:2502.00009 (2025-01-01) “Paper 2502.00009” — contradicts"]
    assert any("moved by arXiv:2502.00009 (no position → contradicts)" in line for line in view["Verdicts"])
    assert changes_view(diff).summary.endswith("Literature since 2025-06-01.")


def test_stance_changes_dropped_papers_citations_claims_and_the_lab():
    after = record(papers=[paper("2401.00001", "qualifies")], rests=("2401.00001 qualifies",), status="unverifiable",
                   extra_claim="A claim of the user's (2024).", sim="The lab found a boundary.")
    diff = compare(record(), after, against="R1")
    [change] = diff.assertions
    assert [(s.arxiv_id, s.before, s.after) for s in change.stance_changes] == [("2401.00001", "supports", "qualifies")]
    assert [p.arxiv_id for p in change.dropped_papers] == ["2401.00002"]
    assert change.moved_by == [], "the verdict did not change, so nothing moved it"
    assert [(c.where, c.arxiv_id, c.before, c.after) for c in diff.citations] == [("C1", "2305.17493", "grounded", "unverifiable")]
    assert [c.id for c in diff.claims_added] == ["U1"] and diff.claims_removed == []
    assert (diff.simulation_before, diff.simulation_after) == ("The lab found nothing.", "The lab found a boundary.")
    removed = compare(after, record(), against="R2")
    assert [c.id for c in removed.claims_removed] == ["U1"]


def test_renumbering_and_unrelated_papers_are_not_changes():
    renumbered = record(claim_id="C7")  # same texts, other ids: the same claims
    assert not compare(record(), renumbered, against="R1").changed
    noise = record(papers=[paper("2401.00001", "supports"), paper("2401.00002", "background"), paper("2503.1", "unrelated")])
    assert not compare(record(), noise, against="R1").changed, "the report lists unrelated papers apart"


# --- the run store -------------------------------------------------------------------------------


def config(tmp_path: Path, run_id: str, inquiry: Path | None = None) -> RunConfig:
    return RunConfig(run_id=run_id, run_date=date(2026, 1, 1), inquiry_path=inquiry, arxiv_url="http://127.0.0.1:9",
                     out_dir=tmp_path / run_id)


def test_run_store_records_lists_and_finds_runs(tmp_path):
    store = RunStore(tmp_path / "runs")
    assert store.list() == [] and store.find("x") is None and not store.root.exists(), "reading never creates a store"
    first = store.create(config(tmp_path, "20260101-000000-aaaa"), inputs_hash="h1")
    second = store.create(config(tmp_path, "20260101-000001-bbbb", inquiry=tmp_path / "other.md"), inputs_hash="h2")
    assert (store.root / DB_NAME).is_file()
    assert store.latest(None) is None, "only finished runs are re-checked"
    store.finish(first, "finished", files=["a/report.md"], audit=record())
    store.finish(second, "failed", error="boom")
    assert [r.run_id for r in store.list()] == [second.run_id, first.run_id]
    assert [r.run_id for r in store.list(inquiry=None)] == [first.run_id]
    got = store.get(first.run_id)
    assert got.status == "finished" and got.audit == record() and got.report_files == ["a/report.md"]
    assert got.audit.verdict_counts() == {"supported": 1} and got.inputs_hash == "h1"
    assert store.latest(None).run_id == first.run_id and store.latest(tmp_path / "other.md") is None
    assert store.get(second.run_id).error == "boom"
    with pytest.raises(UnknownRun, match="no run 'nope'"):
        store.get("nope")


def test_runs_recorded_by_earlier_versions_are_still_found(tmp_path):
    store = RunStore(tmp_path / "runs")
    legacy = RunRecord(run=config(tmp_path, "20250101-000000-old1"), status="failed", started_at=datetime.now(timezone.utc))
    (store.root / legacy.run_id).mkdir(parents=True)
    (store.root / legacy.run_id / "run.json").write_text(legacy.model_dump_json())
    assert store.get(legacy.run_id).run == legacy.run
    assert store.find("../runs") is None


# --- the runner, in process ----------------------------------------------------------------------


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory):
    """A run and a re-check of it through the runner's API (offline snapshot, lexical embedder, no simulations)."""
    root = tmp_path_factory.mktemp("runner")
    with pytest.MonkeyPatch.context() as env:
        env.setenv("COLLAPSE_AUDIT_HOME", str(root / "home"))
        env.setenv("COLLAPSE_AUDIT_EMBEDDINGS", "lexical")
        env.chdir(root)
        planned = plan_run(RunOptions(inquiry=INQUIRY, source="snapshot", sim_budget="none", out=root / "first"))
        first = run_audit(planned.config, store=planned.store)
        again = plan_recheck(RecheckOptions(inquiry=INQUIRY, out=root / "second"))
        second = run_audit(again.config, store=again.store, baseline=again.baseline)
        resumed = plan_resume(first.run_id)
        finished = run_audit(resumed.config, store=resumed.store)
        yield root, planned, first, again, second, finished


def test_run_audit_takes_a_config_and_returns_a_typed_result(runs):
    root, planned, first, _, _, finished = runs
    assert (first.status, first.exit_code, first.error) == ("finished", 0, None)
    assert first.run_id == planned.config.run_id and first.out_dir == root / "first"
    assert [f.name for f in first.report_files[:4]] == ["report.md", "report.json", "report.html", "report.bib"]
    assert set(first.timings) >= {"load_claims", "ground_citations", "write_report"} and first.what_changed is None
    record = planned.store.get(first.run_id)
    assert record.status == "finished" and record.audit is not None and len(record.audit.claims) == 2
    assert record.timings == {k: round(v, 3) for k, v in first.timings.items()}
    assert finished.already_finished and finished.exit_code == 0 and finished.report_files == first.report_files


def test_a_recheck_keeps_the_earlier_runs_settings_and_compares_with_it(runs):
    _, planned, first, again, second, _ = runs
    assert again.baseline.run_id == first.run_id and again.config.against == first.run_id
    for field in ("inquiry_path", "source", "sim_budget", "seed", "device", "since", "llm"):
        assert getattr(again.config, field) == getattr(planned.config, field), field
    assert second.what_changed is not None and not second.what_changed.changed and not second.changed
    assert again.store.get(second.run_id).what_changed == second.what_changed


def test_schema_validates_a_real_report(runs):
    root, _, first, _, second, _ = runs
    result = run_cli("schema", home=root / "home", timeout=60)
    assert result.returncode == 0, result.stderr
    schema = json.loads(result.stdout)
    assert schema["$schema"].endswith("2020-12/schema") and schema["title"] == "Report"
    assert set(schema["properties"]) == set(Report.model_fields) and "what_changed" in schema["properties"]
    for run in (first, second):
        report = json.loads((run.out_dir / "report.json").read_text())
        Report.model_validate(report)
        try:
            import jsonschema
        except ImportError:  # not a dependency: check the schema's structure and required keys ourselves
            conforms(report, schema, schema["$defs"], "$")
        else:
            jsonschema.Draft202012Validator(schema).validate(report)
    assert "what_changed" in json.loads((second.out_dir / "report.json").read_text())


def conforms(value, schema: dict, defs: dict, path: str) -> None:
    """A small JSON Schema check: $ref, anyOf, types, enums and every object's required keys."""
    if "$ref" in schema:
        return conforms(value, defs[schema["$ref"].rsplit("/", 1)[-1]], defs, path)
    if "anyOf" in schema:
        assert any(_conforms(value, option, defs, path) for option in schema["anyOf"]), path
        return
    kind = schema.get("type")
    types = {"object": dict, "array": list, "string": str, "boolean": bool, "null": type(None), "integer": int,
             "number": (int, float)}
    if kind is not None:
        assert isinstance(value, types[kind]) and not (kind in ("integer", "number") and isinstance(value, bool)), path
    if "enum" in schema:
        assert value in schema["enum"], path
    if "const" in schema:
        assert value == schema["const"], path
    if isinstance(value, dict):
        missing = set(schema.get("required", [])) - set(value)
        assert not missing, f"{path}: missing {missing}"
        for key, sub in schema.get("properties", {}).items():
            if key in value:
                conforms(value[key], sub, defs, f"{path}.{key}")
    if isinstance(value, list) and isinstance(schema.get("items"), dict):
        for i, item in enumerate(value):
            conforms(item, schema["items"], defs, f"{path}[{i}]")


def _conforms(value, schema: dict, defs: dict, path: str) -> bool:
    try:
        conforms(value, schema, defs, path)
    except AssertionError:
        return False
    return True


# --- bad input: refused at once, before anything heavy is imported ----------------------------------


def test_planning_refuses_bad_input_with_one_line(tmp_path, monkeypatch):
    monkeypatch.setenv("COLLAPSE_AUDIT_HOME", str(tmp_path / "home"))
    with pytest.raises(BadInput, match=r"^--since 'garbage' is neither a date"):
        plan_run(RunOptions(since="garbage"))
    with pytest.raises(BadInput, match=r"^--out .* already holds results"):
        plan_recheck(RecheckOptions(out=Path(__file__).parent))
    with pytest.raises(BadInput, match=r"^no run 'nope' in "):
        plan_resume("nope")


def test_bad_input_is_refused_in_well_under_a_second(tmp_path):
    started = time.perf_counter()
    result = run_cli("run", "--since", "garbage", home=tmp_path / "home", timeout=60)
    seconds = time.perf_counter() - started
    print(f"`collapse-audit run --since garbage` refused in {seconds:.2f} s")
    assert result.returncode == 2 and "--since" in result.stderr
    assert seconds < 3, f"bad input took {seconds:.2f} s to refuse (target: under 1 s)"


def test_no_bad_input_path_imports_torch_langgraph_or_sentence_transformers(tmp_path):
    (tmp_path / "afile").write_text("x")
    (tmp_path / "noclaims.md").write_text("# Notes\n\nJust prose, no claims.\n")
    script = textwrap.dedent(f"""
        import sys
        from pathlib import Path
        from agent.runner import BadInput, RecheckOptions, RunOptions, _no_gpu_driver, plan_recheck, plan_resume, plan_run
        tmp = Path({str(tmp_path)!r})
        cases = [dict(since="garbage"), dict(source="google"), dict(sim_budget="huge"), dict(device="tpu"),
                 dict(out=tmp / "afile"), dict(inquiry=tmp / "missing.md"), dict(inquiry=tmp / "noclaims.md"),
                 dict(claims=tmp / "missing.jsonl")] + ([dict(device="cuda")] if _no_gpu_driver() else [])
        refused = 0
        for case in cases:
            try:
                plan_run(RunOptions(**{{"out": tmp / "out", **case}}))
            except BadInput:
                refused += 1
        for call in (lambda: plan_resume("no-such-run"), lambda: plan_recheck(RecheckOptions(against="latest")),
                     lambda: plan_recheck(RecheckOptions(since="soon"))):
            try:
                call()
            except BadInput:
                refused += 1
        heavy = sorted(m for m in ("torch", "langgraph", "sentence_transformers", "transformers") if m in sys.modules)
        print(refused, len(cases) + 3, heavy)
    """)
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60,
                            cwd=tmp_path, env={"COLLAPSE_AUDIT_HOME": str(tmp_path / "home"), "PATH": "/usr/bin:/bin"})
    assert result.returncode == 0, result.stderr
    refused, cases, heavy = result.stdout.strip().split(" ", 2)
    assert refused == cases and heavy == "[]", result.stdout
    assert not (tmp_path / "out").exists(), "a refused run leaves no output directory behind"

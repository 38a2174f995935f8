"""Living audits end to end: a project's run, then `recheck` after the (loopback) arXiv gained a paper,
then `recheck` again with nothing new; the run store behind `runs list|show`.

The runs use the lexical embedder (COLLAPSE_AUDIT_EMBEDDINGS=lexical): what is tested here is the
re-check and the run store, not the judge, and MiniLM's calibration would cost ~40 s per run on 2 cores.
"""

from __future__ import annotations

import json
import sqlite3
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path

import pytest

from agent.models import Report
from tests.arxiv_server import ArxivServer, snapshot_papers
from tests.subprocess_cli import Result, run_cli
from tools.papers import Paper

INQUIRY = Path(__file__).parent / "data" / "inquiries" / "recursive_training.md"
LEXICAL = {"COLLAPSE_AUDIT_EMBEDDINGS": "lexical"}
NEW_PAPER = Paper(
    id="2611.01234", title="Accumulating real data does not prevent model collapse in recursive training",
    summary="We show that accumulating real data alongside synthetic data across generations does not avoid model "
            "collapse: the tails of the original distribution still disappear when generative models are trained "
            "on recursively generated data.",
    authors=["Ada Example"], published=date.today() - timedelta(days=10), categories=["cs.LG"],
    primary_category="cs.LG", source="arxiv", versions=1,
)


@dataclass
class Audit:
    home: Path
    project: Path
    first: Result
    changed: Result  # recheck after arXiv gained NEW_PAPER
    same: Result  # recheck again, nothing new

    def cli(self, *args: str) -> Result:
        return run_cli(*args, home=self.home, cwd=self.project, env=LEXICAL, timeout=120)

    def report(self, result: Result) -> Report:
        [path] = [line for line in result.stdout.splitlines() if line.endswith("report.json")]
        return Report.model_validate_json(Path(path).read_text())


@pytest.fixture(scope="module")
def audit(tmp_path_factory: pytest.TempPathFactory) -> Audit:
    root = tmp_path_factory.mktemp("living")
    home, project = root / "home", root / "proj"
    assert run_cli("init", str(project), "--inquiry", str(INQUIRY), home=home).returncode == 0
    with ArxivServer(snapshot_papers(), lifetime=600) as server:
        def cli(*args: str) -> Result:
            return run_cli(*args, home=home, cwd=project, env=LEXICAL, timeout=300)

        first = cli("run", "--source", "arxiv", "--arxiv-url", server.url, "--sim-budget", "none")
        assert first.returncode == 0, first.stderr
        server.papers[NEW_PAPER.id] = NEW_PAPER  # arXiv announces a paper on the audit's topic
        changed = cli("recheck", "--fail-on-change")
        assert changed.returncode in (0, 1), changed.stderr
        same = cli("recheck", "--fail-on-change")
        assert same.returncode in (0, 1), same.stderr
    return Audit(home, project, first, changed, same)


def test_a_paper_new_on_arxiv_shows_in_what_changed_with_its_stance(audit):
    report = audit.report(audit.changed)
    first = audit.report(audit.first)
    w = report.what_changed
    assert w is not None and w.changed and w.against == first.run_id
    assert report.config["against"] == first.run_id
    assert NEW_PAPER.id not in {e.arxiv_id for c in first.claims for a in c.assertions for e in a.evidence}
    listed = {a.id: {e.arxiv_id: e.stance for e in a.evidence} for c in report.claims for a in c.assertions}
    found = [(a.assertion_id, p) for a in w.assertions for p in a.new_papers if p.arxiv_id == NEW_PAPER.id]
    assert found, w.model_dump_json(indent=2)
    for assertion_id, paper in found:
        assert paper.stance == listed[assertion_id][NEW_PAPER.id], "the diff shows the stance the report graded"
        assert paper.title == NEW_PAPER.title and paper.published == NEW_PAPER.published
    # A verdict that moved names the positions that moved it.
    for a in w.assertions:
        if a.verdict_before != a.verdict_after and a.verdict_before and a.verdict_after:
            assert a.moved_by and all(m.before != m.after for m in a.moved_by)
    # "What changed" opens the report, after the question, in md and html; the summary is said on stderr too.
    md = (report_dir(audit.changed) / "report.md").read_text()
    assert md.index(report.question) < md.index("## What changed") < md.index("## Bottom line")
    section = md[md.index("## What changed"):md.index("## Bottom line")]
    assert w.summary in section and f"arXiv:{NEW_PAPER.id}" in section and "**New papers**" in section
    html = (report_dir(audit.changed) / "report.html").read_text()
    assert html.index("<h2>What changed</h2>") < html.index("<h2>Bottom line</h2>") and NEW_PAPER.id in html
    assert w.summary in audit.changed.stderr


def report_dir(result: Result) -> Path:
    return Path(result.stdout.splitlines()[0]).parent


def test_fail_on_change_exits_1_when_something_changed_and_0_when_nothing_did(audit):
    assert audit.changed.returncode == 1, audit.changed.stderr
    assert audit.same.returncode == 0, audit.same.stderr
    again = audit.report(audit.same)
    assert again.what_changed is not None and not again.what_changed.changed
    assert again.what_changed.against == audit.report(audit.changed).run_id, "latest: the newest finished run"
    assert again.what_changed.summary.startswith("Nothing changed since run")
    assert "## What changed" in (report_dir(audit.same) / "report.md").read_text()
    # The first run's report has no such section: only re-checks carry one.
    assert audit.report(audit.first).what_changed is None
    assert "## What changed" not in (report_dir(audit.first) / "report.md").read_text()


def test_every_run_is_recorded_in_the_projects_store(audit):
    ids = [audit.report(r).run_id for r in (audit.first, audit.changed, audit.same)]
    db = audit.project / "runs" / "runs.sqlite"
    assert db.is_file() and not (audit.home / "runs" / "runs.sqlite").exists(), "a project's runs stay in the project"
    with sqlite3.connect(db) as conn:
        rows = dict(conn.execute("SELECT run_id, inputs_hash FROM runs").fetchall())
    assert set(rows) == set(ids)
    assert len(set(rows.values())) == 1, "same inquiry, claims and config: the same inputs hash"

    listed = audit.cli("runs", "list", "--format", "json")
    assert listed.returncode == 0, listed.stderr
    runs = json.loads(listed.stdout)
    assert [r["run_id"] for r in runs] == ids[::-1], "newest first"
    assert all(r["status"] == "finished" and r["inquiry"] == "Two claims about recursive training" for r in runs)
    assert [r["against"] for r in runs] == [ids[1], ids[0], None]
    assert [r["changed"] for r in runs] == [False, True, None]
    first = audit.report(audit.first)
    counts = {}
    for claim in first.claims:
        counts[claim.verdict.label] = counts.get(claim.verdict.label, 0) + 1
    assert runs[-1]["verdicts"] == counts

    table = audit.cli("runs", "list")
    assert table.returncode == 0 and all(i in table.stdout for i in ids), table.stdout
    assert "finished" in table.stdout and "verdicts" in table.stdout

    shown = audit.cli("runs", "show", ids[0], "--format", "json")
    assert shown.returncode == 0, shown.stderr
    record = json.loads(shown.stdout)
    assert record["status"] == "finished" and len(record["inputs_hash"]) == 64
    assert set(record["timings"]) >= {"load_claims", "ground_citations", "retrieve_literature", "write_report"}
    assert record["run"]["source"] == "arxiv" and record["report_files"]
    claims = record["audit"]["claims"]
    assert [c["id"] for c in claims] == [c.id for c in first.claims]
    assert all(x["status"] for c in claims for x in c["citations"])
    seen = {p["arxiv_id"]: p["stance"] for c in claims for a in c["assertions"] for p in a["papers"]}
    assert seen == {e.arxiv_id: e.stance for c in first.claims for a in c.assertions for e in [*a.cited, *a.evidence]}
    assert record["audit"]["simulation"] == "Simulations were skipped (--sim-budget none)."

    readable = audit.cli("runs", "show", ids[1])
    assert readable.returncode == 0 and f"re-check of {ids[0]}" in readable.stdout
    assert "papers seen:" in readable.stdout and "inputs hash:" in readable.stdout


@pytest.mark.parametrize("args", [["runs", "show", "no-such-run"], ["recheck", "--against", "no-such-run"],
                                  ["run", "--resume", "no-such-run"]])
def test_an_unknown_run_id_is_one_line_and_exit_2(audit, args):
    result = audit.cli(*args)
    assert result.returncode == 2, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "no run 'no-such-run'" in lines[0] and "Traceback" not in result.stderr


def test_recheck_with_no_earlier_run_says_to_run_first(tmp_path):
    result = run_cli("recheck", "--inquiry", str(INQUIRY), home=tmp_path / "home", cwd=tmp_path, env=LEXICAL, timeout=60)
    assert result.returncode == 2
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "no finished run" in lines[0] and "collapse-audit run" in lines[0]

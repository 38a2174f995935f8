"""The offline snapshot index: lookup, ranked search, date windows, Kaggle ingest, the CLI."""

from __future__ import annotations

import json
import re
from datetime import date
from pathlib import Path

import pytest
from typer.testing import CliRunner

from agent.cli import app
from tools.snapshot import Snapshot

KAGGLE_SAMPLE = Path(__file__).parent / "data" / "kaggle_sample.jsonl"


@pytest.fixture(scope="module")
def snapshot() -> Snapshot:
    return Snapshot.open()


def test_packaged_snapshot_loads_with_paraphrase_flag(snapshot: Snapshot) -> None:
    papers = snapshot.papers()
    assert len(papers) == len(snapshot) >= 150
    assert all(p.summary_is_paraphrase and p.source == "snapshot" for p in papers)
    assert snapshot.snapshot_date == max(p.published for p in papers)


def test_get_accepts_versions_and_prefixes(snapshot: Snapshot) -> None:
    paper = snapshot.get("2305.17493")
    assert paper is not None and paper.title.startswith("The Curse of Recursion")
    assert snapshot.get("2305.17493v2") == paper
    assert snapshot.get("arXiv:2305.17493v11") == paper
    assert snapshot.get("2305.99999") is None
    assert snapshot.get("hep-th/9901001") is None


def test_get_many_keys_by_canonical_id(snapshot: Snapshot) -> None:
    found = snapshot.get_many(["2305.17493v3", "1802.01886", "2301.00000"])
    assert set(found) == {"2305.17493", "1802.01886"}


@pytest.mark.parametrize("paper_id", ["2305.17493", "1802.01886", "2404.05090"])
def test_search_by_title_words_ranks_that_paper_first(snapshot: Snapshot, paper_id: str) -> None:
    paper = snapshot.get(paper_id)
    assert paper is not None
    results = snapshot.search(paper.title, limit=5)
    assert results[0][0].id == paper_id
    scores = [score for _, score in results]
    assert scores == sorted(scores, reverse=True)


def test_search_date_window_excludes_papers_outside_it(snapshot: Snapshot) -> None:
    since, until = date(2024, 1, 1), date(2024, 12, 31)
    everything = snapshot.search("model collapse synthetic data", limit=500)
    windowed = snapshot.search("model collapse synthetic data", since=since, until=until, limit=500)
    assert windowed and all(since <= p.published <= until for p, _ in windowed)
    assert {p.id for p, _ in windowed} == {p.id for p, _ in everything if since <= p.published <= until}
    assert snapshot.search("Curse of Recursion", since=date(2024, 1, 1))[0][0].id != "2305.17493"


@pytest.mark.parametrize(
    "query",
    ['"model collapse', "collapse AND(", "- collapse -", "title: collapse", "NEAR(collapse b", "collapse* OR ^y", "'collapse'"],
)
def test_fts_hostile_queries_are_searched_as_plain_words(snapshot: Snapshot, query: str) -> None:
    results = snapshot.search(query)
    plain_words = " ".join(re.findall(r"\w+", query))
    assert results and results == snapshot.search(plain_words)


@pytest.mark.parametrize("query", ["", "   ", "(((", "AND OR NOT", '""', "-:*^"])
def test_queries_without_words_return_nothing(snapshot: Snapshot, query: str) -> None:
    assert snapshot.search(query) == []


def test_kaggle_ingest_then_get_returns_the_abstract(tmp_path: Path) -> None:
    snapshot = Snapshot.open(tmp_path / "index.sqlite")
    report = snapshot.ingest_kaggle(KAGGLE_SAMPLE)
    assert (report.written, report.added, report.updated, report.skipped, report.done) == (5, 4, 1, 0, True)
    paper = snapshot.get("0704.0001v2")
    assert paper is not None
    assert paper.summary.startswith("Test fixture text standing in for an abstract: a perturbative")
    assert not paper.summary_is_paraphrase
    assert paper.title == "Calculation of prompt diphoton production cross sections at Tevatron and LHC energies"
    assert paper.authors[0] == "C. Balázs" and paper.published == date(2007, 4, 2)
    assert (paper.versions, paper.updated, paper.primary_category) == (2, date(2008, 11, 13), "hep-ph")
    assert snapshot.get("hep-th/9901001").authors == ["A. Fixture", "B. Example Jr"]
    assert snapshot.get("2501.00001").doi == "10.1000/fixture.1"
    # A Kaggle row replaces the packaged paraphrase but keeps its topics; findings (paraphrase) go.
    replaced = snapshot.get("2305.17493")
    assert replaced.summary.startswith("Test fixture text replacing") and replaced.topics and not replaced.findings
    assert snapshot.search("quokka echolocation wombat")[0][0].id == "2501.00001"
    stats = snapshot.stats()
    assert stats["by_source"]["kaggle"] == 5 and stats["first_published"] == "1999-01-01"


def test_persistent_index_reopen_keeps_ingested_rows(tmp_path: Path) -> None:
    path = tmp_path / "index.sqlite"
    first = Snapshot.open(path)
    first.ingest_kaggle(KAGGLE_SAMPLE)
    count = len(first)
    first.close()
    reopened = Snapshot.open(path)
    assert len(reopened) == count
    assert reopened.get("math/0309136") == reopened.get("math.GT/0309136v1") is not None
    assert not reopened.get("2305.17493").summary_is_paraphrase


@pytest.mark.parametrize(
    ("second_line", "message"),
    [
        ('{"id": "2501.00002", "title": "t"', "line 2: not valid JSON"),
        ('{"id": "2501.00002", "title": "t", "abstract": "a"}', "line 2: missing field(s) versions"),
        ('{"id": "2501.00002", "title": "t", "abstract": "a", "versions": [{"created": "yesterday"}]}', "line 2: malformed"),
        ("[1, 2]", "line 2: expected a JSON object"),
    ],
)
def test_bad_kaggle_line_is_skipped_counted_and_named(tmp_path: Path, second_line: str, message: str) -> None:
    # Deliberate change (issue 13 item 6): one bad line in a 2.7 M-line file must not lose the rest,
    # so it is skipped, counted and named, and the good lines are kept.
    bad = tmp_path / "bad.jsonl"
    bad.write_text(KAGGLE_SAMPLE.read_text(encoding="utf-8").splitlines()[0] + "\n" + second_line + "\n")
    snapshot = Snapshot.open()
    before = len(snapshot)
    report = snapshot.ingest_kaggle(bad)
    assert (report.added, report.skipped) == (1, 1) and report.bad_lines[0].startswith(message)
    assert len(snapshot) == before + 1 and snapshot.get("0704.0001") is not None


@pytest.mark.parametrize("content", ["not json\n", '{"id": "1"}\n[1]\n\n', b"\xff\xfe\n"])
def test_a_file_without_any_kaggle_record_raises_naming_its_first_bad_line(tmp_path: Path, content: str | bytes) -> None:
    bad = tmp_path / "bad.jsonl"
    bad.write_bytes(content if isinstance(content, bytes) else content.encode())
    snapshot = Snapshot.open()
    before = len(snapshot)
    with pytest.raises(ValueError, match=r"^line 1: .*is this the Kaggle file\?"):
        snapshot.ingest_kaggle(bad)
    assert len(snapshot) == before


def test_cli_snapshot_stats_and_ingest(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COLLAPSE_AUDIT_HOME", str(tmp_path))
    runner = CliRunner()
    stats = runner.invoke(app, ["snapshot", "stats"])
    assert stats.exit_code == 0, stats.output
    assert json.loads(stats.stdout)["by_source"] == {"packaged": len(Snapshot.open()), "kaggle": 0}

    ingest = runner.invoke(app, ["snapshot", "ingest", str(KAGGLE_SAMPLE)])
    assert ingest.exit_code == 0, ingest.output
    assert json.loads(runner.invoke(app, ["snapshot", "stats"]).stdout)["by_source"]["kaggle"] == 5
    assert (tmp_path / "snapshot.sqlite").is_file()


@pytest.mark.parametrize("content", [None, "not json\n"])
def test_cli_snapshot_ingest_bad_file_exits_2_with_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, content: str | None
) -> None:
    monkeypatch.setenv("COLLAPSE_AUDIT_HOME", str(tmp_path))
    target = tmp_path / "input.jsonl"
    if content is not None:
        target.write_text(content)
    result = CliRunner().invoke(app, ["snapshot", "ingest", str(target)])
    assert result.exit_code == 2
    assert "Traceback" not in result.output and result.output.startswith("error:")
    assert "line 1" in result.output if content else "not a file" in result.output

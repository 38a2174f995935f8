"""`snapshot update`: a topic paged from the loopback arXiv server into the offline index.

The library function runs on the injected clock (spacing and backoff simulated, not slept); the CLI
runs end to end against the same server with short pages, so only its one spacing wait is real.
"""

from __future__ import annotations

import json
import time
from datetime import date, timedelta
from pathlib import Path

import pytest
from typer.testing import CliRunner

from agent.cli import app
from tests.arxiv_server import ArxivServer, SimulatedClock, snapshot_papers
from tools.arxiv_api import ArxivClient, request_interval
from tools.papers import Paper
from tools.snapshot import Snapshot
from tools.snapshot_update import Topic, UpdateInterrupted, update_snapshot

TOPIC = Topic.parse("recursive training collapse")


def corpus(n: int, *, first: int = 1, start: date = date(2025, 1, 1), words: str = "recursive training collapse",
           category: str = "cs.LG") -> list[Paper]:
    """`n` papers on `words`, one a day from `start` (distinct dates: a fixed newest-first order)."""
    return [
        Paper(id=f"2501.{i:05d}", title=f"Paper {i}: {words}", authors=["Ada Example"], published=start + timedelta(days=i),
              summary=f"The real abstract of paper {i}, about {words}.", categories=[category], primary_category=category,
              versions=1, source="arxiv")
        for i in range(first, first + n)
    ]


DISTRACTORS = corpus(3, first=900, words="protein folding kinetics", category="q-bio.BM")


@pytest.fixture
def clock() -> SimulatedClock:
    return SimulatedClock()


def client_for(server: ArxivServer, clock: SimulatedClock, retries: int = 3) -> ArxivClient:
    return ArxivClient(server.url, clock=clock, timeout=5.0, max_retries=retries)


def held(snapshot: Snapshot) -> set[str]:
    return {p.id for p in snapshot.papers() if not p.summary_is_paraphrase and p.id.startswith("2501.")}


def test_topic_words_are_anded_phrases_kept_and_filters_added() -> None:
    topic = Topic.parse('The "Model Collapse" of self-consuming GPT-4 and Zipf\'s law', category="cs.LG", since=date(2025, 1, 15))
    assert topic.search_query == (
        'all:"gpt 4" AND all:"model collapse" AND all:"self consuming" AND all:law AND all:zipf '
        "AND cat:cs.LG AND submittedDate:[202501150000 TO 209912312359]"
    )
    assert Topic.parse("collapse recursive  training") == TOPIC  # word order does not make another query
    for category in ("hep-th", "stat.ML", "cond-mat.stat-mech"):
        assert Topic.parse("x ray", category=category).category == category
    for bad in ("cs LG", "CS.LG", "cs.LG;", "cat:cs.LG", ""):
        with pytest.raises(ValueError, match="--category"):
            Topic.parse("collapse", category=bad)
    for empty in ("", "   ", "the of and", '""', "- : *"):
        with pytest.raises(ValueError, match="no searchable word"):
            Topic.parse(empty)


def test_pages_newest_first_spaced_3s_into_the_index(clock) -> None:
    papers = corpus(11)
    with ArxivServer(papers + DISTRACTORS, clock=clock) as server:
        snapshot = Snapshot.open()
        started = time.perf_counter()
        report = update_snapshot(snapshot, client_for(server, clock), TOPIC, page_size=4)
        assert time.perf_counter() - started < 5  # the waits were simulated
    assert (report.added, report.updated, report.pages, report.total, report.complete) == (11, 0, 3, 11, True)
    assert [(r.params["start"], r.params["max_results"]) for r in server.requests] == [("0", "4"), ("4", "4"), ("8", "3")]
    assert {r.params["sortBy"] for r in server.requests} == {"submittedDate"}
    assert all(b.at - a.at >= 3.0 for a, b in zip(server.requests, server.requests[1:]))  # arXiv's terms
    assert held(snapshot) == {p.id for p in papers}  # distractors never asked for
    paper = snapshot.get("2501.00007")
    assert paper.summary == "The real abstract of paper 7, about recursive training collapse."
    assert not paper.summary_is_paraphrase and not paper.findings and paper.primary_category == "cs.LG"


def test_interrupted_walk_resumes_at_the_next_offset_then_is_up_to_date(clock) -> None:
    with ArxivServer(corpus(11), clock=clock) as server:
        snapshot = Snapshot.open()
        server.faults.extend(["ok", "503", "503"])  # page 1 answered, page 2 fails past the one retry
        with pytest.raises(UpdateInterrupted, match="HTTP 503; stopped at offset 4") as stopped:
            update_snapshot(snapshot, client_for(server, clock, retries=1), TOPIC, page_size=4)
        assert (stopped.value.report.added, stopped.value.report.pages) == (4, 1)
        assert len(held(snapshot)) == 4  # the first page is kept

        resumed = update_snapshot(snapshot, client_for(server, clock), TOPIC, page_size=4)
        assert (resumed.resumed_at, resumed.added, resumed.pages, resumed.complete) == (4, 7, 2, True)
        assert [r.params["start"] for r in server.requests[3:]] == ["4", "8"]

        again = update_snapshot(snapshot, client_for(server, clock), TOPIC, page_size=4)
        assert again.up_to_date and again.complete and (again.added, again.updated, again.pages) == (0, 0, 1)
        assert server.requests[-1].params["start"] == "0"
    assert len(held(snapshot)) == 11


@pytest.mark.parametrize("glitch", ["empty", "empty_zero"])
def test_an_empty_page_is_retried_not_taken_as_the_end(clock, glitch: str) -> None:
    with ArxivServer(corpus(11), clock=clock) as server:
        snapshot = Snapshot.open()
        server.faults.extend(["ok", glitch, glitch])  # page 2 answered empty twice, then whole
        report = update_snapshot(snapshot, client_for(server, clock), TOPIC, page_size=4)
        assert report.complete and report.added == 11 and len(server.requests) == 5
        assert clock.slept and len(held(snapshot)) == 11

        server.always = glitch  # empty for good: stop honestly, keep what was written
        with pytest.raises(UpdateInterrupted, match="empty page"):
            update_snapshot(snapshot, client_for(server, clock, retries=2), TOPIC, page_size=4)
    assert len(held(snapshot)) == 11


def test_papers_announced_later_are_fetched_from_the_front_without_duplicates(clock) -> None:
    first = corpus(7)
    with ArxivServer(first, clock=clock) as server:
        snapshot = Snapshot.open()
        update_snapshot(snapshot, client_for(server, clock), TOPIC, page_size=3)
        rows = len(snapshot)
        for paper in corpus(2, first=50, start=date(2025, 6, 1)):  # two new ones: within the first page
            server.papers[paper.id] = paper
        report = update_snapshot(snapshot, client_for(server, clock), TOPIC, page_size=3)
        assert (report.added, report.pages, report.complete, report.up_to_date) == (2, 1, True, False)
        for paper in corpus(7, first=60, start=date(2025, 8, 1)):  # more than two pages' worth
            server.papers[paper.id] = paper
        report = update_snapshot(snapshot, client_for(server, clock), TOPIC, page_size=3)
        assert report.added == 7 and report.complete and report.held == report.total == 16
    assert len(snapshot) == rows + 9 and len(held(snapshot)) == 16


def test_max_holds_the_newest_and_a_larger_max_continues(clock) -> None:
    papers = corpus(11)
    with ArxivServer(papers, clock=clock) as server:
        snapshot = Snapshot.open()
        report = update_snapshot(snapshot, client_for(server, clock), TOPIC, max_papers=5, page_size=4)
        assert report.complete and (report.target, report.total) == (5, 11)
        assert held(snapshot) == {p.id for p in papers[-5:]}  # the five newest
        more = update_snapshot(snapshot, client_for(server, clock), TOPIC, max_papers=8, page_size=4)
        assert more.resumed_at == 5 and more.added == 3 and more.complete
    assert held(snapshot) == {p.id for p in papers[-8:]}


def test_since_and_category_reach_the_query_and_filter(clock) -> None:
    papers = corpus(10) + corpus(3, first=20, category="stat.ML")
    with ArxivServer(papers, clock=clock) as server:
        snapshot = Snapshot.open()
        topic = Topic.parse("recursive collapse", category="cs.LG", since=date(2025, 1, 6))
        report = update_snapshot(snapshot, client_for(server, clock), topic)
        query = server.requests[0].params["search_query"]
    assert "cat:cs.LG" in query and "submittedDate:[202501060000 TO 209912312359]" in query
    assert held(snapshot) == {p.id for p in papers[4:10]} and report.total == 6  # submitted Jan 6 onwards, cs.LG


def test_arxiv_rows_replace_paraphrases_keep_topics_and_survive_a_packaged_reload(tmp_path: Path, clock) -> None:
    packaged = next(p for p in snapshot_papers() if p.id == "2305.17493")
    live = packaged.model_copy(update={"summary": "The real abstract: quokka echolocation in recursively trained models."})
    path = tmp_path / "index.sqlite"
    with ArxivServer([live, *corpus(3, words="quokka echolocation")], clock=clock) as server:
        snapshot = Snapshot.open(path)
        topic = Topic.parse("quokka echolocation")
        report = update_snapshot(snapshot, client_for(server, clock), topic)
        assert (report.added, report.updated) == (3, 1)
        twice = update_snapshot(snapshot, client_for(server, clock), topic)  # re-read: nothing changed, nothing doubled
        assert twice.up_to_date and (twice.added, twice.updated) == (0, 0)
    count = len(snapshot)
    snapshot.close()
    other = tmp_path / "packaged.jsonl"  # another packaged file: the index reloads it
    packaged_lines = (Path(__file__).parents[1] / "tools" / "data" / "arxiv_snapshot.jsonl").read_text(encoding="utf-8").splitlines()
    other.write_text("".join(line + "\n" for line in packaged_lines if '"2305.17493"' in line))
    reopened = Snapshot.open(path, packaged=other)
    paper = reopened.get("2305.17493")
    assert paper.summary.startswith("The real abstract") and not paper.summary_is_paraphrase and paper.topics == packaged.topics
    assert len(reopened) == 4 and count > 4  # the old packaged rows went, the arXiv rows stayed
    # found by the offline search a run with --source snapshot uses
    assert {p.id for p, _ in reopened.search("quokka echolocation", limit=10)} == {"2305.17493", "2501.00001", "2501.00002", "2501.00003"}


# --- the CLI, end to end ----------------------------------------------------------------------


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("COLLAPSE_AUDIT_HOME", str(tmp_path / "home"))
    return tmp_path / "home"


def cli(*args: str):
    return CliRunner().invoke(app, ["snapshot", *args])


def one_line(output: str) -> str:
    lines = [line for line in output.splitlines() if line.strip()]
    assert len(lines) == 1 and "Traceback" not in output, output
    return lines[0]


def test_cli_update_interrupted_resumed_up_to_date_then_stats_and_search(home: Path) -> None:
    papers = corpus(7, words="wombat recursive training collapse")
    with ArxivServer(papers + DISTRACTORS) as server:  # a loopback server: not held to arXiv's 3 s spacing
        args = ["update", "--query", "wombat collapse", "--category", "cs.LG", "--page-size", "4", "--retries", "0", "--arxiv-url", server.url]
        server.faults.extend(["ok", "503"])
        first = cli(*args)
        assert first.exit_code == 3, first.output
        line = one_line(first.output)
        assert "HTTP 503" in line and "kept 4 new" in line and "rerun the same command" in line

        second = cli(*args)
        assert second.exit_code == 0, second.output
        line = one_line(second.output)
        assert "resumed at offset 4" in line and "3 papers added" in line and "complete: the index holds all 7" in line

        third = cli(*args)
        assert third.exit_code == 0 and "up to date" in one_line(third.output)
        assert [r.params["start"] for r in server.requests] == ["0", "4", "4", "0"]

    stats = json.loads(cli("stats").stdout)
    assert stats["by_origin"]["arxiv"] == 7 and stats["by_source"] == {"packaged": stats["by_origin"]["packaged"], "kaggle": 0}
    assert stats["by_category"]["cs.LG"] >= 7 and stats["by_topic"]["model_collapse"] > 0
    packaged_months = Snapshot.open().stats()["by_month"]
    assert stats["by_month"]["2025-01"] == packaged_months.get("2025-01", 0) + 7 and sum(stats["by_month"].values()) == stats["papers"]
    snapshot = Snapshot.open(home / "snapshot.sqlite")  # the index `run --source snapshot` searches
    assert snapshot.search("wombat")[0][0].id in {p.id for p in papers}


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ([], "--query is required"),
        (["--query", ""], "no searchable word"),
        (["--query", "the of and"], "no searchable word"),
        (["--query", "collapse", "--since", "2025-13-01"], "--since"),
        (["--query", "collapse", "--since", "2999-01-01"], "no time before today"),
        (["--query", "collapse", "--max", "0"], "--max 0"),
        (["--query", "collapse", "--max", "30001"], "--max 30001"),
        (["--query", "collapse", "--category", "cs LG"], "--category"),
        (["--query", "collapse", "--page-size", "2001"], "--page-size"),
    ],
)
def test_cli_bad_input_exits_2_with_one_line(home: Path, args: list[str], message: str) -> None:
    result = cli("update", *args, "--arxiv-url", "http://127.0.0.1:9/api/query")
    assert result.exit_code == 2
    line = one_line(result.output)
    assert line.startswith("error:") and message in line


def test_cli_unreachable_exits_3_and_writes_nothing(home: Path) -> None:
    with ArxivServer([]) as dead:
        url = dead.url  # closed once the block ends: connection refused
    result = cli("update", "--query", "model collapse", "--retries", "0", "--arxiv-url", url)
    assert result.exit_code == 3
    line = one_line(result.output)
    assert "unreachable" in line and "nothing was written" in line
    assert json.loads(cli("stats").stdout)["by_origin"]["arxiv"] == 0


def test_arxiv_is_asked_3_s_apart_and_a_server_on_this_machine_is_not() -> None:
    assert request_interval("https://export.arxiv.org/api/query") == 3.0
    assert request_interval("http://127.0.0.1:8123/api/query") == 0.0
    assert request_interval("http://localhost/api/query") == 0.0
    assert request_interval("http://127.0.0.1.example.com/api/query") == 3.0

"""The offline index at scale (issue 13 item 6): streamed, resumable Kaggle ingest; bad lines
skipped and counted; lookup, search and author queries on ingested data; the dense half kept on
above the old 5,000-paper limit; read-only copies and older indexes.

Small and fast: the files are built by benchmarks/index_scale.py's generator (Kaggle's shape) or
written here line by line."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
from datetime import date
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from agent.cli import app
from benchmarks.index_scale import KaggleGenerator, write_kaggle_file
from tools.dense import dense_index
from tools.embeddings import LexicalEmbedder
from tools.papers import Paper
from tools.recording import open_readonly
from tools.retrieval import LEXICAL_CANDIDATES, find_related
from tools.snapshot import EXACT_SEARCH_LIMIT, SEARCH_BUDGET, SEARCH_WORD_CAP, Snapshot, _kaggle_row

KAGGLE_SAMPLE = Path(__file__).parent / "data" / "kaggle_sample.jsonl"


@pytest.fixture(scope="module")
def kaggle_file(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[str]]:
    path = tmp_path_factory.mktemp("kaggle") / "arxiv-metadata-oai-snapshot.json"
    ids = write_kaggle_file(path, 1_200, seed=7, tail_words=2_000)
    return path, ids


def _distinct(snapshot: Snapshot) -> tuple[int, int, int]:
    """(rows, distinct IDs, FTS documents)."""
    db = snapshot._db
    rows, distinct = db.execute("SELECT count(*), count(DISTINCT id) FROM papers").fetchone()
    return rows, distinct, db.execute("SELECT count(*) FROM papers_fts_docsize").fetchone()[0]


def test_an_interrupted_ingest_resumes_after_its_last_batch_without_duplicates(tmp_path: Path, kaggle_file) -> None:
    path, _ = kaggle_file
    snapshot = Snapshot.open(tmp_path / "index.sqlite")
    packaged = len(snapshot)
    seen: list[int] = []

    def stop_after_three(report) -> None:
        seen.append(report.lines)
        if len(seen) == 3:
            raise KeyboardInterrupt  # what Ctrl-C does between two batches

    with pytest.raises(KeyboardInterrupt):
        snapshot.ingest_kaggle(path, batch_lines=200, on_batch=stop_after_three)
    assert seen == [200, 400, 600]
    assert len(snapshot) == packaged + 600 and snapshot.stats()["unfinished_ingests"] == {str(path.resolve()): 600}
    snapshot.close()

    reopened = Snapshot.open(tmp_path / "index.sqlite")  # a new process
    report = reopened.ingest_kaggle(path, batch_lines=200)
    assert report.resumed_at == 600 and report.lines_read == 600 and report.done
    assert (report.added, report.lines) == (1_200, 1_200)
    rows, distinct, documents = _distinct(reopened)
    assert rows == distinct == documents == packaged + 1_200
    assert reopened.stats()["unfinished_ingests"] == {}
    # a finished ingest keeps no progress: the same file again is read again, and changes nothing
    again = reopened.ingest_kaggle(path, batch_lines=500)
    assert (again.resumed_at, again.added, again.updated, again.unchanged) == (None, 0, 0, 1_200)
    assert _distinct(reopened) == (rows, distinct, documents)


_CHILD_READER = """
import json, multiprocessing, sys
from pathlib import Path
import tools.snapshot as snapshot_module
from tools.snapshot import Snapshot

snapshot_module.PROCESS_READER_BYTES = 0  # what a file of more than 64 MiB gets
path, index = Path(sys.argv[1]), Path(sys.argv[2])
snapshot, children = Snapshot.open(index), []

def stop_after_two(report):
    children.append([p.name for p in multiprocessing.active_children()])
    if len(children) == 2:
        raise KeyboardInterrupt

try:
    snapshot.ingest_kaggle(path, batch_lines=250, on_batch=stop_after_two)
except KeyboardInterrupt:
    pass
left = [p.name for p in multiprocessing.active_children()]
report = Snapshot.open(index).ingest_kaggle(path, batch_lines=250)
rows, distinct = Snapshot.open(index)._db.execute("SELECT count(*), count(DISTINCT id) FROM papers").fetchone()
print(json.dumps({"children": children, "left": left, "resumed_at": report.resumed_at, "added": report.added,
                  "rows": rows, "distinct": distinct, "packaged": len(Snapshot.open())}))
"""


def test_a_large_file_is_parsed_in_a_child_process_and_still_resumes(tmp_path: Path, kaggle_file) -> None:
    # in a process of its own: the reader forks only from a process running no other thread
    path, _ = kaggle_file
    done = subprocess.run([sys.executable, "-c", _CHILD_READER, str(path), str(tmp_path / "index.sqlite")],
                          capture_output=True, text=True, timeout=120, cwd=Path(__file__).parents[1])
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout.splitlines()[-1])
    assert result["children"] == [["kaggle-reader"], ["kaggle-reader"]] and result["left"] == []
    assert (result["resumed_at"], result["added"]) == (500, 1_200)
    assert result["rows"] == result["distinct"] == result["packaged"] + 1_200


def test_a_changed_file_is_read_from_its_start(tmp_path: Path, kaggle_file) -> None:
    path, _ = kaggle_file
    copy = tmp_path / "snapshot.json"
    copy.write_bytes(path.read_bytes())
    snapshot = Snapshot.open(tmp_path / "index.sqlite")

    def stop(report) -> None:
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        snapshot.ingest_kaggle(copy, batch_lines=300, on_batch=stop)
    with copy.open("ab") as more:  # Kaggle's weekly update replaced the file
        more.write(KAGGLE_SAMPLE.read_bytes())
    report = snapshot.ingest_kaggle(copy, batch_lines=300)
    assert report.restarted and report.resumed_at is None and report.lines == 1_205
    assert report.added + report.updated + report.unchanged == 1_205


def test_bad_lines_are_skipped_counted_and_named(tmp_path: Path) -> None:
    good = KAGGLE_SAMPLE.read_bytes().splitlines()
    lines = [good[0], b'{"id": "2501.00009", "title": "t"', good[1], b"\xff\xfe not text", b"", b"[1, 2]",
             good[2], b'{"id": "2501.00010", "title": "t", "abstract": "a"}', good[3], b"{}", b"not json", good[4]]
    path = tmp_path / "bad.jsonl"
    path.write_bytes(b"\n".join(lines) + b"\n")
    snapshot = Snapshot.open()
    before = len(snapshot)
    report = snapshot.ingest_kaggle(path, batch_lines=2)
    assert report.done and report.written == 5 and report.skipped == 6
    assert [line.split(":")[0] for line in report.bad_lines] == ["line 2", "line 4", "line 6", "line 8", "line 10"]
    assert "not UTF-8 text" in report.bad_lines[1] and "missing field(s) versions" in report.bad_lines[3]
    assert len(snapshot) == before + 4  # 2305.17493 replaced a packaged paper


def test_the_cli_reports_skipped_lines_and_the_rate(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COLLAPSE_AUDIT_HOME", str(tmp_path))
    path = tmp_path / "k.jsonl"
    path.write_bytes(KAGGLE_SAMPLE.read_bytes() + b'{"id": 1}\n')
    result = CliRunner().invoke(app, ["snapshot", "ingest", str(path)])
    assert result.exit_code == 0, result.output
    assert "4 papers added, 1 updated, 0 unchanged; skipped 1 bad line (line 6: missing field(s)" in result.output
    assert "lines/s" in result.output


def test_kaggle_records_are_what_the_paper_model_writes(kaggle_file) -> None:
    path, _ = kaggle_file
    lines = KAGGLE_SAMPLE.read_bytes().splitlines() + path.read_bytes().splitlines()[:300]
    for number, line in enumerate(lines, start=1):
        try:
            row = _kaggle_row(line, number)
        except ValueError:
            continue  # the generator's few truncated lines
        paper = Paper.model_validate_json(row[2])
        assert paper.model_dump_json() == row[2] and (paper.id, paper.published.isoformat()) == row[:2]


@pytest.fixture(scope="module")
def ingested(tmp_path_factory: pytest.TempPathFactory, kaggle_file) -> Snapshot:
    path, _ = kaggle_file
    snapshot = Snapshot.open(tmp_path_factory.mktemp("index") / "index.sqlite")
    snapshot.ingest_kaggle(path, batch_lines=400)
    return snapshot


def test_lookup_search_and_authors_on_ingested_data(ingested: Snapshot, kaggle_file) -> None:
    _, ids = kaggle_file
    old = next(i for i in ids if "/" in i)
    archive, number = old.split("/")
    assert ingested.get(f"{archive}.XX/{number}v3").id == old  # subject class and version are dropped
    found = ingested.get_many(ids[:50] + ["2512.99999"])
    assert set(found) == set(ids[:50])
    paper = found[ids[10]]
    hits = ingested.search(paper.title, limit=10)
    assert hits[0][0].id == paper.id
    window = ingested.search(paper.title, since=paper.published, until=paper.published, limit=100)
    assert window and window[0][0].id == paper.id and all(p.published == paper.published for p, _ in window)
    surname = paper.authors[0].split()[-1]
    by_author = ingested.by_authors([surname.upper()], text=paper.title)
    assert paper.id in {p.id for p in by_author} and all(
        any(surname in a for a in p.authors) for p in by_author)


def test_a_large_index_scores_only_its_query_s_selective_words(ingested: Snapshot, kaggle_file) -> None:
    _, ids = kaggle_file
    # papers whose title finds them, by exact bm25 over every word
    papers = [p for p in ingested.get_many(ids[:60]).values() if [h.id for h, _ in ingested.search(p.title, limit=1)] == [p.id]]
    assert len(papers) > 30
    ingested.exact_search_limit, ingested.search_word_cap, ingested.search_budget = 0, 150, 300
    try:
        words, joiner = ingested._selective(["the", "model", "system", "zzyzx"])
        assert words == ["zzyzx"] and joiner == " OR "  # the common words are left out
        found = sum([h.id for h, _ in ingested.search(f"the model {p.title}", limit=1)] == [p.id] for p in papers)
        assert found >= 0.9 * len(papers)  # their rare words still find them
        # every word very common: papers must hold them all, or the two longest of more
        assert ingested._selective(["the", "and"]) == (["the", "and"], " AND ")
        assert ingested._selective(["the", "model", "and", "system"]) == (["model", "system"], " AND ")
        # ... and only their newest `search_budget` matches are scored, not the whole index
        newest = {i for (i,) in ingested.read(
            "SELECT p.id FROM papers_fts f JOIN papers p ON p.rowid = f.rowid WHERE papers_fts MATCH "
            "'{title summary findings topics} : (\"model\" AND \"system\")' ORDER BY f.rowid DESC LIMIT 300")}
        assert len(newest) == 300 and ingested.read("SELECT count(*) FROM papers")[0][0] > 1_000
        hits = ingested.search("the model and system", limit=50)
        assert len(hits) == 50 and {p.id for p, _ in hits} <= newest
    finally:
        ingested.exact_search_limit, ingested.search_word_cap, ingested.search_budget = (
            EXACT_SEARCH_LIMIT, SEARCH_WORD_CAP, SEARCH_BUDGET)


def _tiny_records(n: int, target: int) -> bytes:
    """n short records that all say "model"; record `target` says it once in a long abstract,
    with numbers that only the embedder reads (search words start with a letter)."""
    lines = []
    for i in range(n):
        abstract = f"model model study of sample {i}"
        if i == target:
            abstract = "a survey of " + " ".join(str(k) for k in range(4711, 4719)) + " with one model"
        lines.append(json.dumps({
            "id": f"2{1 + i // 9000:03d}.{i % 9000 + 1:05d}", "title": "Model study" if i != target else "A survey",
            "abstract": abstract, "authors_parsed": [["Doe", "J.", ""]], "categories": "cs.LG",
            "versions": [{"version": "v1", "created": "Mon, 6 Jan 2025 10:00:00 GMT"}], "update_date": "2025-01-06",
        }))
    return ("\n".join(lines) + "\n").encode()


def test_the_dense_half_stays_on_above_the_old_5000_paper_limit(tmp_path: Path) -> None:
    path = tmp_path / "tiny.jsonl"
    path.write_bytes(_tiny_records(6_000, target=4_321))
    snapshot = Snapshot.open(tmp_path / "index.sqlite")
    snapshot.ingest_kaggle(path)
    assert len(snapshot) > 6_000
    embedder = LexicalEmbedder(dim=256)
    index = dense_index(snapshot, embedder)
    assert index.prepare() == len(snapshot) - 6_000  # above 5,000 papers: our curated papers only
    assert index.embed() == 6_000  # what `snapshot embed` does
    target = snapshot.get("2001.04322")
    query = "model 4711 4712 4713 4714 4715 4716 4717 4718"
    lexical = {p.id for p, _ in snapshot.search(query, limit=LEXICAL_CANDIDATES)}
    assert target.id not in lexical  # FTS alone cannot find it: "model" is everywhere, numbers are no search words
    assert target.id in [p.id for p, _ in find_related(query, snapshot, embedder, since=None, until=None, limit=3)]
    vector = embedder.encode([query])[0]
    january = index.nearest(vector, since=date(2025, 1, 1), until=date(2025, 1, 31), k=5)
    assert january[0][0].id == target.id and all(date(2025, 1, 1) <= p.published <= date(2025, 1, 31) for p, _ in january)
    assert target.id not in {p.id for p, _ in index.nearest(vector, since=date(2025, 1, 7), until=None, k=50)}
    assert "HNSW graph (usearch)" in index.describe() and f"{len(snapshot)} papers embedded" in index.describe()
    snapshot.close()  # saves the graph beside the index

    reopened = Snapshot.open(tmp_path / "index.sqlite")
    again = dense_index(reopened, embedder)
    assert again.prepare() == 0 and again.count() == len(reopened)
    assert again.nearest(embedder.encode([query])[0], since=None, until=None, k=1)[0][0].id == target.id
    assert any(p.name.endswith(".lexical-256.usearch") for p in tmp_path.iterdir())


def test_a_read_only_copy_keeps_new_embeddings_in_memory(tmp_path: Path) -> None:
    Snapshot.open(tmp_path / "index.sqlite").close()
    copy = Snapshot(open_readonly(tmp_path / "index.sqlite"), tmp_path / "index.sqlite")  # as a recorded run reads it
    assert not copy.writable
    embedder = LexicalEmbedder(dim=32)
    index = dense_index(copy, embedder)
    paper = copy.get("2305.17493")
    hits = index.nearest(embedder.encode([f"{paper.title}. {paper.summary}"])[0], since=None, until=None, k=3)
    assert hits[0][0].id == paper.id and index.count() == len(copy)
    assert "kept in memory" in index.describe()


def test_an_index_of_the_previous_version_is_migrated(tmp_path: Path) -> None:
    path = tmp_path / "old.sqlite"
    db = sqlite3.connect(path)
    db.executescript("""
        CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
        CREATE TABLE papers (rowid INTEGER PRIMARY KEY, id TEXT NOT NULL UNIQUE, origin TEXT NOT NULL,
                             published TEXT NOT NULL, record TEXT NOT NULL);
        CREATE INDEX papers_published ON papers (published);
        CREATE VIRTUAL TABLE papers_fts USING fts5 (title, summary, findings, topics, tokenize = 'porter unicode61');
        INSERT INTO meta VALUES ('snapshot_date', '2025-01-02');
    """)
    paper = Paper(id="2501.00042", title="Quokka echolocation", authors=["Ana de la Fuente"], published=date(2025, 1, 2),
                  summary="Wombats listen.", primary_category="q-bio.PE", topics=["ecology"], source="snapshot")
    db.execute("INSERT INTO papers VALUES (1, ?, 'arxiv', '2025-01-02', ?)", (paper.id, paper.model_dump_json()))
    db.execute("INSERT INTO papers_fts (rowid, title, summary, findings, topics) VALUES (1, ?, ?, '', 'ecology')",
               (paper.title, paper.summary))
    db.commit()
    db.close()
    read_only = Snapshot(open_readonly(path), path)  # a recorded copy of an old index: migrated in memory
    assert read_only.search("quokka")[0][0].id == paper.id
    snapshot = Snapshot.open(path)
    assert snapshot.search("echolocation")[0][0].id == paper.id
    assert [p.id for p in snapshot.by_authors(["De La Fuente"])] == [paper.id]
    stats = snapshot.stats()
    assert stats["by_category"]["q-bio.PE"] == 1 and stats["by_topic"]["ecology"] == 1


def test_the_generator_writes_kaggle_shaped_unique_ids() -> None:
    generator = KaggleGenerator(3, tail_words=500)
    records = [json.loads(line) for line in generator.lines(400)]
    ids = [r["id"] for r in records]
    assert len(set(ids)) == len(ids) and any("/" in i for i in ids) and any(len(i.split(".")[1]) == 5 for i in ids if "/" not in i)
    assert set(records[0]) == {"id", "submitter", "authors", "title", "comments", "journal-ref", "doi", "report-no",
                               "categories", "license", "abstract", "versions", "update_date", "authors_parsed"}
    assert 400 < np.mean([len(r["abstract"]) for r in records]) < 2_000

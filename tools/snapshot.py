"""The offline literature source: a SQLite (FTS5) index over the packaged arXiv snapshot.

The packaged snapshot (tools/data/arxiv_snapshot.jsonl) holds bibliographic facts plus our own-words
summaries and findings, so its papers come back with `summary_is_paraphrase=True`. The same index also
takes the public Kaggle "arXiv metadata OAI snapshot" (JSON Lines, one paper per line), whose
`abstract` is the paper's real abstract, and papers fetched from the live API by `snapshot update`
(tools.snapshot_update), with their real abstracts too.

One row per arXiv ID. A Kaggle or arXiv row replaces a packaged row with the same ID (a real abstract
beats a paraphrase) but keeps its `topics`; our paraphrased `findings` are dropped with the paraphrase,
so no quote can be taken from them as if it were the abstract. Reloading the packaged data never
overwrites Kaggle or arXiv rows.
"""

from __future__ import annotations

import hashlib
import importlib.resources
import json
import re
import sqlite3
import threading
from collections.abc import Iterable, Iterator
from datetime import date
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import Literal

from tools.arxiv_id import canonical as canonical_id
from tools.papers import Paper
from tools.terms import search_words

PACKAGED_FILE = "arxiv_snapshot.jsonl"
SCHEMA_VERSION = "2"  # 2: records carry authors_truncated
Origin = Literal["packaged", "kaggle", "arxiv"]
ORIGINS: tuple[Origin, ...] = ("packaged", "kaggle", "arxiv")
_PROGRESS_PREFIX = "update:"  # meta keys holding `snapshot update` progress, one per query

# bm25 column weights, in the order of the FTS columns (title, summary, findings, topics).
_BM25_WEIGHTS = (4.0, 1.0, 1.0, 2.0)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS papers (
    rowid INTEGER PRIMARY KEY,
    id TEXT NOT NULL UNIQUE,
    origin TEXT NOT NULL,
    published TEXT NOT NULL,
    record TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS papers_published ON papers (published);
CREATE VIRTUAL TABLE IF NOT EXISTS papers_fts USING fts5 (
    title, summary, findings, topics, tokenize = 'porter unicode61'
);
"""


def fts_query(text: str) -> str | None:
    """Free text -> an FTS5 query that cannot fail to parse: every word quoted, OR-combined.

    Quoting turns FTS5 operators (AND, NEAR, `-`, `:`, `*`, parentheses) into plain words.
    Returns None when the text holds no searchable word.
    """
    return " OR ".join(f'"{term}"' for term in search_words(text)) or None


class Snapshot:
    """Lookup by ID and ranked, date-windowed search over the offline literature."""

    def __init__(self, connection: sqlite3.Connection, index_path: Path | None) -> None:
        self._db = connection
        self._lock = threading.Lock()  # one connection, shared by the agent's worker threads
        self.index_path = index_path
        self.snapshot_date = date.fromisoformat(self._meta("snapshot_date"))

    @classmethod
    def open(cls, index_path: Path | None = None, *, packaged: Path | None = None) -> Snapshot:
        """In memory (None) or a persistent index at `index_path`, with the packaged snapshot loaded
        (or, for benchmarks and tests, the snapshot-format file `packaged`).

        A persistent index reloads the packaged snapshot when it is missing or the package changed
        (tracked by the file's hash); papers ingested from Kaggle files stay.
        """
        if index_path is None:
            db = sqlite3.connect(":memory:", check_same_thread=False)
        else:
            index_path.parent.mkdir(parents=True, exist_ok=True)
            db = sqlite3.connect(index_path, check_same_thread=False)
        try:
            with db:
                db.executescript(_SCHEMA)
            _load_packaged_if_outdated(db, packaged.read_bytes() if packaged else None)
        except sqlite3.DatabaseError as error:
            db.close()
            raise ValueError(f"{index_path} is not a usable snapshot index ({error}); delete it to rebuild") from error
        return cls(db, index_path)

    def close(self) -> None:
        self._db.close()

    def __len__(self) -> int:
        with self._lock:
            return self._db.execute("SELECT count(*) FROM papers").fetchone()[0]

    def get(self, arxiv_id: str) -> Paper | None:
        with self._lock:
            row = self._db.execute("SELECT record FROM papers WHERE id = ?", (canonical_id(arxiv_id),)).fetchone()
        return Paper.model_validate_json(row[0]) if row else None

    def get_many(self, ids: Iterable[str]) -> dict[str, Paper]:
        """Papers found, keyed by the canonical (version-less) ID; unknown IDs are absent."""
        wanted = sorted({canonical_id(i) for i in ids})
        found: dict[str, Paper] = {}
        with self._lock:
            for start in range(0, len(wanted), 500):  # stay under SQLite's bound-parameter limit
                chunk = wanted[start : start + 500]
                marks = ",".join("?" * len(chunk))
                for (record,) in self._db.execute(f"SELECT record FROM papers WHERE id IN ({marks})", chunk):
                    paper = Paper.model_validate_json(record)
                    found[paper.id] = paper
        return found

    def search(
        self, query: str, *, since: date | None = None, until: date | None = None, limit: int = 20
    ) -> list[tuple[Paper, float]]:
        """Papers matching any word of `query`, best first, with `published` in [since, until].

        The score is FTS5's bm25 negated (higher is better), with title and topics weighted above
        summary and findings.
        """
        match = fts_query(query)
        if match is None or limit <= 0:
            return []
        weights = ", ".join(str(w) for w in _BM25_WEIGHTS)
        sql = (
            f"SELECT p.record, -bm25(papers_fts, {weights}) AS score "
            "FROM papers_fts JOIN papers p ON p.rowid = papers_fts.rowid "
            "WHERE papers_fts MATCH ? AND p.published >= ? AND p.published <= ? "
            "ORDER BY score DESC, p.id LIMIT ?"
        )
        params = (match, (since or date.min).isoformat(), (until or date.max).isoformat(), limit)
        with self._lock:
            rows = self._db.execute(sql, params).fetchall()
        return [(Paper.model_validate_json(record), score) for record, score in rows]

    def sample(self, n: int) -> list[Paper]:
        """Up to `n` papers spread evenly over the index (all of them when it holds no more): a
        deterministic background sample."""
        total = len(self)
        if total <= n:
            return self.papers()
        step = total // n
        with self._lock:
            rows = self._db.execute("SELECT record FROM papers WHERE rowid % ? = 0 ORDER BY rowid LIMIT ?", (step, n)).fetchall()
        return [Paper.model_validate_json(record) for (record,) in rows]

    def papers(self) -> list[Paper]:
        """Every paper, oldest first."""
        with self._lock:
            rows = self._db.execute("SELECT record FROM papers ORDER BY published, id").fetchall()
        return [Paper.model_validate_json(record) for (record,) in rows]

    def ingest_kaggle(self, path: Path) -> int:
        """Add or update papers from a Kaggle arXiv-metadata JSON Lines file; returns rows written.

        All or nothing: a bad line raises ValueError naming the line and nothing is kept.
        OSError (missing or unreadable file) propagates.
        """
        written = 0
        with self._lock, self._db, path.open(encoding="utf-8") as lines:
            for paper in _read_kaggle(lines):
                previous = self._db.execute("SELECT record FROM papers WHERE id = ?", (paper.id,)).fetchone()
                if previous is not None and not paper.topics:
                    paper.topics = Paper.model_validate_json(previous[0]).topics
                _upsert(self._db, paper, "kaggle")
                written += 1
        return written

    def upsert_arxiv(self, papers: Iterable[Paper], *, progress: tuple[str, dict] | None = None) -> tuple[int, int]:
        """Add or refresh papers fetched from the live API (origin "arxiv"); returns (added, updated),
        where `updated` counts only rows whose record changed (a new version, an abstract replacing
        our paraphrase), so re-reading a known page reports no work.

        `progress`: (key, state) saved in the same transaction, so the index never records a page as
        written when its papers are not (see `update_progress`).
        """
        added = updated = 0
        with self._lock, self._db:
            for paper in papers:
                paper = paper.model_copy(update={"summary_is_paraphrase": False, "findings": [], "source": "snapshot"})
                previous = self._db.execute("SELECT origin, record FROM papers WHERE id = ?", (paper.id,)).fetchone()
                if previous is not None:
                    if not paper.topics:
                        paper.topics = Paper.model_validate_json(previous[1]).topics
                    if previous[0] == "arxiv" and previous[1] == paper.model_dump_json():
                        continue
                _upsert(self._db, paper, "arxiv")
                added, updated = (added + 1, updated) if previous is None else (added, updated + 1)
            if progress is not None:
                key, state = progress
                self._db.execute(
                    "INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)", (_PROGRESS_PREFIX + key, json.dumps(state))
                )
        return added, updated

    def update_progress(self, key: str) -> dict | None:
        """The state `upsert_arxiv` saved under `key`, or None when that query never wrote a page."""
        with self._lock:
            row = self._db.execute("SELECT value FROM meta WHERE key = ?", (_PROGRESS_PREFIX + key,)).fetchone()
        return json.loads(row[0]) if row else None

    def stats(self) -> dict:
        """Counts by origin, topic, category, year and month, date range, and the packaged snapshot's date.

        `by_topic` counts our topic labels (packaged papers, and rows that replaced them); papers
        without labels (Kaggle, `snapshot update`) are counted by primary category in `by_category`,
        which covers every paper that has one. `by_source` keeps its original two keys.
        """
        with self._lock:
            by_origin = dict(self._db.execute("SELECT origin, count(*) FROM papers GROUP BY origin").fetchall())
            by_year = dict(
                self._db.execute(
                    "SELECT substr(published, 1, 4), count(*) FROM papers GROUP BY 1 ORDER BY 1"
                ).fetchall()
            )
            by_month = self._db.execute("SELECT substr(published, 1, 7), count(*) FROM papers GROUP BY 1 ORDER BY 1").fetchall()
            # JSON1 in SQLite: no record is parsed in Python, so a full Kaggle index still answers quickly
            by_topic = self._db.execute(
                "SELECT t.value, count(*) FROM papers, json_each(papers.record, '$.topics') AS t "
                "GROUP BY 1 ORDER BY 2 DESC, 1"
            ).fetchall()
            by_category = self._db.execute(
                "SELECT json_extract(record, '$.primary_category') AS c, count(*) FROM papers "
                "WHERE c IS NOT NULL GROUP BY 1 ORDER BY 2 DESC, 1"
            ).fetchall()
            first, last = self._db.execute("SELECT min(published), max(published) FROM papers").fetchone()
        return {
            "papers": sum(by_origin.values()),
            "by_source": {"packaged": by_origin.get("packaged", 0), "kaggle": by_origin.get("kaggle", 0)},
            "by_origin": {origin: by_origin.get(origin, 0) for origin in ORIGINS},
            "first_published": first,
            "last_published": last,
            "snapshot_date": self.snapshot_date.isoformat(),
            "by_year": {int(year): count for year, count in by_year.items()},
            "by_month": dict(by_month),
            "by_topic": dict(by_topic),
            "by_category": dict(by_category),
            "index_path": str(self.index_path) if self.index_path else None,
        }

    def _meta(self, key: str) -> str:
        row = self._db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        if row is None:
            raise RuntimeError(f"snapshot index lacks '{key}'; delete {self.index_path} and reopen")
        return row[0]


def _packaged_bytes() -> bytes:
    return importlib.resources.files("tools.data").joinpath(PACKAGED_FILE).read_bytes()


def _load_packaged_if_outdated(db: sqlite3.Connection, raw: bytes | None = None) -> None:
    raw = _packaged_bytes() if raw is None else raw
    digest = hashlib.sha256(raw + SCHEMA_VERSION.encode()).hexdigest()
    held = db.execute("SELECT value FROM meta WHERE key = 'packaged_sha256'").fetchone()
    if held is not None and held[0] == digest:
        return
    papers = [_packaged_paper(json.loads(line)) for line in raw.decode("utf-8").splitlines() if line.strip()]
    # rows holding a real abstract (Kaggle, live arXiv) are never put back to our paraphrase
    kept_ids = {row[0] for row in db.execute("SELECT id FROM papers WHERE origin IN ('kaggle', 'arxiv')")}
    with db:
        for (rowid,) in db.execute("SELECT rowid FROM papers WHERE origin = 'packaged'").fetchall():
            db.execute("DELETE FROM papers_fts WHERE rowid = ?", (rowid,))
        db.execute("DELETE FROM papers WHERE origin = 'packaged'")
        for paper in papers:
            if paper.id not in kept_ids:
                _upsert(db, paper, "packaged")
        latest = max(p.published for p in papers)
        db.executemany(
            "INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)",
            [("packaged_sha256", digest), ("snapshot_date", latest.isoformat())],
        )


def _packaged_paper(record: dict) -> Paper:
    fields = {k: v for k, v in record.items() if k in Paper.model_fields}
    return Paper(**fields, summary_is_paraphrase=True, source="snapshot")


def _upsert(db: sqlite3.Connection, paper: Paper, origin: Origin) -> None:
    rowid = db.execute(
        "INSERT INTO papers (id, origin, published, record) VALUES (?, ?, ?, ?) "
        "ON CONFLICT (id) DO UPDATE SET origin = excluded.origin, published = excluded.published, "
        "record = excluded.record RETURNING rowid",
        (paper.id, origin, paper.published.isoformat(), paper.model_dump_json()),
    ).fetchone()[0]
    db.execute("DELETE FROM papers_fts WHERE rowid = ?", (rowid,))
    db.execute(
        "INSERT INTO papers_fts (rowid, title, summary, findings, topics) VALUES (?, ?, ?, ?, ?)",
        (rowid, paper.title, paper.summary, "\n".join(paper.findings), " ".join(paper.topics)),
    )


def _read_kaggle(lines: Iterable[str]) -> Iterator[Paper]:
    number = 0
    try:
        for number, line in enumerate(lines, start=1):
            if line.strip():
                yield _kaggle_paper(line, number)
    except UnicodeDecodeError as error:
        raise ValueError(f"line {number + 1}: not UTF-8 text ({error.reason})") from error


def _kaggle_paper(line: str, number: int) -> Paper:
    """One Kaggle record -> Paper. Field meanings: shared/notes/api_notes.md §5."""
    try:
        record = json.loads(line)
    except json.JSONDecodeError as error:
        raise ValueError(f"line {number}: not valid JSON ({error.msg}, column {error.colno})") from error
    if not isinstance(record, dict):
        raise ValueError(f"line {number}: expected a JSON object, got {type(record).__name__}")
    missing = [k for k in ("id", "title", "abstract", "versions") if not record.get(k)]
    if missing:
        raise ValueError(f"line {number}: missing field(s) {', '.join(missing)} (is this a Kaggle arXiv metadata file?)")
    try:
        published = parsedate_to_datetime(record["versions"][0]["created"]).date()
        updated = date.fromisoformat(record["update_date"]) if record.get("update_date") else None
        categories = (record.get("categories") or "").split()
        doi = (record.get("doi") or "").split()
        return Paper(
            id=canonical_id(str(record["id"])),
            title=_squash(record["title"]),
            authors=_kaggle_authors(record),
            published=published,
            updated=updated,
            versions=len(record["versions"]),
            summary=_squash(record["abstract"]),
            summary_is_paraphrase=False,
            categories=categories,
            primary_category=categories[0] if categories else None,
            doi=doi[0] if doi else None,
            journal_ref=_squash(record["journal-ref"]) if record.get("journal-ref") else None,
            source="snapshot",
        )
    except (KeyError, IndexError, TypeError, ValueError) as error:
        raise ValueError(f"line {number}: malformed record {record.get('id')!r} ({error})") from error


def _kaggle_authors(record: dict) -> list[str]:
    parsed = record.get("authors_parsed")
    if parsed:
        # [last, first, suffix] -> "first last suffix"
        return [_squash(" ".join(p for p in (first, last, *rest) if p)) for last, first, *rest in parsed]
    raw = record.get("authors") or ""
    return [_squash(name) for name in re.split(r",\s*|\s+and\s+", raw) if name.strip()]


def _squash(text: str) -> str:
    return " ".join(text.split())

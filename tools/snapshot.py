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

At the size of all of arXiv (the Kaggle file holds about 2.7 M papers) nothing here holds every paper
in memory: `ingest_kaggle` streams the file in batches (one transaction each, saving the byte offset
it reached, so an interrupted ingest resumes there; bad lines are skipped, counted and named);
lookups go through the `id` index, search through FTS5 with bm25, papers by author through the
`authors` column of the same FTS table, and counts through indexed columns (`origin`, `published`,
`category`, `topics`). The `vectors` table holds the embeddings that dense retrieval searches
(tools.dense says what is embedded when). The FTS table is contentless (the text is stored once, in
the record), so a row leaves it by FTS5's 'delete' command with the values it was indexed with.
"""

from __future__ import annotations

import hashlib
import importlib.resources
import json
import os
import queue
import re
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import date
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import Any, Literal

import orjson

from tools.arxiv_id import canonical as canonical_id
from tools.citations import fold
from simulations.files import set_aside
from tools.papers import Paper
from tools.terms import search_words

PACKAGED_FILE = "arxiv_snapshot.jsonl"
SCHEMA_VERSION = "2"  # 2: records carry authors_truncated
Origin = Literal["packaged", "kaggle", "arxiv"]
ORIGINS: tuple[Origin, ...] = ("packaged", "kaggle", "arxiv")
_PROGRESS_PREFIX = "update:"  # meta keys holding `snapshot update` progress, one per query
_INGEST_PREFIX = "ingest:"  # meta keys holding an unfinished `snapshot ingest`, one per file
# 3: contentless FTS with an authors column; category and topics columns; the vectors table
INDEX_VERSION = 3
INGEST_BATCH_LINES = 5_000  # lines per ingest transaction
BAD_LINES_NAMED = 5  # bad lines named in an ingest report (all of them are counted)
FAIL_FAST_LINES = 1_000  # no Kaggle record among this many first lines: not a Kaggle file, stop
AUTHOR_CANDIDATES = 50  # papers by the named authors that `by_authors` returns at most

# bm25 column weights, in the order of the FTS columns (title, summary, findings, topics, authors,
# period); a text search matches only the first four (`_TEXT_COLUMNS`).
_BM25_WEIGHTS = (4.0, 1.0, 1.0, 2.0, 0.0, 0.0)
_TEXT_COLUMNS = "{title summary findings topics}"
EXACT_SEARCH_LIMIT = 50_000  # papers; a larger index is searched by `Snapshot._selective`
SEARCH_WORD_CAP = 20_000  # papers counted per query word, at most, to judge how common it is
SEARCH_BUDGET = 20_000  # papers a large index's search scores at most (but the rarest word's)
AND_WORDS = 2  # words a large index's search requires when every query word is common
_TIE_MARGIN = 64  # extra hits joined beyond a search's limit, so that ties on bm25 are broken by ID

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
"""
# What version 3 added (`_migrate` brings an older index there).
_SCHEMA_3 = (
    "CREATE INDEX IF NOT EXISTS papers_origin ON papers (origin)",
    "CREATE INDEX IF NOT EXISTS papers_category ON papers (category) WHERE category IS NOT NULL",
    "CREATE INDEX IF NOT EXISTS papers_topics ON papers (topics) WHERE topics IS NOT NULL",
    "CREATE TABLE IF NOT EXISTS vectors (seq INTEGER PRIMARY KEY AUTOINCREMENT, embedder TEXT NOT NULL, "
    "paper INTEGER NOT NULL, vector BLOB NOT NULL)",
    "CREATE UNIQUE INDEX IF NOT EXISTS vectors_paper ON vectors (embedder, paper)",
)
_FTS_SCHEMA = (
    "CREATE VIRTUAL TABLE papers_fts USING fts5 (title, summary, findings, topics, authors, period, "
    "content = '', tokenize = 'porter unicode61 remove_diacritics 2')"
)
_FTS_INSERT = "INSERT INTO papers_fts (rowid, title, summary, findings, topics, authors, period) VALUES (?, ?, ?, ?, ?, ?, ?)"
_FTS_DELETE = ("INSERT INTO papers_fts (papers_fts, rowid, title, summary, findings, topics, authors, period) "
               "VALUES ('delete', ?, ?, ?, ?, ?, ?, ?)")
_PAPER_INSERT = ("INSERT INTO papers (rowid, id, origin, published, record, category, topics) "
                 "VALUES (?, ?, ?, ?, ?, ?, ?)")
_PAPER_UPDATE = "UPDATE papers SET origin = ?, published = ?, record = ?, category = ?, topics = ? WHERE rowid = ?"


def _quoted(words: Iterable[str], joiner: str = " OR ") -> str:
    """Search words as an FTS5 expression that cannot fail to parse: each quoted, which turns FTS5's
    operators (AND, NEAR, `-`, `:`, `*`, parentheses) into plain words."""
    return joiner.join(f'"{word}"' for word in words)


class Snapshot:
    """Lookup by ID and ranked, date-windowed search over the offline literature."""

    def __init__(self, connection: sqlite3.Connection, index_path: Path | None) -> None:
        """`connection` may be read-only (a recorded run's copy, agent/replay.py): an index written
        by an earlier version is then migrated in a copy in memory, and embeddings computed for it
        stay in memory (tools.dense)."""
        self.writable = _writable(connection)
        if _index_version(connection) < INDEX_VERSION:
            if self.writable:
                _migrate(connection)
            else:
                connection = _migrated_copy(connection)
        self._db = connection
        self._lock = threading.Lock()  # one connection, shared by the agent's worker threads
        self.index_path = index_path
        self._writes = 0  # this object's commits (PRAGMA data_version counts only other connections')
        self._count: tuple[tuple[int, int], int] | None = None  # (versions, len) cached for __len__
        self._df_cache: tuple[tuple[int, int] | None, dict] = (None, {})  # search words' capped match counts
        # how a large index is searched (`search`, `_selective`); tests set them small
        self.exact_search_limit, self.search_word_cap, self.search_budget = EXACT_SEARCH_LIMIT, SEARCH_WORD_CAP, SEARCH_BUDGET
        self.dense_indexes: dict[str, Any] = {}  # tools.dense: one per embedder, saved on close
        self.snapshot_date = date.fromisoformat(self._meta("snapshot_date"))
        self.set_aside_as: Path | None = None  # where an unreadable index went when this one was rebuilt

    @classmethod
    def open(cls, index_path: Path | None = None, *, packaged: Path | None = None) -> Snapshot:
        """In memory (None) or a persistent index at `index_path`, with the packaged snapshot loaded
        (or, for benchmarks and tests, the snapshot-format file `packaged`).

        A persistent index reloads the packaged snapshot when it is missing or the package changed
        (tracked by the file's hash); papers ingested from Kaggle files stay.

        An index SQLite cannot read (garbled, not a database) is moved aside as
        `<name>.corrupt-<timestamp>` (simulations.files.set_aside; `set_aside_as` says where) and rebuilt
        from the packaged snapshot, never a traceback; what `snapshot ingest` or `update` had added is
        in the old file, to be added again. Damage inside a page shows only when that page is read:
        an index can hold millions of papers, too many to check each time it opens.
        """
        if index_path is None:
            db = sqlite3.connect(":memory:", check_same_thread=False)
        else:
            index_path.parent.mkdir(parents=True, exist_ok=True)
            db = sqlite3.connect(index_path, check_same_thread=False)
        try:
            db.execute("PRAGMA cache_size = -65536")  # 64 MiB of pages: a large ingest's indexes stay warm
            with db:
                db.executescript(_SCHEMA)
            _migrate(db)
            _load_packaged_if_outdated(db, packaged.read_bytes() if packaged else None)
        except sqlite3.DatabaseError as error:
            db.close()
            name = getattr(error, "sqlite_errorname", "") or ""
            if index_path is not None and name.startswith(("SQLITE_CORRUPT", "SQLITE_NOTADB")):
                moved = set_aside(index_path, companions=("-journal", "-wal", "-shm"))
                try:
                    rebuilt = cls.open(index_path, packaged=packaged)
                except ValueError:
                    os.replace(moved, index_path)  # the rebuild failed too (disk full): leave things as they were
                    raise
                rebuilt.set_aside_as = moved
                return rebuilt
            raise ValueError(f"{index_path} is not a usable snapshot index ({error}); check the disk and its "
                             "permissions, or delete it to rebuild") from error
        return cls(db, index_path)

    def close(self) -> None:
        for index in list(self.dense_indexes.values()):
            index.save()  # the ANN graphs (tools.dense), so the next process need not rebuild them
        self._db.close()

    def __len__(self) -> int:
        with self._lock:
            # count(*) walks an index (tens of ms at millions of papers): cached until a commit
            versions = self._versions()
            if self._count is None or self._count[0] != versions:
                self._count = (versions, self._db.execute("SELECT count(*) FROM papers").fetchone()[0])
            return self._count[1]

    def count_by_origin(self) -> dict[str, int]:
        """Papers per origin (packaged, kaggle, arxiv), from the `origin` index."""
        with self._lock:
            rows = dict(self._db.execute("SELECT origin, count(*) FROM papers GROUP BY origin").fetchall())
        return {origin: rows.get(origin, 0) for origin in ORIGINS}

    def read(self, sql: str, params: Iterable[Any] = ()) -> list[tuple]:
        """Rows of one read-only statement, under the connection's lock (for tools.dense)."""
        with self._lock:
            return self._db.execute(sql, tuple(params)).fetchall()

    def write(self, sql: str, rows: Iterable[tuple]) -> None:
        """One statement for many rows, committed (for tools.dense). sqlite3.OperationalError when the
        index is read-only or locked by another writer."""
        with self._lock, self._db:
            self._db.executemany(sql, rows)
            self._writes += 1

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
        summary and findings; author names are not searched (see `by_authors`).

        An index of more than `exact_search_limit` papers (a Kaggle ingest) is searched so that a
        query costs about the same at 2.7 M papers as at 100 k: words that much of the index holds
        ("model", "data") are left out of the match when the query has rarer ones (`_selective`),
        a date window is matched inside FTS5 (the `period` column's year and month tokens), and
        only the best `limit` hits (plus a margin for ties) are joined to their records. A query
        all of whose words are that common ("data" alone) is scored over its newest
        `search_budget` matches (by rowid: ingest order, which in the Kaggle file is by ID, so by
        date), not over the million papers that hold it.
        """
        words = search_words(query)
        if not words or limit <= 0:
            return []
        period = None
        if since is not None or until is not None:
            period = self._period_match(since, until)
            if period is None:
                return []
        exact = len(self) <= self.exact_search_limit
        joiner = " OR "
        if not exact:
            words, joiner = self._selective(words)
        match = f"{_TEXT_COLUMNS} : ({_quoted(words, joiner)})"
        if period is not None:
            match = f"{match} AND {period}"
        newest = 0
        if joiner == " AND ":  # every word is common: score only the newest `search_budget` matches
            with self._lock:
                row = self._db.execute("SELECT rowid FROM papers_fts WHERE papers_fts MATCH ? ORDER BY rowid DESC "
                                       "LIMIT 1 OFFSET ?", (match, self.search_budget - 1)).fetchone()
            newest = row[0] if row else 0
        weights = ", ".join(str(w) for w in _BM25_WEIGHTS)
        sql = (
            f"SELECT p.record, f.score FROM (SELECT rowid, -bm25(papers_fts, {weights}) AS score FROM papers_fts "
            "WHERE papers_fts MATCH ? AND rowid >= ? ORDER BY score DESC LIMIT ?) AS f JOIN papers p ON p.rowid = f.rowid "
            "WHERE p.published >= ? AND p.published <= ? ORDER BY f.score DESC, p.id LIMIT ?"
        )
        bounds = ((since or date.min).isoformat(), (until or date.max).isoformat())
        # Small indexes score and sort every match (exact ties broken by ID, as always); large ones
        # join only the best few. A window's first and last months can hold days outside it: when too
        # few papers survive that cut, every match of the window's months is taken.
        fetch = -1 if exact else limit + _TIE_MARGIN
        with self._lock:
            rows = self._db.execute(sql, (match, newest, fetch, *bounds, limit)).fetchall()
            if fetch >= 0 and len(rows) < limit and period is not None:
                rows = self._db.execute(sql, (match, newest, -1, *bounds, limit)).fetchall()
        return [(Paper.model_validate_json(record), score) for record, score in rows]

    def _selective(self, words: list[str]) -> tuple[list[str], str]:
        """The query words worth scoring in a large index, and how to join them.

        FTS5 scores every paper that matches (and counts each scored word's papers for bm25's idf),
        so an OR over "model" and "data" costs seconds at 2.7 M papers. Each word's papers are
        counted up to `search_word_cap` (cached until the index changes); the rarest words are kept
        while their papers add up to at most `search_budget` (at least the rarest): a search then
        costs about the same at any size. The words left out are those bm25 weighs least. When
        every word reaches the cap, papers must hold all of them (AND), which FTS5 evaluates by
        skipping through the words' lists; of them, the AND_WORDS longest.
        """
        sql = "SELECT count(*) FROM (SELECT rowid FROM papers_fts WHERE papers_fts MATCH ? LIMIT ?)"
        counts = {}
        with self._lock:
            versions = self._versions()
            if self._df_cache[0] != versions or len(self._df_cache[1]) > 100_000:
                self._df_cache = (versions, {})
            cache = self._df_cache[1]
            for word in words:
                if word not in cache:  # counted in every column: a third faster than in the text
                    # columns alone (FTS5 need not read the positions), and only the word's commonness is wanted
                    cache[word] = self._db.execute(sql, (f'"{word}"', self.search_word_cap)).fetchone()[0]
                counts[word] = cache[word]
        chosen: set[str] = set()
        total = 0
        for word in sorted(words, key=lambda w: counts[w]):
            if counts[word] >= self.search_word_cap or (chosen and total + counts[word] > self.search_budget):
                break
            chosen.add(word)
            total += counts[word]
        if not chosen:
            # bm25 reads the whole list of every word in the match to count its papers (a tenth of
            # a second for a word in a million papers), so only the two likeliest to be rare are
            # required: the longest (rarer words are longer, Zipf's law of abbreviation)
            longest = sorted(words, key=len, reverse=True)[:AND_WORDS]  # a stable sort: ties keep the query's order
            return [w for w in words if w in longest], " AND "
        return [w for w in words if w in chosen], " OR "

    def _versions(self) -> tuple[int, int]:
        """Changes when anyone commits to the index (other connections, or this object)."""
        return (self._db.execute("PRAGMA data_version").fetchone()[0], self._writes)

    def _period_match(self, since: date | None, until: date | None) -> str | None:
        """An FTS5 expression for the year and month tokens covering [since, until], clipped to the
        index's dates; None when the window holds no paper."""
        with self._lock:  # two statements: SQLite reads a lone min() or max() off the index, both together by a full scan
            first = self._db.execute("SELECT min(published) FROM papers").fetchone()[0]
            last = self._db.execute("SELECT max(published) FROM papers").fetchone()[0]
        if first is None:
            return None
        start = max(since or date.min, date.fromisoformat(first))
        end = min(until or date.max, date.fromisoformat(last))
        if start > end:
            return None
        tokens = []
        for year in range(start.year, end.year + 1):
            months = range(start.month if year == start.year else 1, (end.month if year == end.year else 12) + 1)
            tokens += [f'"y{year}"'] if len(months) == 12 else [f'"m{year}{m:02d}"' for m in months]
        return f"period : ({' OR '.join(tokens)})"

    def by_authors(self, names: Iterable[str], *, text: str | None = None, limit: int = AUTHOR_CANDIDATES) -> list[Paper]:
        """Papers with an author called any of `names` (a surname, or several words of a name in
        order; without case or accents), in ID order. When more than `limit` papers match, the
        `limit` whose title, summary, findings and topics best match `text` (bm25), or, when `text`
        matches none of them, the newest. In a large index, `text`'s rarest words only (`_selective`)."""
        phrases = []
        for name in names:
            words = re.findall(r"\w+", fold(name))
            if words:
                phrases.append(f'"{" ".join(words)}"')
        if not phrases or limit <= 0:
            return []
        match = f"authors : ({' OR '.join(dict.fromkeys(phrases))})"
        words = search_words(text) if text is not None else []
        if words and len(self) > self.exact_search_limit:
            words, _ = self._selective(words)  # bm25 reads each word's whole list: a large index's rarest words only
        with self._lock:
            count = self._db.execute("SELECT count(*) FROM (SELECT rowid FROM papers_fts WHERE papers_fts MATCH ? LIMIT ?)",
                                     (match, limit + 1)).fetchone()[0]  # only whether there are more than `limit`
            if count <= limit:
                rows = self._db.execute(
                    "SELECT p.record FROM papers_fts f JOIN papers p ON p.rowid = f.rowid WHERE papers_fts MATCH ? ORDER BY p.id",
                    (match,),
                ).fetchall()
                return [Paper.model_validate_json(record) for (record,) in rows]
            rows = []
            if words:
                weights = ", ".join(str(w) for w in _BM25_WEIGHTS)
                rows = self._db.execute(
                    f"SELECT p.record FROM (SELECT rowid, bm25(papers_fts, {weights}) AS score FROM papers_fts "
                    "WHERE papers_fts MATCH ? ORDER BY score LIMIT ?) AS f JOIN papers p ON p.rowid = f.rowid "
                    "ORDER BY f.score, p.id",
                    (f"{match} AND {_TEXT_COLUMNS} : ({_quoted(words)})", limit),
                ).fetchall()
            if not rows:
                rows = self._db.execute(
                    "SELECT p.record FROM papers p WHERE p.rowid IN (SELECT f.rowid FROM papers_fts f "
                    "JOIN papers q ON q.rowid = f.rowid WHERE papers_fts MATCH ? ORDER BY q.published DESC, q.id LIMIT ?)",
                    (match, limit),
                ).fetchall()
        papers = [Paper.model_validate_json(record) for (record,) in rows]
        return sorted(papers, key=lambda p: p.id)

    def sample(self, n: int) -> list[Paper]:
        """Up to `n` papers spread evenly over the index (all of them when it holds no more): a
        deterministic background sample, the papers whose rowid is a multiple of len // n (found
        by rowid, not by reading the table)."""
        total = len(self)
        if total <= n:
            return self.papers()
        step = total // n
        rows: list[str] = []
        with self._lock:
            top = self._db.execute("SELECT max(rowid) FROM papers").fetchone()[0] or 0
            multiple = step
            while len(rows) < n and multiple <= top:
                wanted = list(range(multiple, min(top, multiple + 500 * step - 1) + 1, step))
                multiple = wanted[-1] + step
                marks = ",".join("?" * len(wanted))
                rows += [r for (r,) in self._db.execute(f"SELECT record FROM papers WHERE rowid IN ({marks}) ORDER BY rowid", wanted)]
        return [Paper.model_validate_json(record) for record in rows[:n]]

    def papers(self) -> list[Paper]:
        """Every paper, oldest first (for small indexes: this parses every record)."""
        with self._lock:
            rows = self._db.execute("SELECT record FROM papers ORDER BY published, id").fetchall()
        return [Paper.model_validate_json(record) for (record,) in rows]

    def ingest_kaggle(
        self, path: Path, *, batch_lines: int = INGEST_BATCH_LINES, restart: bool = False,
        on_batch: Callable[[IngestReport], None] | None = None,
    ) -> IngestReport:
        """Add or update papers from a Kaggle arXiv-metadata JSON Lines file, streamed in batches of
        `batch_lines` lines; each batch is one transaction, saved with the byte offset it reached.

        - Resumable: when an ingest stopped (killed, Ctrl-C, disk full), ingesting the same file again
          (same size and modification time) continues after its last committed batch; `restart=True`
          reads the file from the start. A finished ingest keeps no progress, so ingesting the file
          again reads it again (rows whose record did not change are left as they are).
        - Bad lines (not UTF-8, not JSON, not a Kaggle record) are skipped and counted, and the
          report names the first BAD_LINES_NAMED. A file none of whose first FAIL_FAST_LINES lines is
          a Kaggle record is not a Kaggle file: ValueError naming its first bad line, nothing written.
        - Constant memory: a reader thread parses one batch ahead of the one being written.
        - A Kaggle row replaces a packaged or arXiv row of the same ID and keeps its topics; a later
          line with the same ID replaces an earlier one.

        OSError (missing or unreadable file) propagates. `on_batch` is called after each commit
        with the report so far (a progress bar; raising there stops the ingest, resumable).
        """
        path = Path(path)
        status = path.stat()
        key = _INGEST_PREFIX + str(path.resolve())
        identity = {"size": status.st_size, "mtime_ns": status.st_mtime_ns}
        report = IngestReport(path=str(path))
        with self._lock:
            row = self._db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        saved = json.loads(row[0]) if row else None
        if saved is not None and not restart and all(saved.get(k) == v for k, v in identity.items()):
            report.resume(saved)
        elif saved is not None:
            report.restarted = True
        started, first_line = time.perf_counter(), report.lines
        reader = _KaggleReader(path, report.offset, report.lines, max(1, batch_lines))
        try:
            for batch in reader:
                report.lines, report.offset = batch.end_line, batch.end_offset
                report.skipped += len(batch.bad)
                report.bad_lines += batch.bad[: BAD_LINES_NAMED - len(report.bad_lines)]
                report.nonblank += batch.nonblank
                if not batch.rows and report.added + report.updated + report.unchanged == 0:
                    if batch.last or report.nonblank >= FAIL_FAST_LINES:
                        first = report.bad_lines[0] if report.bad_lines else "no line holds a record"
                        raise ValueError(f"{first} (no Kaggle arXiv metadata record in its first "
                                         f"{report.nonblank} lines: is this the Kaggle file?)")
                    continue  # nothing good yet: nothing to commit, no progress to keep
                with self._lock, self._db:
                    added, updated, unchanged = _write_kaggle(self._db, batch.rows)
                    report.added, report.updated, report.unchanged = (
                        report.added + added, report.updated + updated, report.unchanged + unchanged)
                    state = {**identity, **report.progress()}
                    self._db.execute("INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)", (key, json.dumps(state)))
                    self._writes += 1
                report.seconds, report.lines_read = time.perf_counter() - started, report.lines - first_line
                if on_batch is not None:
                    on_batch(report)
            with self._lock, self._db:
                self._db.execute("DELETE FROM meta WHERE key = ?", (key,))
                self._writes += 1
            report.done = True
        finally:
            reader.close()
        report.seconds, report.lines_read = time.perf_counter() - started, report.lines - first_line
        return report

    def upsert_arxiv(self, papers: Iterable[Paper], *, progress: tuple[str, dict] | None = None) -> tuple[int, int]:
        """Add or refresh papers fetched from the live API (origin "arxiv"); returns (added, updated),
        where `updated` counts only rows whose record changed (a new version, an abstract replacing
        our paraphrase), so re-reading a known page reports no work.

        `progress`: (key, state) saved in the same transaction, so the index never records a page as
        written when its papers are not (see `update_progress`).
        """
        added = updated = 0
        with self._lock, self._db:
            self._writes += 1
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
            # indexed columns, not the records: a full Kaggle index answers without reading its rows
            by_topic = self._db.execute(
                "SELECT t.value, count(*) FROM papers, json_each(papers.topics) AS t WHERE papers.topics IS NOT NULL "
                "GROUP BY 1 ORDER BY 2 DESC, 1"
            ).fetchall()
            by_category = self._db.execute(
                "SELECT category, count(*) FROM papers WHERE category IS NOT NULL GROUP BY 1 ORDER BY 2 DESC, 1"
            ).fetchall()
            first = self._db.execute("SELECT min(published) FROM papers").fetchone()[0]
            last = self._db.execute("SELECT max(published) FROM papers").fetchone()[0]
            vectors = dict(self._db.execute("SELECT embedder, count(*) FROM vectors GROUP BY 1 ORDER BY 1").fetchall())
            ingests = {key[len(_INGEST_PREFIX):]: json.loads(value)["lines"] for key, value in self._db.execute(
                "SELECT key, value FROM meta WHERE key >= ? AND key < ?", (_INGEST_PREFIX, _INGEST_PREFIX[:-1] + ";"))}
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
            "embedded": vectors,  # papers with a stored embedding, per embedder (tools.dense)
            "unfinished_ingests": ingests,  # file -> lines committed, for ingests that stopped midway
            "index_path": str(self.index_path) if self.index_path else None,
        }

    def _meta(self, key: str) -> str:
        row = self._db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        if row is None:
            raise RuntimeError(f"snapshot index lacks '{key}'; delete {self.index_path} and reopen")
        return row[0]


def _packaged_bytes() -> bytes:
    return importlib.resources.files("tools.data").joinpath(PACKAGED_FILE).read_bytes()


def _index_version(db: sqlite3.Connection) -> int:
    try:
        row = db.execute("SELECT value FROM meta WHERE key = 'index_version'").fetchone()
    except sqlite3.OperationalError:  # no meta table: nothing was ever written
        return 0
    return int(row[0]) if row else 0


def _writable(db: sqlite3.Connection) -> bool:
    """Whether the connection may write (a recorded run's copy is opened read-only): a write that
    deletes nothing, rolled back."""
    try:
        db.execute("SAVEPOINT writable_probe")
    except sqlite3.OperationalError:
        return False
    try:
        db.execute("DELETE FROM meta WHERE key = ?", ("\x00probe",))
        return True
    except sqlite3.OperationalError as error:
        return "readonly" not in str(error)
    finally:
        db.execute("ROLLBACK TO writable_probe")
        db.execute("RELEASE writable_probe")


def _migrate(db: sqlite3.Connection) -> None:
    """Bring an index of an earlier version (or a new, empty one) to INDEX_VERSION in one
    transaction: the new columns filled from the records by SQL, the FTS table rebuilt from them
    (contentless, with authors and period), the vectors table. Once per index; at millions of papers
    it takes minutes."""
    if _index_version(db) >= INDEX_VERSION:
        return
    with db:
        db.execute("BEGIN")  # DDL too: Python's sqlite3 opens transactions only for DML
        columns = {row[1] for row in db.execute("PRAGMA table_info(papers)")}
        for column in ("category", "topics"):
            if column not in columns:
                db.execute(f"ALTER TABLE papers ADD COLUMN {column} TEXT")
        db.execute(
            "UPDATE papers SET category = json_extract(record, '$.primary_category'), topics = CASE "
            "WHEN json_array_length(record, '$.topics') > 0 THEN json_extract(record, '$.topics') END"
        )
        for statement in _SCHEMA_3:
            db.execute(statement)
        db.execute("DROP TABLE IF EXISTS papers_fts")
        db.execute(_FTS_SCHEMA)
        # FTS5 flushes its in-memory terms to a new segment when they pass `hashsize` (1 MiB by
        # default) and merges segments later: 64 MiB means one flush per ingest batch, which halves
        # the CPU an ingest spends in FTS5 (memory stays bounded by it)
        db.execute("INSERT INTO papers_fts (papers_fts, rank) VALUES ('hashsize', ?)", (64 << 20,))
        last = 0
        while rows := db.execute("SELECT rowid, record FROM papers WHERE rowid > ? ORDER BY rowid LIMIT 2000", (last,)).fetchall():
            db.executemany(_FTS_INSERT, [(rowid, *_fts_values(orjson.loads(record))) for rowid, record in rows])
            last = rows[-1][0]
        db.execute("INSERT OR REPLACE INTO meta (key, value) VALUES ('index_version', ?)", (str(INDEX_VERSION),))


def _migrated_copy(connection: sqlite3.Connection) -> sqlite3.Connection:
    """A read-only index of an earlier version, copied into memory and migrated there."""
    memory = sqlite3.connect(":memory:", check_same_thread=False)
    connection.backup(memory)
    connection.close()
    _migrate(memory)
    return memory


def _fts_values(record: dict) -> tuple[str, str, str, str, str, str]:
    """What a record puts in the FTS columns; the same values take it out again (contentless)."""
    published = record["published"]
    return (
        record["title"], record["summary"], "\n".join(record.get("findings") or ()), " ".join(record.get("topics") or ()),
        "; ".join(record.get("authors") or ()), f"y{published[:4]} m{published[:4]}{published[5:7]}",
    )


def _text_changed(old: dict, new: dict) -> bool:
    """Whether what a paper's embedding is computed from (title and summary) changed."""
    return (old.get("title"), old.get("summary")) != (new.get("title"), new.get("summary"))


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
        for rowid, record in db.execute("SELECT rowid, record FROM papers WHERE origin = 'packaged'").fetchall():
            db.execute(_FTS_DELETE, (rowid, *_fts_values(orjson.loads(record))))
        db.execute("DELETE FROM vectors WHERE paper IN (SELECT rowid FROM papers WHERE origin = 'packaged')")
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
    text = paper.model_dump_json()
    record = orjson.loads(text)
    topics = orjson.dumps(paper.topics).decode() if paper.topics else None
    old = db.execute("SELECT rowid, record FROM papers WHERE id = ?", (paper.id,)).fetchone()
    if old is None:
        rowid = db.execute(
            "INSERT INTO papers (id, origin, published, record, category, topics) VALUES (?, ?, ?, ?, ?, ?) RETURNING rowid",
            (paper.id, origin, paper.published.isoformat(), text, paper.primary_category, topics),
        ).fetchone()[0]
    else:
        rowid, old_record = old[0], orjson.loads(old[1])
        db.execute(_FTS_DELETE, (rowid, *_fts_values(old_record)))
        if _text_changed(old_record, record):
            db.execute("DELETE FROM vectors WHERE paper = ?", (rowid,))
        db.execute(_PAPER_UPDATE, (origin, paper.published.isoformat(), text, paper.primary_category, topics, rowid))
    db.execute(_FTS_INSERT, (rowid, *_fts_values(record)))


# --- Kaggle ingest ---------------------------------------------------------------------------------


@dataclass
class IngestReport:
    """What `ingest_kaggle` did; the counts cover every run of a resumed ingest."""

    path: str
    added: int = 0
    updated: int = 0
    unchanged: int = 0  # rows already holding the same record
    skipped: int = 0  # bad lines
    bad_lines: list[str] = field(default_factory=list)  # the first BAD_LINES_NAMED, each "line N: why"
    lines: int = 0  # lines read, counted from the file's start
    offset: int = 0  # bytes read
    nonblank: int = 0  # non-empty lines read
    resumed_at: int | None = None  # the line after which this run resumed an interrupted ingest
    restarted: bool = False  # progress of an earlier ingest was dropped (the file changed, or restart=True)
    done: bool = False
    seconds: float = 0.0  # this run's time
    lines_read: int = 0  # lines this run read

    @property
    def written(self) -> int:
        return self.added + self.updated

    @property
    def rate(self) -> float:
        """Lines per second in this run."""
        return self.lines_read / self.seconds if self.seconds > 0 else 0.0

    def progress(self) -> dict:
        keys = ("added", "updated", "unchanged", "skipped", "bad_lines", "lines", "offset", "nonblank")
        return {k: getattr(self, k) for k in keys}

    def resume(self, saved: dict) -> None:
        for k in self.progress():
            setattr(self, k, saved.get(k, getattr(self, k)))
        self.resumed_at = self.lines


@dataclass
class _Batch:
    rows: list[tuple] = field(default_factory=list)  # _kaggle_row results
    bad: list[str] = field(default_factory=list)
    nonblank: int = 0
    end_line: int = 0
    end_offset: int = 0
    last: bool = False


PROCESS_READER_BYTES = 64 << 20  # a file with more left to read than this is parsed in a child process


def _kaggle_batches(path: Path, offset: int, line: int, batch_lines: int) -> Iterator[_Batch]:
    """The file from byte `offset` (line `line`), parsed, `batch_lines` lines a batch."""
    with path.open("rb") as lines:
        lines.seek(offset)
        batch, first = _Batch(), line
        for raw in lines:
            line += 1
            offset += len(raw)
            if raw.strip():
                batch.nonblank += 1
                try:
                    batch.rows.append(_kaggle_row(raw, line))
                except ValueError as error:
                    batch.bad.append(str(error))
            if line - first >= batch_lines:
                batch.end_line, batch.end_offset = line, offset
                yield batch
                batch, first = _Batch(), line
        batch.end_line, batch.end_offset, batch.last = line, offset, True
        yield batch


def _read_into(path: Path, offset: int, line: int, batch_lines: int, out: Any, stop: Any) -> None:
    """The reader's loop (a thread's or a child process's): batches, or the exception, into `out`."""
    def put(item: object) -> bool:
        while not stop.is_set():
            try:
                out.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    try:
        for batch in _kaggle_batches(path, offset, line, batch_lines):
            if not put(batch):
                return
    except BaseException as error:  # handed to the writer, which raises it
        put(error)


class _KaggleReader:
    """Reads and parses the file one batch ahead of the writer; at most four batches exist.

    A large file is parsed in a child process: parsing is Python (it holds the GIL) and a thread
    doing it stalls the writer, whose executemany needs the GIL between rows; a process parses
    while SQLite indexes, on the second core. The child is forked (spawn would re-run the caller's
    main module), so only from a process running no other thread. A small file (tests, the
    sample) is parsed in a thread, which starts at once."""

    def __init__(self, path: Path, offset: int, line: int, batch_lines: int) -> None:
        args = (path, offset, line, batch_lines)
        self._process = None
        import multiprocessing

        if (path.stat().st_size - offset > PROCESS_READER_BYTES and threading.active_count() == 1
                and "fork" in multiprocessing.get_all_start_methods()):
            context = multiprocessing.get_context("fork")
            self._queue, self._stop = context.Queue(maxsize=2), context.Event()
            self._process = context.Process(target=_read_into, args=(*args, self._queue, self._stop), daemon=True,
                                            name="kaggle-reader")
            self._process.start()
        else:
            self._queue, self._stop = queue.Queue(maxsize=1), threading.Event()
            self._thread = threading.Thread(target=_read_into, args=(*args, self._queue, self._stop), daemon=True,
                                            name="kaggle-reader")
            self._thread.start()

    def __iter__(self) -> Iterator[_Batch]:
        while True:
            try:
                item = self._queue.get(timeout=1.0)
            except queue.Empty:
                if self._process is not None and not self._process.is_alive():
                    raise RuntimeError(f"the Kaggle reader process stopped (exit code {self._process.exitcode})") from None
                continue
            if isinstance(item, BaseException):
                raise item
            yield item
            if item.last:
                return

    def close(self) -> None:
        self._stop.set()
        if self._process is None:
            self._thread.join()
            return
        while self._process.is_alive():  # it may be waiting to put a batch: take it
            try:
                self._queue.get(timeout=0.1)
            except queue.Empty:
                pass
            self._process.join(timeout=0.1)
        self._queue.close()


def _write_kaggle(db: sqlite3.Connection, rows: list[tuple]) -> tuple[int, int, int]:
    """One batch of parsed Kaggle rows into the index (inside the caller's transaction): new IDs in
    two executemany calls, known ones updated one by one. Returns (added, updated, unchanged)."""
    latest = {row[0]: row for row in rows}  # a later line with the same ID wins
    ids = list(latest)
    previous: dict[str, tuple[int, str, str]] = {}
    for start in range(0, len(ids), 500):
        chunk = ids[start : start + 500]
        marks = ",".join("?" * len(chunk))
        for paper_id, rowid, origin, record in db.execute(f"SELECT id, rowid, origin, record FROM papers WHERE id IN ({marks})", chunk):
            previous[paper_id] = (rowid, origin, record)
    next_rowid = db.execute("SELECT coalesce(max(rowid), 0) + 1 FROM papers").fetchone()[0]
    papers, fts = [], []
    added = updated = unchanged = 0
    for paper_id, (_, published, text, category, values) in latest.items():
        old = previous.get(paper_id)
        if old is None:
            papers.append((next_rowid, paper_id, "kaggle", published, text, category, None))
            fts.append((next_rowid, *values))
            next_rowid, added = next_rowid + 1, added + 1
            continue
        rowid, origin, old_text = old
        old_record, record, topics = orjson.loads(old_text), orjson.loads(text), None
        if old_record.get("topics"):  # our labels outlive the paraphrase they came with
            record["topics"] = old_record["topics"]
            text, values, topics = orjson.dumps(record).decode(), _fts_values(record), orjson.dumps(record["topics"]).decode()
        if origin == "kaggle" and old_text == text:
            unchanged += 1
            continue
        db.execute(_FTS_DELETE, (rowid, *_fts_values(old_record)))
        if _text_changed(old_record, record):
            db.execute("DELETE FROM vectors WHERE paper = ?", (rowid,))
        db.execute(_PAPER_UPDATE, ("kaggle", published, text, category, topics, rowid))
        db.execute(_FTS_INSERT, (rowid, *values))
        updated += 1
    db.executemany(_PAPER_INSERT, papers)
    db.executemany(_FTS_INSERT, fts)
    return added, updated, unchanged


_MONTHS = {name: number for number, name in enumerate("Jan Feb Mar Apr May Jun Jul Aug Sep Oct Nov Dec".split(), start=1)}
_PLAIN_ID = re.compile(r"[0-9]{4}\.[0-9]{4,5}|[a-z-]+/[0-9]{7}")  # Kaggle's own forms, already canonical


def _kaggle_row(raw: bytes, number: int) -> tuple[str, str, str, str | None, tuple]:
    """One Kaggle line -> (id, published, record JSON, primary category, FTS values), ValueError
    naming the line when it is no Kaggle record. Field meanings: shared/notes/api_notes.md §5.

    The record is the JSON of the Paper these fields make (Paper.model_validate_json reads it back;
    tests/test_index_scale.py checks it is the same), built without pydantic: validating 2.7 M
    records through the model would cost more than everything else the ingest does.
    """
    try:
        line = raw.decode("utf-8")
    except UnicodeDecodeError as error:
        raise ValueError(f"line {number}: not UTF-8 text ({error.reason})") from None
    try:
        record = orjson.loads(line)
    except orjson.JSONDecodeError as error:
        raise ValueError(f"line {number}: not valid JSON ({error.msg}, column {error.colno})") from None
    if not isinstance(record, dict):
        raise ValueError(f"line {number}: expected a JSON object, got {type(record).__name__}")
    missing = [k for k in ("id", "title", "abstract", "versions") if not record.get(k)]
    if missing:
        raise ValueError(f"line {number}: missing field(s) {', '.join(missing)} (is this a Kaggle arXiv metadata file?)")
    try:
        raw_id = record["id"]
        paper_id = raw_id if isinstance(raw_id, str) and _PLAIN_ID.fullmatch(raw_id) else canonical_id(str(raw_id))
        versions = record["versions"]
        published = _created(versions[0]["created"]).isoformat()
        updated = date.fromisoformat(record["update_date"]).isoformat() if record.get("update_date") else None
        categories = (record.get("categories") or "").split()
        doi = (record.get("doi") or "").split()
        paper = {
            "id": paper_id,
            "title": _squash(record["title"]),
            "authors": _kaggle_authors(record),
            "authors_truncated": False,
            "published": published,
            "date_precision": "day",
            "updated": updated,
            "versions": len(versions),
            "summary": _squash(record["abstract"]),
            "summary_is_paraphrase": False,
            "findings": [],
            "topics": [],
            "categories": categories,
            "primary_category": categories[0] if categories else None,
            "doi": doi[0] if doi else None,
            "journal_ref": _squash(record["journal-ref"]) if record.get("journal-ref") else None,
            "source": "snapshot",
        }
        if not isinstance(versions, list) or not all(isinstance(c, str) for c in categories):
            raise TypeError("versions must be a list")
    except (KeyError, IndexError, TypeError, ValueError, AttributeError) as error:
        raise ValueError(f"line {number}: malformed record {record.get('id')!r} ({error})") from None
    return paper_id, published, orjson.dumps(paper).decode(), paper["primary_category"], _fts_values(paper)


def _created(text: str) -> date:
    """A Kaggle `created` date ("Mon, 2 Apr 2007 19:18:42 GMT") without the email parser when it
    has that plain shape."""
    parts = text.split()
    if len(parts) >= 4 and (month := _MONTHS.get(parts[2])) and parts[1].isdigit() and parts[3].isdigit():
        return date(int(parts[3]), month, int(parts[1]))
    return parsedate_to_datetime(text).date()


def _kaggle_authors(record: dict) -> list[str]:
    parsed = record.get("authors_parsed")
    if parsed:
        # [last, first, suffix] -> "first last suffix"
        return [_squash(" ".join(p for p in (first, last, *rest) if p)) for last, first, *rest in parsed]
    raw = record.get("authors") or ""
    return [_squash(name) for name in re.split(r",\s*|\s+and\s+", raw) if name.strip()]


def _squash(text: str) -> str:
    return " ".join(text.split())

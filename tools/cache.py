"""SQLite cache of live arXiv answers: papers found, IDs confirmed absent, and searches, each with a TTL.

Only answers are cached, never faults: an ID the API failed on is asked again next time. Only
proven absences are cached (tools.arxiv_api), briefly, and they are a first answer for the next
check to re-confirm, never a verdict on their own (tools.sources).
arXiv asks clients to cache, since repeated identical queries are discouraged.

A cache is only ever a shortcut, so a garbled file (a crash mid-write on a disk that lies, a copy
cut short, bytes overwritten) must cost a refetch, never a traceback: one that SQLite cannot read,
or whose `PRAGMA quick_check` fails on opening, is moved aside as `<name>.corrupt-<timestamp>`
(kept for a person to look at; simulations.files.set_aside) and an empty cache is built in its place.
Corruption found later, by a query, is handled the same way and that query is a miss. A record
that no longer parses is a miss too. Errors that are not corruption (the file cannot be opened,
is locked or read-only) still say what to do.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TypeVar

from pydantic import ValidationError

from simulations.files import set_aside
from tools.papers import Paper

T = TypeVar("T")

PAPER_TTL_S = 30 * 86_400  # metadata changes rarely (a new version, a journal ref)
ABSENT_TTL_S = 3_600  # brief: a proven absence is re-confirmed live before each new verdict anyway
SEARCH_TTL_S = 86_400  # new papers appear daily

_SCHEMA = """
CREATE TABLE IF NOT EXISTS papers (id TEXT PRIMARY KEY, record TEXT NOT NULL, stored_at REAL NOT NULL);
CREATE TABLE IF NOT EXISTS absent (id TEXT PRIMARY KEY, stored_at REAL NOT NULL);
CREATE TABLE IF NOT EXISTS searches (key TEXT PRIMARY KEY, ids TEXT NOT NULL, stored_at REAL NOT NULL);
"""


class LookupCache:
    def __init__(self, path: Path | None, *, now: Callable[[], float] = time.time) -> None:
        """A cache file at `path`, or an in-memory one (None). A garbled file is set aside and
        rebuilt empty; `set_aside_as` then says where the old one went."""
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._now = now
        self._lock = threading.Lock()
        self.set_aside_as: Path | None = None
        try:
            self._db = _connect(path)
        except sqlite3.DatabaseError as error:
            if path is None or not _garbled(error):
                raise ValueError(f"{path} is not a usable cache ({error}); check its permissions, or delete it and run again") from error
            self._db = self._rebuild()

    def close(self) -> None:
        self._db.close()

    def papers(self, ids: Iterable[str]) -> dict[str, Paper]:
        fresh_after = self._now() - PAPER_TTL_S
        found: dict[str, Paper] = {}
        for i, record in self._rows("SELECT id, record FROM papers", ids, fresh_after):
            try:
                found[i] = Paper.model_validate_json(record)
            except ValidationError:
                continue  # a garbled record is a miss: the paper is fetched again and stored anew
        return found

    def absent(self, ids: Iterable[str]) -> set[str]:
        fresh_after = self._now() - ABSENT_TTL_S
        return {i for i, _ in self._rows("SELECT id, id FROM absent", ids, fresh_after)}

    def store(self, found: dict[str, Paper], absent: Iterable[str]) -> None:
        now = self._now()
        papers = [(i, p.model_dump_json(), now) for i, p in found.items()]
        gone = [(i, now) for i in absent]

        def write(db: sqlite3.Connection) -> None:
            with db:
                db.executemany("INSERT OR REPLACE INTO papers (id, record, stored_at) VALUES (?, ?, ?)", papers)
                db.executemany("INSERT OR REPLACE INTO absent (id, stored_at) VALUES (?, ?)", gone)
                db.executemany("DELETE FROM absent WHERE id = ?", [(i,) for i in found])

        self._use(write, miss=None, retry=True)

    def forget_absent(self, ids: Iterable[str]) -> None:
        """Drop cached absences that a later check could not re-confirm."""
        keys = [(i,) for i in ids]

        def write(db: sqlite3.Connection) -> None:
            with db:
                db.executemany("DELETE FROM absent WHERE id = ?", keys)

        self._use(write, miss=None, retry=True)

    def search(self, key: str) -> list[Paper] | None:
        digest = _digest(key)
        row = self._use(lambda db: db.execute("SELECT ids, stored_at FROM searches WHERE key = ?", (digest,)).fetchone(), miss=None)
        if row is None or row[1] < self._now() - SEARCH_TTL_S:
            return None
        try:
            ids = json.loads(row[0])
        except (TypeError, ValueError):
            return None  # a garbled record is a miss
        if not isinstance(ids, list) or not all(isinstance(i, str) for i in ids):
            return None
        held = self.papers(ids)
        if len(held) < len(ids):
            return None
        return [held[i] for i in ids]

    def store_search(self, key: str, papers: list[Paper]) -> None:
        self.store({p.id: p for p in papers}, ())
        record = (_digest(key), json.dumps([p.id for p in papers]), self._now())

        def write(db: sqlite3.Connection) -> None:
            with db:
                db.execute("INSERT OR REPLACE INTO searches (key, ids, stored_at) VALUES (?, ?, ?)", record)

        self._use(write, miss=None, retry=True)

    def _rows(self, select: str, ids: Iterable[str], fresh_after: float) -> list[tuple[str, str]]:
        wanted = list(dict.fromkeys(ids))

        def read(db: sqlite3.Connection) -> list[tuple[str, str]]:
            rows: list[tuple[str, str]] = []
            for start in range(0, len(wanted), 500):
                chunk = wanted[start : start + 500]
                marks = ",".join("?" * len(chunk))
                rows += db.execute(f"{select} WHERE id IN ({marks}) AND stored_at >= ?", [*chunk, fresh_after]).fetchall()
            return rows

        return self._use(read, miss=[])

    def _use(self, action: Callable[[sqlite3.Connection], T], *, miss: T, retry: bool = False) -> T:
        """`action` on the database, under the lock. Corruption found on the way: the file is set
        aside and rebuilt, and a read is a miss (`miss`) while a write (`retry`) goes to the new file."""
        with self._lock:
            try:
                return action(self._db)
            except sqlite3.DatabaseError as error:
                if self.path is None or not _garbled(error):
                    raise
                self._db.close()
                self._db = self._rebuild()
                return action(self._db) if retry else miss

    def _rebuild(self) -> sqlite3.Connection:
        assert self.path is not None
        if self.path.exists():
            self.set_aside_as = set_aside(self.path, companions=_SQLITE_COMPANIONS)
        return _connect(self.path)


# Files SQLite keeps next to a database; a journal left by the garbled file must never be played
# back into the new one.
_SQLITE_COMPANIONS = ("-journal", "-wal", "-shm")


class _Garbled(sqlite3.DatabaseError):
    """The file opened but `PRAGMA quick_check` found it damaged."""


def _connect(path: Path | None) -> sqlite3.Connection:
    db = sqlite3.connect(str(path) if path else ":memory:", check_same_thread=False)
    try:
        with db:
            db.executescript(_SCHEMA)
        if path is not None:
            # Damage inside a page only shows when that page is read; look at every page once, now.
            verdict = db.execute("PRAGMA quick_check").fetchone()
            if verdict is None or verdict[0] != "ok":
                raise _Garbled(f"quick_check: {str(verdict[0] if verdict else 'no answer').splitlines()[0]}")
    except BaseException:
        db.close()
        raise
    return db


def _garbled(error: sqlite3.DatabaseError) -> bool:
    """Whether `error` says the file is damaged or no database (as opposed to locked, unreadable...)."""
    if isinstance(error, _Garbled):
        return True
    name = getattr(error, "sqlite_errorname", "") or ""
    return name.startswith(("SQLITE_CORRUPT", "SQLITE_NOTADB"))


def _digest(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()

"""SQLite cache of live arXiv answers: papers found, IDs confirmed absent, and searches, each with a TTL.

Only answers are cached, never faults: an ID the API failed on is asked again next time. Only
proven absences are cached (tools.arxiv_api), briefly, and they are a first answer for the next
check to re-confirm, never a verdict on their own (tools.sources).
arXiv asks clients to cache, since repeated identical queries are discouraged.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable
from pathlib import Path

from tools.papers import Paper

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
        """A cache file at `path`, or an in-memory one (None)."""
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._now = now
        self._lock = threading.Lock()
        try:
            self._db = sqlite3.connect(str(path) if path else ":memory:", check_same_thread=False)
            with self._db:
                self._db.executescript(_SCHEMA)
        except sqlite3.DatabaseError as error:
            raise ValueError(f"{path} is not a usable cache ({error}); delete it and run again") from error

    def close(self) -> None:
        self._db.close()

    def papers(self, ids: Iterable[str]) -> dict[str, Paper]:
        fresh_after = self._now() - PAPER_TTL_S
        return {i: Paper.model_validate_json(r) for i, r in self._rows("SELECT id, record FROM papers", ids, fresh_after)}

    def absent(self, ids: Iterable[str]) -> set[str]:
        fresh_after = self._now() - ABSENT_TTL_S
        return {i for i, _ in self._rows("SELECT id, id FROM absent", ids, fresh_after)}

    def store(self, found: dict[str, Paper], absent: Iterable[str]) -> None:
        now = self._now()
        with self._lock, self._db:
            self._db.executemany(
                "INSERT OR REPLACE INTO papers (id, record, stored_at) VALUES (?, ?, ?)",
                [(i, p.model_dump_json(), now) for i, p in found.items()],
            )
            self._db.executemany("INSERT OR REPLACE INTO absent (id, stored_at) VALUES (?, ?)", [(i, now) for i in absent])
            self._db.executemany("DELETE FROM absent WHERE id = ?", [(i,) for i in found])

    def forget_absent(self, ids: Iterable[str]) -> None:
        """Drop cached absences that a later check could not re-confirm."""
        with self._lock, self._db:
            self._db.executemany("DELETE FROM absent WHERE id = ?", [(i,) for i in ids])

    def search(self, key: str) -> list[Paper] | None:
        with self._lock:
            row = self._db.execute("SELECT ids, stored_at FROM searches WHERE key = ?", (_digest(key),)).fetchone()
        if row is None or row[1] < self._now() - SEARCH_TTL_S:
            return None
        ids = json.loads(row[0])
        held = self.papers(ids)
        if len(held) < len(ids):
            return None
        return [held[i] for i in ids]

    def store_search(self, key: str, papers: list[Paper]) -> None:
        self.store({p.id: p for p in papers}, ())
        with self._lock, self._db:
            self._db.execute(
                "INSERT OR REPLACE INTO searches (key, ids, stored_at) VALUES (?, ?, ?)",
                (_digest(key), json.dumps([p.id for p in papers]), self._now()),
            )

    def _rows(self, select: str, ids: Iterable[str], fresh_after: float) -> list[tuple[str, str]]:
        wanted = list(dict.fromkeys(ids))
        rows: list[tuple[str, str]] = []
        with self._lock:
            for start in range(0, len(wanted), 500):
                chunk = wanted[start : start + 500]
                marks = ",".join("?" * len(chunk))
                rows += self._db.execute(f"{select} WHERE id IN ({marks}) AND stored_at >= ?", [*chunk, fresh_after]).fetchall()
        return rows


def _digest(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()

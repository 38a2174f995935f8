"""SQLite cache of the LLM's valid answers, so a rerun or a re-check pays nothing for unchanged inputs.

The key is a sha256 over the endpoint, the model, the prompt (system and user message) and the reply
schema (`response_key`): a different prompt file, model, server or schema is a different question.
Only answers that parsed into their schema are stored (the parsed JSON), never faults, so a failed
answer is asked again next time. No API key enters a key or a record.

A cache is only a shortcut and must never stop a run. A file SQLite cannot read (garbled, cut
short, not a database) is moved aside as `<name>.corrupt-<timestamp>` (simulations.files.set_aside) and
an empty cache is built in its place; that lookup is a miss. Other errors (the file locked by
another run, a read-only disk) make that lookup or write a miss and leave the file alone; when the
file cannot be opened at all, answers are cached in memory for this run only (`problem` says why).
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
import threading
import time
from pathlib import Path

from simulations.files import set_aside

_SCHEMA = "CREATE TABLE IF NOT EXISTS answers (key TEXT PRIMARY KEY, answer TEXT NOT NULL, stored_at REAL NOT NULL)"
_COMPANIONS = ("-journal", "-wal", "-shm")


def response_key(endpoint: str, model: str, system: str, user: str, schema: dict) -> str:
    """The cache key of one question: endpoint, model, prompt and reply schema, hashed."""
    payload = {"endpoint": endpoint, "model": model, "system": system, "user": user, "schema": schema}
    return hashlib.sha256(json.dumps(payload, sort_keys=True, ensure_ascii=False).encode("utf-8")).hexdigest()


class ResponseCache:
    def __init__(self, path: Path | None) -> None:
        """A cache file at `path` (None: in memory). Never raises for the file's sake."""
        self.path = path
        self.hits = 0
        self.set_aside_as: Path | None = None
        self.problem: str | None = None  # why answers are not kept on disk, when they are not
        self._lock = threading.Lock()
        self._db = self._open()

    def get(self, key: str) -> str | None:
        with self._lock:
            try:
                row = self._db.execute("SELECT answer FROM answers WHERE key = ?", (key,)).fetchone()
            except sqlite3.DatabaseError as error:
                self._fault(error)
                return None
        if row is not None:
            self.hits += 1
        return row[0] if row else None

    def put(self, key: str, answer: str) -> None:
        with self._lock:
            try:
                with self._db:
                    self._db.execute("INSERT OR REPLACE INTO answers (key, answer, stored_at) VALUES (?, ?, ?)",
                                     (key, answer, time.time()))
            except sqlite3.DatabaseError as error:
                self._fault(error)

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def describe(self) -> str:
        where = str(self.path) if self.path and not self.problem else "memory, for this run only"
        text = f"response cache in {where}"
        if self.set_aside_as:
            text += f"; an unreadable cache file was moved aside to {self.set_aside_as}"
        if self.problem:
            text += f" ({self.problem})"
        return text

    # --- the file ---------------------------------------------------------------------------------

    def _open(self) -> sqlite3.Connection:
        if self.path is None:
            return _connect(":memory:")
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            return _checked(_connect(str(self.path)))
        except sqlite3.DatabaseError as error:
            if _garbled(error) and self._set_aside():
                try:
                    return _checked(_connect(str(self.path)))
                except sqlite3.DatabaseError as again:
                    error = again
            self.problem = f"{self.path} cannot be used: {error}"
        except OSError as error:
            self.problem = f"{self.path} cannot be used: {error.strerror or error}"
        return _connect(":memory:")

    def _fault(self, error: sqlite3.DatabaseError) -> None:
        """A query failed (the caller treats it as a miss): a garbled file is set aside and rebuilt."""
        if self.path is None or self.problem or not _garbled(error):
            return  # e.g. "database is locked" by another run: this lookup is a miss, the file is fine
        self._db.close()
        if self._set_aside():
            try:
                self._db = _checked(_connect(str(self.path)))
                return
            except sqlite3.DatabaseError as again:
                error = again
        self.problem = f"{self.path} cannot be used: {error}"
        self._db = _connect(":memory:")

    def _set_aside(self) -> bool:
        try:
            self.set_aside_as = set_aside(self.path, companions=_COMPANIONS)
            return True
        except OSError as error:
            self.problem = f"{self.path} is unreadable and could not be moved aside: {error.strerror or error}"
            return False


def _connect(target: str) -> sqlite3.Connection:
    db = sqlite3.connect(target, timeout=5, check_same_thread=False)
    if target == ":memory:":
        db.execute(_SCHEMA)
    return db


def _checked(db: sqlite3.Connection) -> sqlite3.Connection:
    """The connection, once the file proved readable and holds the table."""
    try:
        verdict = db.execute("PRAGMA quick_check").fetchone()
        if verdict is None or verdict[0] != "ok":
            raise sqlite3.DatabaseError(f"database disk image is malformed (quick_check: {verdict})")
        with db:
            db.execute(_SCHEMA)
        return db
    except sqlite3.DatabaseError:
        db.close()
        raise


def _garbled(error: sqlite3.DatabaseError) -> bool:
    """Whether the error says the file's content is unusable (as opposed to locked or not writable)."""
    text = str(error).lower()
    return not isinstance(error, sqlite3.OperationalError) or any(
        sign in text for sign in ("not a database", "malformed", "no such table", "file is encrypted"))

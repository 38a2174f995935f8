"""Recording HTTP exchanges, and answering them again without a network (`run --record`, `replay`).

A recording is one SQLite file (agent/replay.py names it ``<runs dir>/recordings/RUN_ID.sqlite``):

    meta(key, value)   JSON values: what the run read besides the network (agent/replay.py)
    exchanges(seq, attempt, service, key, method, url, request_body,
              status, headers, body, error)
                       every HTTP request a recorded client sent, in the order sent, and what came
                       back: the status, the response headers, the body (decoded) — or the transport
                       error (``ConnectError: ...``) when nothing came back

The recording sits at the transport level (`RecordingTransport`, an ``httpx.BaseTransport``), under
the clients' own retries and fault handling, which therefore run unchanged both when recording and
when replaying: the arXiv client (tools/arxiv_api.py, ``transport=``) and the OpenAI client
(tools/llm.py, ``http_client=httpx.Client(transport=...)``). A request is keyed by service, method,
URL with its query (without any user:password part) and a hash of its body; no request header is
kept, so no API key enters a recording. Response headers are kept but for the hop-by-hop ones, the
encoding ones (the body is kept decoded) and cookies.

`ReplayTransport` answers from a recording: a key's recorded responses are given in the order they
were recorded (a request repeated after a 503 gets the 503, then what followed), the last one again
once they run out. A request the recording lacks raises `NotRecorded`, naming it, and is remembered
in `missing` (the OpenAI client turns transport exceptions into retries and "connection failed", so
the caller must check `missing` after the run); it never goes to the network.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
import threading
from collections import deque
from pathlib import Path
from typing import Any

import httpx

FORMAT = 1
# Response headers not kept: they describe one connection or the encoding of a body kept decoded.
_DROPPED_HEADERS = {"connection", "keep-alive", "transfer-encoding", "content-encoding", "content-length",
                    "set-cookie", "proxy-authenticate", "upgrade", "trailer", "te"}
_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS exchanges (
    seq INTEGER PRIMARY KEY,
    attempt INTEGER NOT NULL,      -- which attempt of the run sent it (a resumed run has several)
    service TEXT NOT NULL,         -- arxiv | llm
    key TEXT NOT NULL,             -- request_key(): service, method, URL, body hash
    method TEXT NOT NULL,
    url TEXT NOT NULL,
    request_body BLOB NOT NULL,
    status INTEGER,                -- NULL: no response (see error)
    headers TEXT,                  -- JSON list of [name, value]
    body BLOB,
    error TEXT                     -- 'ExceptionName: message' of the transport error, when no response came
);
CREATE INDEX IF NOT EXISTS exchanges_by_key ON exchanges (service, key, seq);
"""


class RecordingError(ValueError):
    """A recording that cannot be used; the message is one line."""


class NotRecorded(RuntimeError):
    """Replay: a request the recording holds no answer for."""


def request_url(request: httpx.Request) -> str:
    """The request's URL as recorded: scheme, host, port, path and query; no user:password."""
    url = request.url
    return f"{url.scheme}://{url.netloc.decode('ascii')}{url.raw_path.decode('ascii')}"


def request_key(service: str, request: httpx.Request) -> str:
    body = hashlib.sha256(request.content).hexdigest()
    return f"{service} {request.method} {request_url(request)} {body}"


class Recording:
    """One recording file: meta values and HTTP exchanges. Thread-safe."""

    def __init__(self, path: Path, *, create: bool = False) -> None:
        self.path = path
        if not create and not path.is_file():
            raise RecordingError(f"no recording at {path}")
        if create:
            path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        try:
            self._db = sqlite3.connect(path, timeout=30, check_same_thread=False)
            with self._db:
                self._db.executescript(_SCHEMA)
            if create:
                self.put("format", FORMAT)
            elif self.get("format") != FORMAT:
                raise RecordingError(f"{path} is a recording of format {self.get('format')!r}; this version reads {FORMAT}")
        except sqlite3.DatabaseError as error:
            raise RecordingError(f"{path} is not a readable recording ({error})") from None

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def put(self, key: str, value: Any) -> None:
        with self._lock, self._db:
            self._db.execute("INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)",
                             (key, json.dumps(value, ensure_ascii=False)))

    def get(self, key: str, default: Any = None) -> Any:
        with self._lock:
            row = self._db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return json.loads(row[0]) if row else default

    def add(self, attempt: int, service: str, request: httpx.Request, *, response: httpx.Response | None = None,
            body: bytes = b"", error: BaseException | None = None) -> None:
        headers = None
        if response is not None:
            headers = json.dumps([[k, v] for k, v in response.headers.multi_items() if k.lower() not in _DROPPED_HEADERS])
        with self._lock, self._db:
            self._db.execute(
                "INSERT INTO exchanges (attempt, service, key, method, url, request_body, status, headers, body, error) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (attempt, service, request_key(service, request), request.method, request_url(request), request.content,
                 response.status_code if response is not None else None, headers,
                 body if response is not None else None,
                 f"{type(error).__name__}: {error}" if error is not None else None))

    def exchanges(self, service: str) -> dict[str, deque[tuple]]:
        """key -> the recorded answers, oldest first: (status, headers, body, error)."""
        with self._lock:
            rows = self._db.execute("SELECT key, status, headers, body, error FROM exchanges WHERE service = ? ORDER BY seq",
                                    (service,)).fetchall()
        answers: dict[str, deque[tuple]] = {}
        for key, *answer in rows:
            answers.setdefault(key, deque()).append(tuple(answer))
        return answers

    def count(self) -> dict[str, int]:
        with self._lock:
            return dict(self._db.execute("SELECT service, count(*) FROM exchanges GROUP BY service").fetchall())


def _rebuilt(request: httpx.Request, status: int, headers: list[list[str]], body: bytes) -> httpx.Response:
    """The response a client sees, recording or replaying alike: recorded headers, the decoded body."""
    return httpx.Response(status, headers=[tuple(h) for h in headers], content=body, request=request)


class RecordingTransport(httpx.BaseTransport):
    """Sends through an ordinary client (so proxies from the environment still apply) and records each
    exchange, then hands the client a response rebuilt from what it recorded."""

    def __init__(self, recording: Recording, service: str, *, attempt: int = 1, limits: httpx.Limits | None = None) -> None:
        self.recording, self.service, self.attempt = recording, service, attempt
        self._client = httpx.Client(limits=limits or httpx.Limits())

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        request.read()
        try:
            response = self._client.send(request, stream=True)
            try:
                body = response.read()
            finally:
                response.close()
        except httpx.TransportError as error:
            self.recording.add(self.attempt, self.service, request, error=error)
            raise
        self.recording.add(self.attempt, self.service, request, response=response, body=body)
        kept = [[k, v] for k, v in response.headers.multi_items() if k.lower() not in _DROPPED_HEADERS]
        return _rebuilt(request, response.status_code, kept, body)

    def close(self) -> None:
        self._client.close()


class ReplayTransport(httpx.BaseTransport):
    """Answers every request from a recording; never touches the network."""

    def __init__(self, recording: Recording, service: str, *, run_id: str = "") -> None:
        self.service = service
        self.source = f"the recording of run {run_id}" if run_id else str(recording.path)
        self._answers = recording.exchanges(service)
        self._lock = threading.Lock()
        self.missing: list[str] = []  # "METHOD URL" of requests the recording lacks

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        request.read()
        key = request_key(self.service, request)
        with self._lock:
            queue = self._answers.get(key)
            if not queue:
                what = f"{request.method} {request_url(request)}"
                if request.content:
                    what += f" (a body of {len(request.content)} bytes, sha256 {hashlib.sha256(request.content).hexdigest()[:12]})"
                self.missing.append(what)
                raise NotRecorded(f"{what} is not in {self.source} (replay never goes to the network)")
            answer = queue.popleft() if len(queue) > 1 else queue[0]  # the last answer holds once the others are used
        status, headers, body, error = answer
        if status is None:
            name, _, message = (error or "TransportError: ").partition(": ")
            kind = getattr(httpx, name, None)
            if not (isinstance(kind, type) and issubclass(kind, httpx.TransportError)):
                kind = httpx.TransportError
            raise kind(message, request=request)
        return _rebuilt(request, status, json.loads(headers or "[]"), body or b"")


class VirtualClock:
    """A clock whose `sleep` only moves its time: a replay keeps the arXiv client's spacing and backoff
    logic (what was waited for, and how long) without waiting."""

    def __init__(self) -> None:
        self._now = 0.0
        self._lock = threading.Lock()

    def monotonic(self) -> float:
        with self._lock:
            return self._now

    def sleep(self, seconds: float) -> None:
        with self._lock:
            self._now += max(0.0, seconds)


def copy_database(source: Path, directory: Path) -> Path:
    """A consistent copy of the SQLite database `source` (the online backup API: another process may be
    writing it) in `directory`, named by the sha256 of its bytes, so identical copies are kept once."""
    directory.mkdir(parents=True, exist_ok=True)
    temporary = directory / f".copy-{threading.get_ident()}-{hashlib.sha256(str(source).encode()).hexdigest()[:8]}.tmp"
    temporary.unlink(missing_ok=True)
    with sqlite3.connect(source, timeout=30) as src, sqlite3.connect(temporary) as dest:
        src.backup(dest)
    src.close()
    dest.close()
    digest = hashlib.sha256()
    with temporary.open("rb") as data:
        for block in iter(lambda: data.read(1 << 20), b""):
            digest.update(block)
    target = directory / f"{digest.hexdigest()}.sqlite"
    if target.is_file():
        temporary.unlink()
    else:
        temporary.replace(target)
    return target


def open_readonly(path: Path) -> sqlite3.Connection:
    """A read-only connection to a copied database: nothing a run does can change the copy."""
    return sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True, check_same_thread=False)

"""The run store: every run recorded in SQLite, holding what `--resume`, `runs` and `recheck` need.

A store lives in a directory of runs: the data dir's (``$COLLAPSE_AUDIT_HOME/runs/``) for runs of the
default inquiry and of inquiry files outside any project, a project's own (``PROJECT/runs/``, see
agent/projects.py) for the project's runs. It holds ``runs.sqlite``, one row per run, and
``checkpoints.sqlite``, the LangGraph checkpoints `run --resume` continues from.

A run's row: its config and inputs hash (inquiry text + user claims + config), status, timings per
stage, report paths, and once finished what it found (`AuditRecord`: claims and assertions, the
verdict of each, citation statuses, the papers seen per assertion with their stances, the simulation
summary) and, for a re-check, what changed since the run it re-checked. Re-checks diff two runs'
records (agent/changes.py). Runs recorded by earlier versions as ``RUN_ID/run.json`` are still found.

Beside them (agent/replay.py): ``recordings/RUN_ID.sqlite``, every response and input of a run started
with `run --record` (``recordings/snapshots/`` the snapshot copies they read), and ``replays/``, the
run store of their replays, kept apart so a replay is never an audit's latest run.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
from collections import Counter
from contextlib import closing, contextmanager
from datetime import date, datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from pydantic import BaseModel

from agent.models import WhatChanged
from agent.runlock import holds
from agent.runner import BadInput
from agent.state import RunConfig

if TYPE_CHECKING:
    from agent.models import Claim, Report

RunStatus = Literal["running", "failed", "finished"]
DB_NAME = "runs.sqlite"
# What of a run's config goes into its inputs hash: what it asked, not where it wrote or when.
HASHED_CONFIG = ("source", "arxiv_url", "llm", "model", "since", "sim_budget", "device", "seed")


# --- what a run found -------------------------------------------------------------------------


class PaperSeen(BaseModel):
    arxiv_id: str
    title: str = ""
    published: date | None = None
    stance: str | None = None  # None: undetermined
    cited: bool = False  # the claim's own citation, judged against the assertion (else: retrieved)


class AssertionRecord(BaseModel):
    id: str
    text: str
    label: str
    rests_on: list[str] = []  # "REF STANCE" for every source that took a position
    papers: list[PaperSeen] = []


class CitationRecord(BaseModel):
    as_written: str
    arxiv_id: str | None = None
    status: str


class ClaimRecord(BaseModel):
    id: str
    text: str
    origin: str = "inquiry"
    label: str
    durability: str = "unassessed"
    citations: list[CitationRecord] = []
    assertions: list[AssertionRecord] = []


class AuditRecord(BaseModel):
    """What one run found, as the run store keeps it and re-checks compare it."""

    title: str = ""
    question: str = ""
    claims: list[ClaimRecord] = []
    anchor_citations: list[CitationRecord] = []
    simulation: str = ""  # the lab's one-sentence result, or why no simulation ran
    simulation_ran: bool = False

    def verdict_counts(self) -> dict[str, int]:
        return dict(Counter(c.label for c in self.claims))


def audit_record(report: Report) -> AuditRecord:
    """The record of a finished run, read from its report."""
    cite = lambda c: CitationRecord(as_written=c.as_written, arxiv_id=c.arxiv_id, status=c.status)  # noqa: E731
    sims = report.simulations
    return AuditRecord(
        title=report.title,
        question=report.question,
        claims=[
            ClaimRecord(
                id=c.id, text=c.text, origin=c.origin, label=c.verdict.label, durability=c.verdict.durability,
                citations=[cite(x) for x in c.citations],
                assertions=[
                    AssertionRecord(
                        id=a.id, text=a.text, label=a.label, rests_on=list(a.rests_on),
                        papers=[PaperSeen(arxiv_id=e.arxiv_id, title=e.title, published=e.published, stance=e.stance,
                                          cited=cited)
                                for cited, items in ((True, a.cited), (False, a.evidence)) for e in items],
                    )
                    for a in c.assertions
                ],
            )
            for c in report.claims
        ],
        anchor_citations=[cite(x) for x in report.anchor_citations],
        simulation=str(sims.get("result") or sims.get("skipped") or ""),
        simulation_ran="result" in sims,
    )


def inputs_hash(inquiry_text: str, user_claims: list[Claim], run: RunConfig) -> str:
    """sha256 over what a run was asked: the inquiry's text, the user's claims and the config."""
    payload = {
        "inquiry": inquiry_text,
        "claims": [c.model_dump(mode="json") for c in user_claims],
        "config": run.model_dump(mode="json", include=set(HASHED_CONFIG)),
    }
    return hashlib.sha256(json.dumps(payload, sort_keys=True, ensure_ascii=False).encode()).hexdigest()


# --- the store --------------------------------------------------------------------------------


class RunRecord(BaseModel):
    run: RunConfig
    status: RunStatus
    started_at: datetime
    finished_at: datetime | None = None
    error: str | None = None
    report_files: list[str] = []
    inputs_hash: str = ""
    timings: dict[str, float] = {}  # stage -> seconds of wall time, summed over attempts
    audit: AuditRecord | None = None  # once finished
    what_changed: WhatChanged | None = None  # re-checks

    @property
    def run_id(self) -> str:
        return self.run.run_id

    @property
    def inquiry_name(self) -> str:
        """The inquiry as a list shows it: its title once known, else its file."""
        if self.audit and self.audit.title:
            return self.audit.title
        return self.run.inquiry_path.name if self.run.inquiry_path else "the default inquiry"


class UnknownRun(LookupError):
    pass


class RunStoreDamaged(BadInput):
    """The store's file cannot be read back (garbled bytes, not a database): one line, exit 2, saying
    what to do. It is the user's record of their runs, so it is never set aside automatically."""


# What a run recorded as running that no live process is running reads as (agent/runlock.py `holds`).
INTERRUPTED = ("stopped without finishing (its process was killed, or the machine went down); "
               "resume with `collapse-audit run --resume {run_id}`")


_COLUMNS = ("run_id", "status", "started_at", "finished_at", "inquiry", "against", "inputs_hash", "config",
            "timings", "report_files", "audit", "what_changed", "error")
_SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (
    run_id TEXT PRIMARY KEY,
    status TEXT NOT NULL,          -- running | failed | finished
    started_at TEXT NOT NULL,      -- ISO 8601, UTC
    finished_at TEXT,
    inquiry TEXT NOT NULL,         -- the inquiry file ('' for the packaged default inquiry)
    against TEXT,                  -- a re-check: the run it was compared with
    inputs_hash TEXT NOT NULL,     -- sha256 of inquiry text + user claims + config
    config TEXT NOT NULL,          -- RunConfig, JSON
    timings TEXT NOT NULL,         -- stage -> seconds, JSON
    report_files TEXT NOT NULL,    -- JSON list
    audit TEXT,                    -- AuditRecord, JSON (claims, assertions, verdicts, citations, papers, simulation)
    what_changed TEXT,             -- WhatChanged, JSON (re-checks)
    error TEXT
);
CREATE INDEX IF NOT EXISTS runs_by_inquiry ON runs (inquiry, started_at);
"""


class RunStore:
    def __init__(self, root: Path):
        self.root = root

    @property
    def path(self) -> Path:
        return self.root / DB_NAME

    @property
    def checkpoints(self) -> Path:
        return self.root / "checkpoints.sqlite"

    def _connect(self) -> sqlite3.Connection:
        self.root.mkdir(parents=True, exist_ok=True)
        conn = sqlite3.connect(self.path, timeout=30)
        with self._damage():
            conn.executescript(_SCHEMA)
        return conn

    @contextmanager
    def _damage(self):
        """A garbled store file, or a row that no longer parses, is one line (exit 2), never a traceback."""
        try:
            yield
        except (sqlite3.DatabaseError, ValueError) as error:
            name = getattr(error, "sqlite_errorname", "") or ""
            if isinstance(error, RunStoreDamaged) or (
                    isinstance(error, sqlite3.DatabaseError) and not name.startswith(("SQLITE_CORRUPT", "SQLITE_NOTADB"))):
                raise  # said already; or locked, read-only, disk full: not damage
            why = str(error).splitlines()[0] if isinstance(error, sqlite3.Error) else "a record no longer parses"
            raise RunStoreDamaged(
                f"the run store {self.path} cannot be read ({why}): move it aside to record runs afresh (the runs it "
                "holds can then no longer be listed, resumed or re-checked) or restore it from a backup") from None

    def _rows(self, where: str = "", params: tuple = (), tail: str = "") -> list[RunRecord]:
        """Matching runs; reading never creates a store. A run recorded as running whose process is
        gone (killed, or the machine went down) reads as failed, saying how to resume it."""
        if not self.path.is_file():
            return []
        with closing(sqlite3.connect(self.path, timeout=30)) as conn, self._damage():
            conn.executescript(_SCHEMA)
            rows = conn.execute(f"SELECT {', '.join(_COLUMNS)} FROM runs {where} {tail}", params).fetchall()
            records = [_record(dict(zip(_COLUMNS, row))) for row in rows]
        for record in records:
            if record.status == "running" and not holds(self.root, record.run_id):
                record.status, record.error = "failed", INTERRUPTED.format(run_id=record.run_id)
        return records

    def create(self, run: RunConfig, inputs_hash: str = "") -> RunRecord:
        record = RunRecord(run=run, status="running", started_at=datetime.now(timezone.utc), inputs_hash=inputs_hash)
        self.save(record)
        return record

    def save(self, record: RunRecord) -> None:
        row = {
            "run_id": record.run_id, "status": record.status, "started_at": record.started_at.isoformat(),
            "finished_at": record.finished_at.isoformat() if record.finished_at else None,
            "inquiry": str(record.run.inquiry_path or ""), "against": record.run.against,
            "inputs_hash": record.inputs_hash, "config": record.run.model_dump_json(),
            "timings": json.dumps(record.timings), "report_files": json.dumps(record.report_files),
            "audit": record.audit.model_dump_json() if record.audit else None,
            "what_changed": record.what_changed.model_dump_json() if record.what_changed else None,
            "error": record.error,
        }
        with closing(self._connect()) as conn, conn, self._damage():
            conn.execute(f"INSERT OR REPLACE INTO runs ({', '.join(_COLUMNS)}) VALUES ({', '.join('?' * len(_COLUMNS))})",
                         [row[c] for c in _COLUMNS])

    def find(self, run_id: str) -> RunRecord | None:
        found = self._rows("WHERE run_id = ?", (run_id,))
        if found:
            return found[0]
        legacy = self.root / run_id / "run.json"  # recorded by an earlier version
        if run_id and legacy.is_file() and legacy.parent.parent == self.root:
            return RunRecord.model_validate_json(legacy.read_text(encoding="utf-8"))
        return None

    def get(self, run_id: str) -> RunRecord:
        record = self.find(run_id)
        if record is None:
            raise UnknownRun(f"no run {run_id!r} in {self.root}; list runs with `collapse-audit runs list`")
        return record

    def list(self, *, inquiry: Path | None | str = "any", limit: int | None = None) -> list[RunRecord]:
        """Runs, newest first; `inquiry`: only that inquiry's (None: the default inquiry's)."""
        where, params = ("", ()) if inquiry == "any" else ("WHERE inquiry = ?", (str(inquiry or ""),))
        tail = "ORDER BY started_at DESC, run_id DESC" + (f" LIMIT {int(limit)}" if limit else "")
        return self._rows(where, params, tail)

    def latest(self, inquiry: Path | None) -> RunRecord | None:
        """The inquiry's newest finished run."""
        found = self._rows("WHERE inquiry = ? AND status = 'finished' AND audit IS NOT NULL", (str(inquiry or ""),),
                           "ORDER BY started_at DESC, run_id DESC LIMIT 1")
        return found[0] if found else None

    def finish(self, record: RunRecord, status: RunStatus, *, error: str | None = None, files: list[str] = (),
               audit: AuditRecord | None = None, what_changed: WhatChanged | None = None) -> None:
        record.status, record.error = status, error
        record.finished_at = datetime.now(timezone.utc)
        record.report_files = list(files)
        record.audit = audit if audit is not None else record.audit
        record.what_changed = what_changed if what_changed is not None else record.what_changed
        self.save(record)


def _record(row: dict) -> RunRecord:
    return RunRecord(
        run=RunConfig.model_validate_json(row["config"]), status=row["status"],
        started_at=datetime.fromisoformat(row["started_at"]),
        finished_at=datetime.fromisoformat(row["finished_at"]) if row["finished_at"] else None,
        error=row["error"], report_files=json.loads(row["report_files"]), inputs_hash=row["inputs_hash"],
        timings=json.loads(row["timings"]),
        audit=AuditRecord.model_validate_json(row["audit"]) if row["audit"] else None,
        what_changed=WhatChanged.model_validate_json(row["what_changed"]) if row["what_changed"] else None,
    )

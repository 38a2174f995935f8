"""The run store: one folder per run under the data dir, holding what `--resume` and `recheck` need."""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path
from typing import Literal

from pydantic import BaseModel

from agent.state import RunConfig

RunStatus = Literal["running", "failed", "finished"]


class RunRecord(BaseModel):
    run: RunConfig
    status: RunStatus
    started_at: datetime
    finished_at: datetime | None = None
    error: str | None = None
    report_files: list[str] = []


class UnknownRun(LookupError):
    pass


class RunStore:
    def __init__(self, root: Path):
        self.root = root

    @property
    def checkpoints(self) -> Path:
        return self.root / "checkpoints.sqlite"

    def _path(self, run_id: str) -> Path:
        return self.root / run_id / "run.json"

    def create(self, run: RunConfig) -> RunRecord:
        record = RunRecord(run=run, status="running", started_at=datetime.now(timezone.utc))
        self.save(record)
        return record

    def save(self, record: RunRecord) -> None:
        path = self._path(record.run.run_id)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(record.model_dump_json(indent=2), encoding="utf-8")

    def get(self, run_id: str) -> RunRecord:
        path = self._path(run_id)
        if not path.is_file():
            raise UnknownRun(f"no run {run_id!r} in {self.root}; list runs with `ls {self.root}`")
        return RunRecord.model_validate_json(path.read_text(encoding="utf-8"))

    def finish(self, record: RunRecord, status: RunStatus, *, error: str | None = None, files: list[str] = ()) -> None:
        record.status, record.error = status, error
        record.finished_at = datetime.now(timezone.utc)
        record.report_files = list(files)
        self.save(record)

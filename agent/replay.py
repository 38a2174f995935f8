"""`run --record` keeps a run whole; `collapse-audit replay RUN_ID --out DIR` runs it again offline.

A recorded run keeps, in ``<runs dir>/recordings/RUN_ID.sqlite`` (format: tools/recording.py) beside
the run store that records the run:

- every arXiv and LLM HTTP exchange, recorded at the transport, under the clients' own retries and
  fault handling (which therefore run unchanged when replayed);
- what it read that is not a network response: its config, the inquiry with the user's claims as
  parsed (a later edit of the inquiry or of the claims registry changes nothing), the settings that
  shape a report (embeddings, model, the LLM endpoint without credentials, LLM concurrency), its
  inputs hash, and, for a re-check, the record of the run it re-checked;
- the offline snapshot index it searched, copied whole (SQLite's backup API) to
  ``recordings/snapshots/<sha256>.sqlite``, one file per content however many runs share it. The
  whole index, not the papers the run consulted: a search ranks by BM25, whose scores depend on
  every row (document frequencies, lengths), and the dense retrieval ranks the index's papers by
  their embeddings (tools/retrieval.py), so the whole index is what a run reads: a list of the papers
  it returned could not reproduce the next search. The recorded run itself reads the copy
  (read-only), so a `snapshot update` while it runs cannot make the run and its recording differ;
- once finished, its report.json and report.md (replays are compared with them) and the simulation
  sweep it used (the sweep cache's file; sweeps are seeded and deterministic, but a replay on
  another machine, torch or device then need not recompute them).

A recorded run reads neither the arXiv lookup cache nor the LLM response cache (it keeps both in
memory, for the run): an answer from a cache would be an answer the recording lacks. So a recorded
run asks everything afresh, and pays for its LLM tokens.

`replay` starts the run again through agent/runner.py `run_audit`, with the recorded config (its run
date too) under a new run id and out dir. The transports answer from the recording (a request the
recording lacks fails the replay and is named; nothing goes to the network), the arXiv client's
clock is virtual (its spacing and backoff cost no time), and the inquiry, claims, settings, snapshot,
sweep and re-checked run are the recorded ones. The replay's report equals the original's but for
its run id, its creation time and its directory (`compare` checks, and `replay` says so).

Replays are recorded as runs in a store of their own, ``<runs dir>/replays/``: a replay never becomes
an audit's latest run (the one `recheck` compares with) and is not listed by `runs list`. Only a
finished run recorded in one attempt can be replayed: a run resumed after a failure has recorded
the failed attempt's exchanges as well, which one run from the start would not ask in that order.
"""

from __future__ import annotations

import json
import shutil
import tempfile
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import httpx

from tools.recording import (
    Recording,
    RecordingError,
    RecordingTransport,
    ReplayTransport,
    VirtualClock,
    copy_database,
    open_readonly,
)

if TYPE_CHECKING:
    from agent.config import Settings
    from agent.models import Inquiry
    from agent.state import RunConfig
    from agent.store import RunRecord
    from tools.snapshot import Snapshot

RECORDINGS, SNAPSHOTS, REPLAYS = "recordings", "snapshots", "replays"
SERVICES = ("arxiv", "llm")
# The settings a report depends on, kept with a recording (never the API key).
RECORDED_SETTINGS = ("embeddings", "model", "openai_base_url", "llm_concurrency")


def recording_path(runs_dir: Path, run_id: str) -> Path:
    """Where the run `run_id` of the run store in `runs_dir` is recorded (whether or not it was)."""
    return runs_dir / RECORDINGS / f"{run_id}.sqlite"


def replay_store_dir(runs_dir: Path) -> Path:
    """The run store replays of `runs_dir`'s runs are recorded in."""
    return runs_dir / REPLAYS


class Session:
    """One run's recording or replay, while it runs: what the services, the LLM client and the
    inquiry reader ask for instead of the network, the caches and the files they would read."""

    def __init__(self, mode: Literal["record", "replay"], recording: Recording, run_id: str, *, attempt: int = 1,
                 sim_cache_dir: Path | None = None) -> None:
        from agent.models import Inquiry

        self.mode, self.recording, self.run_id, self.attempt = mode, recording, run_id, attempt
        self.recorded_run_id: str = recording.get("run_id")
        self.inquiry = Inquiry.model_validate(recording.get("inquiry"))
        self.inputs_hash: str = recording.get("inputs_hash", "")
        self.recorded_settings: dict[str, Any] = recording.get("settings", {})
        self.snapshot_path = recording.path.parent / SNAPSHOTS / recording.get("snapshot", "")
        self.sim_cache_dir = sim_cache_dir  # None: the settings' sweep cache
        self.clock = VirtualClock() if mode == "replay" else None
        self._transports: dict[str, httpx.BaseTransport] = {}
        self._lock = threading.Lock()

    @property
    def replaying(self) -> bool:
        return self.mode == "replay"

    @property
    def baseline(self) -> RunRecord | None:
        """The run a recorded re-check was compared with, as the store held it then."""
        from agent.store import RunRecord

        held = self.recording.get("baseline")
        return RunRecord.model_validate(held) if held else None

    def settings(self, settings: Settings) -> Settings:
        """The settings the run works with: a replay's are the recorded run's (its API key is never
        kept, nor needed: nothing is sent)."""
        if not self.replaying:
            return settings
        return settings.model_copy(update={**{k: v for k, v in self.recorded_settings.items() if k in RECORDED_SETTINGS},
                                           "openai_api_key": "replay-sends-nothing"})

    def snapshot(self) -> Snapshot:
        from tools.snapshot import Snapshot

        return Snapshot(open_readonly(self.snapshot_path), self.snapshot_path)

    def transport(self, service: str) -> httpx.BaseTransport:
        with self._lock:
            if service not in self._transports:
                if self.replaying:
                    self._transports[service] = ReplayTransport(self.recording, service, run_id=self.recorded_run_id)
                else:
                    limits = httpx.Limits(max_connections=1, max_keepalive_connections=1) if service == "arxiv" else None
                    self._transports[service] = RecordingTransport(self.recording, service, attempt=self.attempt,
                                                                   limits=limits)
            return self._transports[service]

    def http_client(self, service: str) -> httpx.Client:
        return httpx.Client(transport=self.transport(service))

    @property
    def missing(self) -> list[str]:
        """Requests a replay was asked that the recording lacks."""
        return [m for t in self._transports.values() if isinstance(t, ReplayTransport) for m in t.missing]

    def close(self) -> None:
        for transport in self._transports.values():
            transport.close()
        self.recording.close()
        if self.replaying and self.sim_cache_dir is not None:
            shutil.rmtree(self.sim_cache_dir, ignore_errors=True)


_sessions: dict[str, Session] = {}


def session_for(run_id: str) -> Session | None:
    """The recording or replay session of the run `run_id` in this process, if it has one."""
    return _sessions.get(run_id)


@contextmanager
def active(session: Session) -> Iterator[Session]:
    _sessions[session.run_id] = session
    try:
        yield session
    finally:
        _sessions.pop(session.run_id, None)
        session.close()


# --- recording ------------------------------------------------------------------------------------


def start_recording(path: Path, config: RunConfig, *, inquiry: Inquiry, inputs_hash: str, baseline: RunRecord | None,
                    settings: Settings) -> Session:
    """A new run's recording: its inputs are kept now, its exchanges as they happen."""
    from tools.llm import public_url
    from tools.snapshot import Snapshot

    Snapshot.open(settings.snapshot_index_path).close()  # the index as a run sees it (packaged papers loaded)
    snapshot = copy_database(settings.snapshot_index_path, path.parent / SNAPSHOTS)
    recording = Recording(path, create=True)
    recorded = {k: getattr(settings, k) for k in RECORDED_SETTINGS}
    recorded["openai_base_url"] = public_url(settings.openai_base_url) if settings.openai_base_url else None
    for key, value in {
        "run_id": config.run_id, "recorded_at": datetime.now(timezone.utc).isoformat(), "attempts": 1,
        "config": config.model_dump(mode="json"), "inquiry": inquiry.model_dump(mode="json"),
        "inputs_hash": inputs_hash, "settings": recorded, "snapshot": snapshot.name,
        "baseline": baseline.model_dump(mode="json") if baseline is not None else None,
    }.items():
        recording.put(key, value)
    return Session("record", recording, config.run_id)


def resume_recording(path: Path, config: RunConfig) -> Session:
    """A recorded run resumed: the next attempt records on, with the inputs recorded first."""
    recording = Recording(path)
    attempt = int(recording.get("attempts", 1)) + 1
    recording.put("attempts", attempt)
    return Session("record", recording, config.run_id, attempt=attempt)


def keep_results(session: Session, config: RunConfig, sim_cache_dir: Path) -> None:
    """After a recorded run finished: its report (what replays are compared with) and its sweep."""
    recording = session.recording
    report_json = config.out_dir / "report.json"
    recording.put("report.json", report_json.read_text(encoding="utf-8"))
    if (config.out_dir / "report.md").is_file():
        recording.put("report.md", (config.out_dir / "report.md").read_text(encoding="utf-8"))
    if config.sim_budget != "none" and "result" in json.loads(recording.get("report.json")).get("simulations", {}):
        from simulations.sweep import SweepConfig

        digest = SweepConfig.budget(config.sim_budget, seed=config.seed, device=config.device).digest()
        cached = sim_cache_dir / f"sweep-{digest}.json"
        if cached.is_file():
            recording.put("sweep", {"digest": digest, "result": cached.read_text(encoding="utf-8")})


def discard(path: Path) -> None:
    """The recording of a run that never started (nothing recorded it in the store)."""
    for companion in ("", "-journal", "-wal", "-shm"):
        Path(f"{path}{companion}").unlink(missing_ok=True)


# --- replaying --------------------------------------------------------------------------------


def check_replayable(path: Path, record: RunRecord) -> None:
    """RecordingError (one line) when the run `record` cannot be replayed from `path`."""
    run_id = record.run_id
    if not path.is_file():
        raise RecordingError(f"run {run_id} was not recorded, so it cannot be replayed: only runs started with "
                             "`collapse-audit run --record` can be")
    if record.status != "finished":
        raise RecordingError(f"run {run_id} did not finish ({record.status}); only a finished recorded run can be replayed")
    recording = Recording(path)
    try:
        attempts = int(recording.get("attempts", 1))
        if attempts > 1:
            raise RecordingError(f"run {run_id} was resumed after a failure: its recording spans {attempts} attempts, "
                                 "which cannot be replayed as one run")
        if recording.get("report.json") is None:
            raise RecordingError(f"the recording of run {run_id} ({path}) holds no report: it was not finished recording")
        snapshot = path.parent / SNAPSHOTS / recording.get("snapshot", "")
        if not snapshot.is_file():
            raise RecordingError(f"the recording of run {run_id} lacks its snapshot copy {snapshot}")
    finally:
        recording.close()


def start_replay(path: Path, config: RunConfig) -> Session:
    """The replay of the recording at `path` as the run `config` (a new run id and out dir)."""
    recording = Recording(path)
    sim_cache_dir = Path(tempfile.mkdtemp(prefix="collapse-audit-replay-"))
    sweep = recording.get("sweep")
    if sweep:
        (sim_cache_dir / f"sweep-{sweep['digest']}.json").write_text(sweep["result"], encoding="utf-8")
    return Session("replay", recording, config.run_id, sim_cache_dir=sim_cache_dir)


def recorded_report(path: Path) -> dict:
    recording = Recording(path)
    try:
        return json.loads(recording.get("report.json"))
    finally:
        recording.close()


def compare(path: Path, out_dir: Path) -> list[str]:
    """How the report in `out_dir` differs from the recorded run's, its run id, creation time and
    directory aside: [] when report.json and report.md are the same."""
    recording = Recording(path)
    try:
        original = {"report.json": recording.get("report.json"), "report.md": recording.get("report.md")}
    finally:
        recording.close()
    first = json.loads(original["report.json"])
    try:
        second = json.loads((out_dir / "report.json").read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        return [f"report.json: cannot be read back ({error})"]
    problems = [f"report.json: {where}" for where in _differences(_normalised_json(first), _normalised_json(second))]
    if original["report.md"] is not None:
        a = normalised(original["report.md"], first).splitlines()
        b = normalised((out_dir / "report.md").read_text(encoding="utf-8"), second).splitlines()
        line = next((i for i, (x, y) in enumerate(zip(a, b), 1) if x != y), None if len(a) == len(b) else min(len(a), len(b)) + 1)
        if line is not None:
            problems.append(f"report.md: from line {line}")
    return problems


def normalised(text: str, report: dict) -> str:
    """A rendered report (md, html, json) with what differs between a run and its replay by design —
    run id, creation time, output directory — replaced by placeholders."""
    created = datetime.fromisoformat(report["created_at"].replace("Z", "+00:00"))
    for old, new in ((report["run_id"], "<run id>"), (str(report["config"]["out_dir"]), "<out dir>"),
                     (f"{created:%Y-%m-%d %H:%M UTC}", "<created at>"), (report["created_at"], "<created at>")):
        text = text.replace(old, new)
    return text


def _normalised_json(report: dict) -> Any:
    return json.loads(normalised(json.dumps(report, ensure_ascii=False), report))


def _differences(a: Any, b: Any, where: str = "", limit: int = 8) -> list[str]:
    """Paths at which two JSON values differ, at most `limit`."""
    if type(a) is not type(b):
        return [where or "(the whole report)"]
    found: list[str] = []
    if isinstance(a, dict):
        for key in dict.fromkeys([*a, *b]):
            if key not in a or key not in b:
                found.append(f"{where}.{key}".lstrip("."))
            else:
                found += _differences(a[key], b[key], f"{where}.{key}".lstrip("."), limit - len(found))
            if len(found) >= limit:
                break
    elif isinstance(a, list):
        if len(a) != len(b):
            return [f"{where} ({len(a)} items, now {len(b)})"]
        for i, (x, y) in enumerate(zip(a, b)):
            found += _differences(x, y, f"{where}[{i}]", limit - len(found))
            if len(found) >= limit:
                break
    elif a != b:
        found.append(where or "(the whole report)")
    return found[:limit]

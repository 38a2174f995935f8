"""Running an audit: options in, a typed result out. `run` and `recheck` (and, later, `schedule run`
and `replay`) plan and start runs here; agent/cli.py only reads arguments and prints.

    planned = plan_run(RunOptions(source="snapshot", sim_budget="tiny"))   # or plan_recheck / plan_resume
    result = run_audit(planned.config, store=planned.store, baseline=planned.baseline)
    result.exit_code, result.report_files, result.what_changed

Planning refuses bad input with `BadInput` (exit 2, one line) before anything heavy is imported,
cheapest checks first: option values and dates, the output directory, the inquiry and its claims,
the device (torch only for `--device cuda` on a machine that has a GPU driver). torch,
sentence-transformers and the LangGraph graph are imported once a run starts. This module imports
only the standard library at load time, so the CLI can import it for `--help` and errors.

Every run is recorded in the run store of its audit (agent/store.py): a project's runs in the
project's runs directory, others in the data dir. `run_audit` holds the store's run lock
(agent/runlock.py) for the whole run: a second run of the same store waits up to `wait` seconds,
else it is refused with exit 5 (`EXIT_BUSY`) and one line, leaving neither a folder nor a record.

`run --record` (`RunOptions.record`) also keeps every arXiv and LLM response and the inputs the run
read in ``<runs dir>/recordings/RUN_ID.sqlite``; `plan_replay` + `run_audit(..., replay=...)` run a
recorded run again offline from it, as a new run in the replays' store (agent/replay.py).
"""

from __future__ import annotations

import re
import secrets
import sqlite3
import sys
import time
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Literal

if TYPE_CHECKING:
    from agent.models import WhatChanged
    from agent.projects import Audit
    from agent.state import RunConfig
    from agent.store import RunRecord, RunStore

# Exit codes of every command (agent/cli.py): 1 is "findings" — a flagged citation
# (verify-citations), or a change found by `recheck --fail-on-change`.
EXIT_OK, EXIT_FINDINGS, EXIT_BAD_INPUT, EXIT_UNREACHABLE, EXIT_RUN_FAILED = 0, 1, 2, 3, 4
EXIT_INTERRUPTED = 130  # Ctrl-C (SIGINT), as shells report it: never 1, which means findings
EXIT_BUSY = 5  # another run of the same run store holds its lock (agent/runlock.py); nothing was started

SOURCES, LLMS = ("auto", "snapshot", "arxiv"), ("auto", "none", "openai")
BUDGETS, DEVICES = ("none", "tiny", "small", "full"), ("auto", "cpu", "cuda")
_RELATIVE = re.compile(r"^(\d+)\s*(d|w|mo|y)$")
_UNIT_DAYS = {"d": 1, "w": 7, "mo": 30.44, "y": 365.25}
STAGE_LABELS = {
    "load_claims": "claims loaded",
    "ground_citations": "citations grounded",
    "retrieve_literature": "literature retrieved",
    "assess_stance": "stance assessed",
    "run_simulations": "simulations run",
    "synthesize": "verdicts synthesized",
    "write_report": "report written",
}


class BadInput(ValueError):
    """Input a run cannot use (exit 2); the message is one line saying what to fix."""


@dataclass(frozen=True)
class RunOptions:
    """`collapse-audit run`'s options, as given (None: the default)."""

    inquiry: Path | None = None
    claims: Path | None = None
    source: str = "auto"
    arxiv_url: str | None = None
    llm: str = "auto"  # auto: the endpoint when OPENAI_API_KEY or OPENAI_BASE_URL is set, else the offline judge
    model: str | None = None
    since: str | None = None
    sim_budget: str = "small"
    device: str = "auto"
    out: Path | None = None
    seed: int = 0
    force: bool = False
    record: bool = False  # keep every arXiv and LLM response and the inputs, for `replay` (agent/replay.py)


@dataclass(frozen=True)
class RecheckOptions:
    """`collapse-audit recheck`'s options; None takes the value of the run re-checked."""

    against: str = "latest"
    inquiry: Path | None = None
    since: str | None = None
    source: str | None = None
    arxiv_url: str | None = None
    llm: str | None = None  # None: the earlier run's; "auto" as for `run` (the CLI's default)
    model: str | None = None
    out: Path | None = None
    force: bool = False
    record: bool = False  # as `run --record`: the re-check (and the run it compares with) replay offline


@dataclass
class PlannedRun:
    """A run that passed every input check: what `run_audit` starts (or resumes)."""

    config: RunConfig
    store: RunStore
    baseline: RunRecord | None = None  # a re-check: the run it is compared with
    notices: list[str] = field(default_factory=list)  # lines the user should see once, before the run
    record: bool = False  # `run --record`: record the run (agent/replay.py)
    replay: Path | None = None  # `replay`: the recording the run answers from


@dataclass
class RunResult:
    run_id: str
    status: Literal["finished", "failed"]
    exit_code: int  # EXIT_OK, EXIT_UNREACHABLE, EXIT_RUN_FAILED, EXIT_INTERRUPTED or EXIT_BUSY (the caller decides EXIT_FINDINGS)
    out_dir: Path
    report_files: list[Path] = field(default_factory=list)
    notices: list[str] = field(default_factory=list)
    error: str | None = None  # one line, with how to resume where that helps
    seconds: float = 0.0
    timings: dict[str, float] = field(default_factory=dict)  # stage -> seconds, this attempt
    what_changed: WhatChanged | None = None  # re-checks
    already_finished: bool = False  # `--resume` of a run that had finished: nothing was run

    @property
    def changed(self) -> bool:
        return self.what_changed is not None and self.what_changed.changed


class RunProgress:
    """What a run reports while it goes; the CLI prints it, other callers may ignore it."""

    def started(self, run_id: str, out_dir: Path) -> None: ...
    def resuming(self, stages: list[str]) -> None: ...
    def stage(self, node: str, label: str, elapsed: float) -> None: ...
    def simulation(self, done: int, total: int) -> None: ...
    def notice(self, text: str) -> None: ...


# --- input checks (cheap first) ---------------------------------------------------------------


def parse_since(value: str, today: date) -> date:
    """`--since` takes a date (YYYY-MM-DD) or a span back from today: 30d, 8w, 6mo, 1y."""
    match = _RELATIVE.match(value.strip().lower())
    if match:
        since = today - timedelta(days=round(int(match.group(1)) * _UNIT_DAYS[match.group(2)]))
    else:
        try:
            since = date.fromisoformat(value)
        except ValueError:
            raise BadInput(f"--since {value!r} is neither a date (YYYY-MM-DD) nor a span like 30d, 8w, 6mo, 1y") from None
    if since >= today:
        raise BadInput(f"--since {value!r} leaves no time before today ({today}): give an earlier date or a longer span")
    return since


def choice(flag: str, value: str, allowed: tuple[str, ...]) -> str:
    if value not in allowed:
        raise BadInput(f"{flag} {value!r} is not one of: {', '.join(allowed)}")
    return value


def _settings():
    """The settings from the environment; a value there that cannot be used is bad input, in one line."""
    from pydantic import ValidationError

    from agent.config import Settings

    try:
        return Settings()
    except ValidationError as error:
        problems = "; ".join(f"{'/'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in error.errors(include_url=False))
        raise BadInput(f"an environment setting cannot be used ({problems})") from None


def resolve_llm(llm: str, model: str | None, settings) -> tuple[str, str | None, str | None]:
    """The analyst a run uses; for `--llm auto` also how it was chosen (the report's words) and the
    one notice line that says which and why.

    auto: the OpenAI-compatible endpoint when OPENAI_API_KEY or OPENAI_BASE_URL is set, else the
    offline judge. With the endpoint, its price table is checked here, so a broken one is bad input
    before the run starts, not a failure after it."""
    chosen = notice = None
    if llm == "auto":
        given = [name for name, value in (("OPENAI_BASE_URL", settings.openai_base_url),
                                          ("OPENAI_API_KEY", settings.openai_api_key)) if value]
        if given:
            from tools.llm import OPENAI_URL, public_url

            llm = "openai"
            chosen = f"--llm auto: {' and '.join(given)} {'was' if len(given) == 1 else 'were'} set"
            notice = (f"--llm auto: {' and '.join(given)} {'is' if len(given) == 1 else 'are'} set, so the model "
                      f"{model or settings.model!r} at {public_url(settings.openai_base_url or OPENAI_URL)} judges "
                      "the stances (--llm none: the offline judge)")
        else:
            llm = "none"
            chosen = "--llm auto: neither OPENAI_API_KEY nor OPENAI_BASE_URL was set"
            notice = ("--llm auto: neither OPENAI_API_KEY nor OPENAI_BASE_URL is set, so the offline heuristic judge "
                      "grades the stances (set one, or pass --llm openai, to use a model)")
    if llm == "openai":
        from tools.llm_costs import PriceTableError, load_prices

        try:
            load_prices(settings.llm_prices_path)
        except PriceTableError as error:
            raise BadInput(str(error)) from None
    return llm, chosen, notice


# What a report folder holds (agent/nodes/report.py writes it whole, replacing what was there).
REPORT_ENTRIES = frozenset({"report.md", "report.json", "report.html", "report.bib", "figures"})


def _check_out(out: Path, force: bool) -> None:
    """The output directory's checks that write nothing."""
    if out.exists() and not out.is_dir():
        raise BadInput(f"--out {out} is a file; give a directory")
    if out.is_dir() and any(out.iterdir()) and not force:
        raise BadInput(f"--out {out} already holds results; choose another directory or pass --force to overwrite")
    if out.is_dir() and force:
        # --force replaces the folder's contents as a whole: never anything but an earlier report
        foreign = sorted(p.name for p in out.iterdir() if p.name not in REPORT_ENTRIES)
        if foreign:
            shown = ", ".join(foreign[:3]) + (f" and {len(foreign) - 3} more" if len(foreign) > 3 else "")
            raise BadInput(f"--out {out} holds more than a report ({shown}); --force replaces a report folder as a "
                           "whole and would delete them: choose another directory")


def _make_out(out: Path) -> None:
    """Make the output directory and prove it writable, with the data dir: the last check, so a
    refused run leaves nothing. The report is built beside the directory and renamed into it
    (tools/files.py `replace_dir`), so its parent must be writable too."""
    _check_data_dir()
    try:
        out.mkdir(parents=True, exist_ok=True)
        probe = out / ".write-test"
        probe.write_text("")
        probe.unlink()
        beside = out.with_name(f".{out.name}.write-test")
        beside.mkdir(exist_ok=True)
        beside.rmdir()
    except OSError as error:
        raise BadInput(f"--out {out} is not writable ({error.strerror or error}); choose another directory") from None


def _check_data_dir() -> None:
    """The data dir must be writable: the snapshot index and caches live there (and runs outside projects)."""
    home = _settings().home
    try:
        home.mkdir(parents=True, exist_ok=True)
        probe = home / ".write-test"
        probe.write_text("")
        probe.unlink()
    except OSError as error:
        raise BadInput(f"the data dir {home} is not writable ({error.strerror or error}); set COLLAPSE_AUDIT_HOME "
                       "to a writable directory") from None


def _no_gpu_driver() -> bool:
    """True when this Linux machine certainly has no GPU driver (no NVIDIA, WSL or ROCm device), so
    `--device cuda` can be refused without importing torch; elsewhere torch is asked."""
    dev = Path("/dev")
    return sys.platform.startswith("linux") and dev.is_dir() and not (
        any(dev.glob("nvidia[0-9]*")) or (dev / "dxg").exists() or (dev / "kfd").exists())


def _check_device(device: str, *, torch_too: bool) -> None:
    if device != "cuda":
        return  # auto falls back to the CPU; the CPU is always there
    if _no_gpu_driver():
        raise BadInput("--device cuda: this machine has no GPU driver (no /dev/nvidia*), so torch can see no CUDA GPU: "
                       "use --device cpu or auto")
    if torch_too:
        from simulations.device import resolve_device

        try:
            resolve_device(device)
        except ValueError as error:
            raise BadInput(f"--device {device}: {error}") from None


def _audit(inquiry: Path | None, notices: list[str]) -> Audit:
    from agent.projects import AuditError, current_audit

    try:
        audit = current_audit(inquiry)
    except AuditError as error:
        raise BadInput(str(error)) from None
    if audit.notice:
        notices.append(audit.notice)
    return audit


def _check_inquiry(config: RunConfig) -> None:
    """What the first stage will read, parsed before the run starts."""
    from agent.claims_store import ClaimsStoreError
    from agent.inquiry import InquiryError
    from agent.projects import AuditError, inquiry_for_run

    try:
        parsed = inquiry_for_run(config)
    except (InquiryError, ClaimsStoreError, AuditError) as error:
        raise BadInput(str(error)) from None
    if not parsed.claims:
        raise BadInput("the inquiry holds no claims to audit; add bulleted, dated claims")


def new_run_id() -> str:
    return f"{datetime.now(timezone.utc):%Y%m%d-%H%M%S}-{secrets.token_hex(2)}"


def _default_out(audit: Audit, run_id: str) -> Path:
    return audit.project.runs_dir / run_id if audit.project else Path(f"audit-{run_id}")


# --- stores -----------------------------------------------------------------------------------


def audit_store(audit: Audit) -> RunStore:
    """Where an audit's runs are recorded: its project's runs directory, else the data dir's."""
    from agent.config import Settings
    from agent.store import RunStore

    return RunStore(audit.project.runs_dir if audit.project else Settings().runs_dir)


def store_for(inquiry_path: Path | None) -> RunStore:
    """The run store of the audit an inquiry file belongs to (None: the packaged default inquiry)."""
    from agent.projects import audit_of_inquiry

    return audit_store(audit_of_inquiry(inquiry_path))


def _stores(inquiry: Path | None) -> list[RunStore]:
    """The stores a run id is looked up in: the current audit's, then the data dir's."""
    from agent.config import Settings
    from agent.projects import AuditError, current_audit
    from agent.store import RunStore

    stores = []
    try:
        stores.append(audit_store(current_audit(inquiry)))
    except AuditError:
        pass  # a broken project around the working directory: the data dir's runs are still found
    data = RunStore(Settings().runs_dir)
    return stores + ([data] if all(s.root != data.root for s in stores) else [])


def find_run(run_id: str, *, inquiry: Path | None = None) -> tuple[RunStore, RunRecord]:
    """A recorded run by id, from the current audit's store or the data dir's; BadInput when none has it."""
    stores = _stores(inquiry)
    for store in stores:
        record = store.find(run_id)
        if record is not None:
            return store, record
    where = " or ".join(str(s.root) for s in stores)
    raise BadInput(f"no run {run_id!r} in {where}; list runs with `collapse-audit runs list`")


def list_runs(inquiry: Path | None = None, *, limit: int | None = None) -> tuple[RunStore, list[RunRecord]]:
    """The current audit's store and its runs, newest first (with `inquiry`: only that inquiry's)."""
    notices: list[str] = []
    audit = _audit(inquiry, notices)
    store = audit_store(audit)
    return store, store.list(inquiry=audit.inquiry_path if inquiry is not None else "any", limit=limit)


# --- planning ---------------------------------------------------------------------------------


def plan_run(options: RunOptions, *, today: date | None = None) -> PlannedRun:
    """Check `run`'s options and build its config; BadInput (exit 2) on anything unusable."""
    today = today or datetime.now(timezone.utc).date()
    source = choice("--source", options.source, SOURCES)
    llm = choice("--llm", options.llm, LLMS)
    budget = choice("--sim-budget", options.sim_budget, BUDGETS)
    device = choice("--device", options.device, DEVICES)
    since = parse_since(options.since, today) if options.since else None
    if options.out is not None:
        _check_out(options.out, options.force)
    _check_device(device, torch_too=False)

    from agent.state import RunConfig

    settings = _settings()
    notices: list[str] = []
    llm, llm_choice, notice = resolve_llm(llm, options.model, settings)
    if notice:
        notices.append(notice)
    audit = _audit(options.inquiry, notices)
    run_id = new_run_id()
    config = RunConfig(
        run_id=run_id, run_date=today, inquiry_path=audit.inquiry_path,
        claims_path=options.claims.resolve() if options.claims else None,
        source=source, arxiv_url=options.arxiv_url or settings.arxiv_url, llm=llm, llm_choice=llm_choice,
        model=options.model,
        since=since, sim_budget=budget, device=device, seed=options.seed,
        out_dir=(options.out or _default_out(audit, run_id)).resolve(),
    )
    _check_inquiry(config)
    _check_device(device, torch_too=True)
    _check_out(config.out_dir, options.force)
    store = audit_store(audit)
    store.list(limit=1)  # a damaged run store (agent/store.py RunStoreDamaged) refuses the run before anything is made
    _make_out(config.out_dir)
    return PlannedRun(config, store, notices=notices, record=options.record)


def plan_resume(run_id: str, *, inquiry: Path | None = None) -> PlannedRun:
    """A recorded run to continue where it stopped (a finished one is reported, not run again)."""
    store, record = find_run(run_id, inquiry=inquiry)
    return PlannedRun(record.run, store)


def plan_recheck(options: RecheckOptions, *, today: date | None = None) -> PlannedRun:
    """Check `recheck`'s options and build the re-check's config from the run it re-checks: the same
    inquiry, claims and simulation settings (so the sweep cache answers), literature asked afresh."""
    today = today or datetime.now(timezone.utc).date()
    source = choice("--source", options.source, SOURCES) if options.source is not None else None
    llm = choice("--llm", options.llm, LLMS) if options.llm is not None else None
    since = parse_since(options.since, today) if options.since else None
    if options.out is not None:
        _check_out(options.out, options.force)

    notices: list[str] = []
    audit = _audit(options.inquiry, notices)
    if options.against == "latest":
        store = audit_store(audit)
        baseline = store.latest(audit.inquiry_path)
        if baseline is None:
            raise BadInput(f"no finished run of {audit.describe()} to re-check in {store.root}; "
                           "start one with `collapse-audit run`")
    else:
        store, baseline = find_run(options.against, inquiry=options.inquiry)
        if baseline.status != "finished" or baseline.audit is None:
            raise BadInput(f"run {baseline.run_id} did not finish ({baseline.status}); resume it with "
                           f"`collapse-audit run --resume {baseline.run_id}`, or re-check another run")
    earlier = baseline.run
    run_id = new_run_id()
    llm_choice = notice = None
    if llm is not None:
        llm, llm_choice, notice = resolve_llm(llm, options.model if options.model is not None else earlier.model,
                                              _settings())
    if notice:
        if llm != earlier.llm:
            notice += (f"; run {baseline.run_id}, re-checked here, was judged by "
                       f"{'a model' if earlier.llm == 'openai' else 'the offline judge'}")
        notices.append(notice)
    from agent.projects import audit_of_inquiry

    config = earlier.model_copy(update={
        "run_id": run_id, "run_date": today, "against": baseline.run_id,
        "source": source or earlier.source, "arxiv_url": options.arxiv_url or earlier.arxiv_url,
        "llm": llm or earlier.llm, "llm_choice": llm_choice, "model": options.model if options.model is not None else (
            earlier.model if (llm or earlier.llm) == earlier.llm else None),
        "since": since or earlier.since,
        "out_dir": (options.out or _default_out(audit_of_inquiry(earlier.inquiry_path), run_id)).resolve(),
    })
    _check_inquiry(config)
    _check_device(config.device, torch_too=True)
    _check_out(config.out_dir, options.force)
    _make_out(config.out_dir)
    return PlannedRun(config, store, baseline=baseline, notices=notices, record=options.record)


def plan_replay(run_id: str, out: Path, *, force: bool = False, inquiry: Path | None = None) -> PlannedRun:
    """A recorded run to run again offline from its recording (agent/replay.py): its config under a new
    run id, writing to `out`, recorded in the replays' store. BadInput when the run is unknown, was not
    recorded, did not finish, was resumed, or `out` holds results (without `force`)."""
    _check_out(out, force)
    store, record = find_run(run_id, inquiry=inquiry)
    from agent.replay import check_replayable, recording_path, replay_store_dir
    from agent.store import RunStore
    from tools.recording import RecordingError

    path = recording_path(store.root, record.run_id)
    try:
        check_replayable(path, record)
    except RecordingError as error:
        raise BadInput(str(error)) from None
    config = record.run.model_copy(update={"run_id": new_run_id(), "out_dir": out.resolve()})
    _make_out(config.out_dir)
    return PlannedRun(config, RunStore(replay_store_dir(store.root)), replay=path)


# --- running ----------------------------------------------------------------------------------


def _inputs_hash(config: RunConfig) -> str:
    from agent.replay import session_for

    if (session := session_for(config.run_id)) is not None:  # recorded when the run started
        return session.inputs_hash
    from agent.inquiry import default_inquiry_text
    from agent.projects import audit_of_inquiry, inquiry_for_run
    from agent.store import inputs_hash

    audit = audit_of_inquiry(config.inquiry_path)
    text = audit.inquiry_path.read_text(encoding="utf-8") if audit.inquiry_path else default_inquiry_text()
    users = [c for c in inquiry_for_run(config).claims if c.origin == "user"]
    return inputs_hash(text, users, config)


def run_audit(config: RunConfig, *, store: RunStore | None = None, baseline: RunRecord | None = None,
              progress: RunProgress | None = None, wait: float = 0.0, record: bool = False,
              replay: Path | None = None) -> RunResult:
    """Run (or resume) the audit `config` describes, record it in the run store, and say how it went.

    A run id the store holds is resumed from its last checkpoint, or reported when it had finished.
    Failures come back as the result's exit code and one-line error (3: a source or the LLM endpoint
    was unreachable; 4: a stage failed), the run checkpointed so that `run --resume` continues it.
    The store's run lock is held throughout: when another run holds it for longer than `wait`
    seconds, nothing is run (5: "run X is already running (pid N)" for a second resume of X).

    `record`: a new run also keeps its exchanges and inputs (agent/replay.py); a recorded run resumed
    records on. `replay`: the run answers from that recording instead of the network (4 when it asks
    something the recording lacks).
    """
    from agent.runlock import RunBusy, RunLock

    store = store or store_for(config.inquiry_path)
    known = store.find(config.run_id)
    if known is not None and known.status == "finished":
        return _run_audit(config, store=store, baseline=baseline, progress=progress)  # reported, not run
    lock = RunLock(store.root, config.run_id)
    try:
        lock.acquire(wait=wait)
    except RunBusy as busy:
        if known is None and config.out_dir.is_dir() and not any(config.out_dir.iterdir()):
            config.out_dir.rmdir()  # a run that never started leaves neither a folder nor a record
        return RunResult(config.run_id, "failed", EXIT_BUSY, config.out_dir, error=str(busy))
    try:
        return _run_in_session(config, store=store, baseline=baseline, progress=progress, record=record, replay=replay)
    finally:
        lock.release()


def _run_in_session(config: RunConfig, *, store: RunStore, baseline: RunRecord | None, progress: RunProgress | None,
                    record: bool, replay: Path | None) -> RunResult:
    """`_run_audit`, recording the run (`run --record`, or a recorded run resumed) or replaying one."""
    from agent import replay as replays

    import sqlite3

    path = replays.recording_path(store.root, config.run_id)
    existing = store.find(config.run_id)
    if replay is None and not (existing is None and record) and not (existing is not None and path.is_file()):
        return _run_audit(config, store=store, baseline=baseline, progress=progress)  # neither recorded nor replayed
    try:
        if replay is not None:
            session = replays.start_replay(replay, config)
            baseline = session.baseline  # a recorded re-check's: the run it was compared with, as it was then
        elif existing is None and record:
            from agent.projects import inquiry_for_run

            if config.against and baseline is None:
                baseline = store.find(config.against)
            session = replays.start_recording(path, config, inquiry=inquiry_for_run(config),
                                              inputs_hash=_inputs_hash(config), baseline=baseline, settings=_settings())
        else:
            session = replays.resume_recording(path, config)
    except (OSError, ValueError, sqlite3.Error) as error:  # nothing was started
        if existing is None and config.out_dir.is_dir() and not any(config.out_dir.iterdir()):
            config.out_dir.rmdir()
        if existing is None and replay is None:
            replays.discard(path)
        what = "replay the run" if replay is not None else "record the run"
        return RunResult(config.run_id, "failed", EXIT_RUN_FAILED, config.out_dir, error=f"cannot {what}: {error}")
    with replays.active(session):
        result = _run_audit(config, store=store, baseline=baseline, progress=progress)
        missing = session.missing
        if session.mode == "record" and result.status == "finished" and not result.already_finished:
            replays.keep_results(session, config, _settings().sim_cache_dir)
    if session.mode == "record" and store.find(config.run_id) is None:
        replays.discard(path)  # the run never started: nothing to replay
    if replay is not None and result.error:  # a replay is not resumed but started again
        result.error = result.error.replace(f"; resume with `collapse-audit run --resume {config.run_id}`", "")
    if missing and result.status == "finished":
        error = (f"the replay asked {len(missing)} request{'s' if len(missing) != 1 else ''} its recording lacks, "
                 f"first {missing[0]}")
        done = store.find(config.run_id)
        if done is not None:
            store.finish(done, "failed", error=error, files=done.report_files, audit=done.audit)
        return RunResult(config.run_id, "failed", EXIT_RUN_FAILED, config.out_dir, result.report_files,
                         notices=result.notices, error=error, seconds=result.seconds, timings=result.timings)
    return result


def _run_audit(config: RunConfig, *, store: RunStore | None = None, baseline: RunRecord | None = None,
               progress: RunProgress | None = None) -> RunResult:
    """`run_audit`'s work, under the run lock (the record is read again: it may have finished meanwhile)."""
    from agent.models import Report

    progress = progress or RunProgress()
    store = store or store_for(config.inquiry_path)
    record = store.find(config.run_id)
    if record is not None and record.status == "finished":
        return RunResult(config.run_id, "finished", EXIT_OK, config.out_dir, [Path(f) for f in record.report_files],
                         what_changed=record.what_changed, timings=dict(record.timings), already_finished=True)
    from agent.llm_client import llm_client_for
    from tools.llm import LLMError

    try:
        llm_client_for(config)  # an unusable LLM endpoint stops the run here, before it is recorded
    except LLMError as error:
        if record is None and config.out_dir.is_dir() and not any(config.out_dir.iterdir()):
            config.out_dir.rmdir()  # a run that never started leaves neither a folder nor a record
        return RunResult(config.run_id, "failed", EXIT_UNREACHABLE, config.out_dir, error=str(error))
    if record is None:
        record = store.create(config, inputs_hash=_inputs_hash(config))
    elif record.status != "running":  # a failed run, resumed
        record.status, record.error = "running", None
        store.save(record)
    if config.against and baseline is None:
        baseline = store.find(config.against)

    from agent.graph import build_graph, open_checkpointer
    from agent.services import services_for
    from agent.store import audit_record
    from tools.sources import SourceUnreachable

    progress.started(config.run_id, config.out_dir)
    notices: list[str] = []
    timings: dict[str, float] = {}

    def failed(code: int, message: str, error: str) -> RunResult:
        record.timings = _add(record.timings, timings)
        store.finish(record, "failed", error=error)
        return RunResult(config.run_id, "failed", code, config.out_dir, notices=notices, error=message,
                         seconds=sum(timings.values()), timings=timings)

    thread = {"configurable": {"thread_id": config.run_id}}
    resume_hint = f"resume with `collapse-audit run --resume {config.run_id}`"
    try:
        services = services_for(config)
    except LLMError as error:  # the endpoint answered the probe, then refused
        return failed(EXIT_UNREACHABLE, str(error), str(error))
    except (ValueError, OSError, sqlite3.Error) as error:  # a cache or index that cannot be used (disk full...)
        return failed(EXIT_RUN_FAILED, f"{error}; {resume_hint}", str(error))
    source = services.source
    with open_checkpointer(store.checkpoints) as saver:
        graph = build_graph().compile(checkpointer=saver)
        t0 = last = time.perf_counter()
        try:
            # in the try: a checkpoint database that cannot be read or written fails the run in one line
            state = graph.get_state(thread)
            # A stage killed after its results were saved but before the next checkpoint leaves no `next`,
            # only its finished task: continuing (not starting over) applies those results and goes on.
            resuming = state.created_at is not None and bool(state.next or state.tasks)
            payload = None if resuming else {"run": config, **_baseline_input(baseline)}
            if resuming:
                progress.resuming(list(state.next) or [task.name for task in state.tasks])
            for mode, chunk in graph.stream(payload, thread, stream_mode=["updates", "custom"], durability="sync"):
                if mode == "custom" and "simulation" in chunk:
                    progress.simulation(*chunk["simulation"])
                elif mode == "updates":
                    # e.g. "live arXiv unreachable", or a garbled cache set aside and rebuilt: each said once
                    for notice in (source.notice, *_set_aside(services, saver)):
                        if notice and notice not in notices:
                            notices.append(notice)
                            progress.notice(notice)
                    now = time.perf_counter()
                    stages = [node for node in chunk if node in STAGE_LABELS]
                    for node in stages:
                        timings[node] = timings.get(node, 0.0) + (now - last) / len(stages)
                        progress.stage(node, STAGE_LABELS[node], now - t0)
                    last = now
        except SourceUnreachable as error:
            return failed(EXIT_UNREACHABLE, f"{error}; {resume_hint}", str(error))
        except KeyboardInterrupt:  # the checkpoint holds every finished stage
            return failed(EXIT_INTERRUPTED, f"interrupted; {resume_hint}", "interrupted (Ctrl-C)")
        except Exception as error:  # noqa: BLE001 — any stage failure: keep the checkpoint, say how to resume
            return failed(EXIT_RUN_FAILED, f"stage failed: {type(error).__name__}: {error}; {resume_hint}",
                          f"{type(error).__name__}: {error}")
        files = graph.get_state(thread).values.get("report_files", [])
    report = Report.model_validate_json((config.out_dir / "report.json").read_text(encoding="utf-8"))
    if fallback := report.method.get("judgements", {}).get("fallback"):  # the model failed on some: say so here too
        notices.append(f"the model failed on {fallback} judgement{'s' if fallback != 1 else ''}; the offline heuristic "
                       "judge answered those, labelled so in the report")
        progress.notice(notices[-1])
    record.timings = _add(record.timings, timings)
    store.finish(record, "finished", files=files, audit=audit_record(report), what_changed=report.what_changed)
    return RunResult(config.run_id, "finished", EXIT_OK, config.out_dir, [Path(f) for f in files], notices=notices,
                     seconds=time.perf_counter() - t0, timings=timings, what_changed=report.what_changed)


def _set_aside(services, saver) -> list[str]:
    """One line per unreadable cache, index or checkpoint database this run moved aside and rebuilt."""
    found = [("the checkpoint database", getattr(saver, "set_aside_as", None)),
             ("the snapshot index", getattr(services.snapshot, "set_aside_as", None)),
             ("the arXiv lookup cache", getattr(services.source.cache, "set_aside_as", None)),
             ("the LLM response cache", getattr(getattr(services.llm, "cache", None), "set_aside_as", None))]
    rebuilt = {"the checkpoint database": "started afresh (runs it held start again from their first stage)",
               "the snapshot index": ("rebuilt from the packaged snapshot (papers added by `snapshot ingest` or "
                                      "`snapshot update` must be added again)")}
    return [f"{what} could not be read; it was moved aside to {path} and {rebuilt.get(what, 'rebuilt empty')}"
            for what, path in found if path]


def _baseline_input(baseline: RunRecord | None) -> dict:
    """The graph's `baseline` input: the earlier run as stored (agent/changes.py Baseline)."""
    if baseline is None or baseline.audit is None:
        return {}
    return {"baseline": {"run_id": baseline.run_id, "run_date": baseline.run.run_date.isoformat(),
                         "audit": baseline.audit.model_dump(mode="json")}}


def _add(total: dict[str, float], more: dict[str, float]) -> dict[str, float]:
    return {k: round(total.get(k, 0.0) + more.get(k, 0.0), 3) for k in dict.fromkeys([*total, *more])}

"""The collapse-audit command line: one function per command, argument handling and output only.

Exit codes (every command): 0 success, 1 findings (verify-citations: a citation flagged; recheck
--fail-on-change: something changed), 2 bad input (one line, never a traceback), 3 a required source
or LLM endpoint was unreachable, 4 a run's stage failed (the run is checkpointed; the message says how
to resume it), 5 another run of the same audit holds its run lock (nothing was started; `--wait SECONDS`
waits for it). Runs are planned, started and recorded by agent/runner.py; schedules by agent/schedule.py.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import threading
import time
import traceback
from contextlib import contextmanager
from datetime import date, datetime, timezone
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Optional, get_args

import typer
from rich import box
from rich.console import Console
from rich.markup import escape
from rich.progress import Progress
from rich.table import Table

from agent.runner import (
    EXIT_BAD_INPUT,
    EXIT_FINDINGS,
    EXIT_INTERRUPTED,
    EXIT_OK,
    EXIT_RUN_FAILED,
    EXIT_UNREACHABLE,
    BUDGETS,
    DEVICES,
    LLMS,
    SOURCES,
    BadInput,
    RunProgress,
)
from agent.runner import parse_since as _parse_since
from simulations.cells import FAMILIES, DiversityControl, Hold, Regime
from simulations.executors import EXECUTORS

# click's usage errors, from whichever click typer runs on (recent typer carries its own copy).
UsageError = next(c for c in typer.BadParameter.__mro__ if c.__name__ == "UsageError")
NoArgsIsHelpError = getattr(sys.modules[UsageError.__module__], "NoArgsIsHelpError", ())

if TYPE_CHECKING:
    from agent.models import Claim
    from agent.projects import Audit
    from agent.runner import PlannedRun, RunResult
    from agent.store import RunRecord
    from tools.grounding import CitationCheck
    from tools.snapshot import IngestReport, Snapshot
    from tools.snapshot_update import UpdateReport

# Only typer, rich and the standard library load with this module: every other import sits inside the
# command that needs it (heavy ones — torch, langgraph, sentence-transformers — only once a run
# starts), so `--help` and bad-input errors answer at once.

EXIT_FLAGGED = EXIT_FINDINGS
__all__ = ["app", "EXIT_OK", "EXIT_FLAGGED", "EXIT_BAD_INPUT", "EXIT_UNREACHABLE", "EXIT_RUN_FAILED"]

class _App(typer.Typer):
    """The app, with a last line of defence: what a command did not foresee is one line on stderr and
    exit 4 (bad input found late: 2), never a traceback, and never 1, which means "findings".
    COLLAPSE_AUDIT_TRACEBACK=1 prints the traceback as well."""

    def __call__(self, *args, **kwargs):
        try:
            return super().__call__(*args, **kwargs)
        except BadInput as error:
            fail(escape(str(error)))
            sys.exit(EXIT_BAD_INPUT)
        except Exception as error:  # noqa: BLE001 — the last line of defence
            if os.environ.get("COLLAPSE_AUDIT_TRACEBACK"):
                traceback.print_exc()
            said = (str(error).splitlines() or [""])[0]
            fail(escape(f"unexpected failure: {type(error).__name__}{': ' + said if said else ''} "
                        "(COLLAPSE_AUDIT_TRACEBACK=1 shows where)"))
            sys.exit(EXIT_RUN_FAILED)


class _OneLineUsage(typer.core.TyperGroup):
    """Usage errors (a value not among an option's choices, an unknown option, a missing argument) as
    one line on stderr and exit 2, like every other bad input; no usage box."""

    def make_context(self, info_name, args, parent=None, **extra):
        try:
            return super().make_context(info_name, args, parent=parent, **extra)
        except UsageError as error:
            raise _usage_error(error) from None

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except UsageError as error:
            raise _usage_error(error) from None
        except KeyboardInterrupt:  # click's own handling prints "Aborted!" and exits 1, which means findings
            raise fail("interrupted (Ctrl-C)", EXIT_INTERRUPTED) from None


def _usage_error(error: UsageError) -> Exception:
    if isinstance(error, NoArgsIsHelpError):
        return error  # a command group run bare: its help, as before
    where = f" (see {error.ctx.command_path} --help)" if error.ctx is not None else ""
    message = " ".join(error.format_message().split()).replace(": Value error, ", ": ")  # typer's wording of a bad choice
    return fail(escape(message + where))


app = _App(cls=_OneLineUsage, add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False)
console = Console(stderr=True)


def fail(message: str, code: int = EXIT_BAD_INPUT) -> typer.Exit:
    """Print one clear line and return the Exit to raise: bad input never ends in a traceback."""
    console.print(f"[red]error:[/red] {message}", highlight=False, soft_wrap=True)
    return typer.Exit(code)


def _version(value: bool) -> None:
    if value:
        from importlib.metadata import version

        typer.echo(f"collapse-audit {version('collapse-audit')}")
        raise typer.Exit()


@app.callback()
def _main(
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True, help="Print the version and exit."),
) -> None:
    """Audit dated research claims: ground their arXiv citations, grade newer literature, simulate, report."""


def _choices(name: str, values) -> type[StrEnum]:
    """A typed choice: --help lists its values, and a value not among them is a one-line usage error (exit 2)."""
    return StrEnum(name, [(value, value) for value in values])


def _plain(value: Optional[str]) -> Optional[str]:
    """A choice as the plain string the rest of the program takes (None stays None)."""
    return None if value is None else str(value)


Source, Llm, SimBudget, Device = (_choices(n, v) for n, v in (("Source", SOURCES), ("Llm", LLMS),
                                                               ("SimBudget", BUDGETS), ("Device", DEVICES)))
TableOrJson, TextOrJson = _choices("TableOrJson", ("table", "json")), _choices("TextOrJson", ("text", "json"))
Durability = _choices("Durability", ("durable", "perishable", "unassessed"))
Family, SimRegime = _choices("Family", FAMILIES), _choices("SimRegime", get_args(Regime))
Control, SimHold = _choices("Control", get_args(DiversityControl)), _choices("SimHold", get_args(Hold))
Estimator, Budget = _choices("Estimator", ("mle", "unbiased")), _choices("Budget", ("tiny", "small", "full"))
SimExecutor = _choices("SimExecutor", EXECUTORS)


# --- run -------------------------------------------------------------------------------------


def parse_since(value: str, today: date) -> date:
    """`--since` as a date (agent/runner.py), or one error line and exit 2."""
    try:
        return _parse_since(value, today)
    except BadInput as error:
        raise fail(str(error)) from None


def _choice(flag: str, value: str, allowed: tuple[str, ...]) -> str:
    if value not in allowed:
        raise fail(f"{flag} {value!r} is not one of: {', '.join(allowed)}")
    return str(value)


class _ConsoleProgress(RunProgress):
    """A run's progress on stderr: one line per stage, a bar for the simulations."""

    def __enter__(self) -> _ConsoleProgress:
        self.bar = Progress(console=console, transient=True)
        self.bar.__enter__()
        self.sims = None
        return self

    def __exit__(self, *exc) -> None:
        self.bar.__exit__(*exc)

    def started(self, run_id: str, out_dir: Path) -> None:
        console.print(f"run [bold]{run_id}[/bold] → {out_dir}")

    def resuming(self, stages: list[str]) -> None:
        console.print(f"resuming at: {', '.join(stages)}")

    def stage(self, node: str, label: str, elapsed: float) -> None:
        console.print(f"✓ {label} [dim]({node}, {elapsed:.1f}s)[/dim]")

    def simulation(self, done: int, total: int) -> None:
        self.sims = self.sims if self.sims is not None else self.bar.add_task("simulations", total=total)
        self.bar.update(self.sims, completed=done)

    def notice(self, text: str) -> None:
        console.print(text, highlight=False, soft_wrap=True)


def _plan(make) -> PlannedRun:
    """Plan a run, turning bad input into one line and exit 2; say the planner's notices once."""
    try:
        planned = make()
    except BadInput as error:
        raise fail(str(error)) from None
    for notice in planned.notices:
        console.print(f"[yellow]note:[/yellow] {notice}", highlight=False, soft_wrap=True)
    return planned


WAIT_HELP = "Seconds to wait for another run of this audit to finish (default 0: refuse at once, exit 5)."


def _check_wait(wait: float) -> None:
    if not 0 <= wait <= 86400:
        raise fail(f"--wait {wait:g}: give 0 to 86400 seconds")


CTRL_C_GRACE_S = 2.0  # how long Ctrl-C waits for a stage's threads before the process exits anyway


def _start(planned: PlannedRun, wait: float = 0.0) -> RunResult:
    """Run a planned run with progress on stderr; report paths on stdout; exit 3/4/5/130 on failure."""
    from agent.runner import run_audit

    said = threading.Event()  # the run's last line is out: Ctrl-C's watchdog only exits
    with _ConsoleProgress() as progress, _ctrl_c_stops_at_once(planned.config.run_id, said):
        result = run_audit(planned.config, store=planned.store, baseline=planned.baseline, progress=progress, wait=wait,
                           record=planned.record, replay=planned.replay)
    if result.already_finished:
        console.print(f"run {result.run_id} already finished; report in {result.out_dir}")
        return result
    if result.exit_code != EXIT_OK:
        error = fail(result.error or "the run failed", result.exit_code)
        said.set()
        raise error
    console.print(f"done in {result.seconds:.1f}s")
    for f in result.report_files[:3]:
        typer.echo(f)
    return result


@contextmanager
def _ctrl_c_stops_at_once(run_id: str, said: threading.Event):
    """Ctrl-C stops a run within CTRL_C_GRACE_S. KeyboardInterrupt reaches the main thread at once,
    but a stage's worker thread may be waiting on a slow source, and neither LangGraph nor the
    interpreter exits before it is done; so the first Ctrl-C also starts a watchdog that says how to
    resume (unless the run already said so) and ends the process with 130. What it leaves is what
    kill -9 leaves: every finished stage checkpointed, the run reading as stopped, resumable."""
    if threading.current_thread() is not threading.main_thread():
        yield  # signal handlers belong to the main thread (a caller running this in a worker)
        return

    def watchdog() -> None:
        if not said.is_set():
            console.print(f"[red]error:[/red] interrupted; resume with `collapse-audit run --resume {run_id}`",
                          highlight=False, soft_wrap=True)
        sys.stderr.flush()
        sys.stdout.flush()
        os._exit(EXIT_INTERRUPTED)

    def on_ctrl_c(signum, frame) -> None:
        signal.signal(signal.SIGINT, previous)  # a second Ctrl-C is the ordinary one
        timer = threading.Timer(CTRL_C_GRACE_S, watchdog)
        timer.daemon = True  # a run that stops in time exits at once, not when the timer fires
        timer.start()
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGINT, on_ctrl_c)
    try:
        yield
    finally:
        if signal.getsignal(signal.SIGINT) is on_ctrl_c:
            signal.signal(signal.SIGINT, previous)


@app.command()
def run(
    inquiry: Optional[Path] = typer.Option(None, help="Inquiry prompt to audit (default: the current project's, else the packaged inquiry)."),
    claims: Optional[Path] = typer.Option(None, help="Extra claims file (.jsonl/.json); default: the audit's claims registry."),
    source: Source = typer.Option("auto", help="Literature source."),
    arxiv_url: Optional[str] = typer.Option(None, help="arXiv API base URL (env ARXIV_API_URL)."),
    llm: Llm = typer.Option("auto", help="Analyst: auto (openai when OPENAI_API_KEY or OPENAI_BASE_URL is set, else none) | none (offline heuristics) | openai (any OpenAI-compatible endpoint)."),
    model: Optional[str] = typer.Option(None, help="Model name for --llm openai (env COLLAPSE_AUDIT_MODEL)."),
    since: Optional[str] = typer.Option(None, help="Only literature since DATE (YYYY-MM-DD) or a span: 30d, 8w, 6mo, 1y."),
    sim_budget: SimBudget = typer.Option("small", help="Simulation budget (none: skip the simulations)."),
    device: Device = typer.Option("auto", help="Simulation device."),
    out: Optional[Path] = typer.Option(None, help="Report directory (default: PROJECT/runs/RUN_ID in a project, else ./audit-RUN_ID)."),
    resume: Optional[str] = typer.Option(None, metavar="RUN_ID", help="Continue a crashed run where it stopped."),
    seed: int = typer.Option(0, help="Seed for the simulations."),
    record: bool = typer.Option(False, "--record", help="Keep every arXiv and LLM response and the inputs, so `collapse-audit replay RUN_ID` reproduces the report offline (asks afresh: no cached answer is used)."),
    force: bool = typer.Option(False, help="Overwrite a non-empty --out directory."),
    wait: float = typer.Option(0.0, metavar="SECONDS", help=WAIT_HELP),
) -> None:
    """Audit an inquiry: ground citations, grade newer literature, simulate, and write the report.

    Every run is recorded in the run store (`collapse-audit runs list`). Exit 0 done, 2 bad input,
    3 a source or the LLM endpoint unreachable, 4 a stage failed (resume with --resume RUN_ID),
    5 another run of this audit is running (one at a time per run store; --wait SECONDS waits for it).
    """
    from agent.runner import RunOptions, plan_resume, plan_run

    _check_wait(wait)
    if record and resume:
        raise fail("--record starts a recorded run; `run --resume` records on only a run that was started with --record")
    options = RunOptions(inquiry=inquiry, claims=claims, source=_plain(source), arxiv_url=arxiv_url, llm=_plain(llm), model=model,
                         since=since, sim_budget=_plain(sim_budget), device=_plain(device), out=out, seed=seed, force=force,
                         record=record)
    _start(_plan(lambda: plan_resume(resume, inquiry=inquiry) if resume else plan_run(options)), wait)


# --- recheck ----------------------------------------------------------------------------------


@app.command()
def recheck(
    against: str = typer.Option("latest", metavar="RUN_ID|latest", help="The earlier run to compare with (default: the audit's latest finished run)."),
    since: Optional[str] = typer.Option(None, help="Literature since DATE (YYYY-MM-DD) or a span: 30d, 8w, 6mo, 1y (default: the earlier run's window)."),
    fail_on_change: bool = typer.Option(False, help="Exit 1 when anything changed (for CI and schedules)."),
    inquiry: Optional[Path] = typer.Option(None, help="Inquiry whose audit to re-check (default: the current project's, else the packaged inquiry's)."),
    source: Optional[Source] = typer.Option(None, help="Literature source (default: the earlier run's)."),
    arxiv_url: Optional[str] = typer.Option(None, help="arXiv API base URL (default: the earlier run's)."),
    llm: Llm = typer.Option("auto", help="Analyst: auto (openai when OPENAI_API_KEY or OPENAI_BASE_URL is set, else none) | none | openai."),
    model: Optional[str] = typer.Option(None, help="Model name for --llm openai (default: the earlier run's, if it used one)."),
    out: Optional[Path] = typer.Option(None, help="Report directory (default: PROJECT/runs/RUN_ID in a project, else ./audit-RUN_ID)."),
    force: bool = typer.Option(False, help="Overwrite a non-empty --out directory."),
    wait: float = typer.Option(0.0, metavar="SECONDS", help=WAIT_HELP),
    record: bool = typer.Option(False, "--record", help="Keep every arXiv and LLM response and the inputs (the earlier run included), so `collapse-audit replay RUN_ID` reproduces this re-check offline."),
) -> None:
    """Run an audit again and report what changed since an earlier run.

    Same inquiry, claims and simulation settings as the earlier run (simulations come from the sweep
    cache); citations and literature are asked afresh. The report opens with "What changed": new
    papers per assertion with their stances, stance and verdict changes with the evidence that moved
    them, citation statuses that changed, claims added or removed (report.json: `what_changed`).

    Exit 0 done (changed or not), 1 with --fail-on-change when anything changed, 2 bad input,
    3 a source or the LLM endpoint unreachable, 4 a stage failed, 5 another run of this audit is running.
    """
    from agent.runner import RecheckOptions, plan_recheck

    _check_wait(wait)
    options = RecheckOptions(against=against, inquiry=inquiry, since=since, source=_plain(source), arxiv_url=arxiv_url,
                             llm=_plain(llm), model=model, out=out, force=force, record=record)
    result = _start(_plan(lambda: plan_recheck(options)), wait)
    if result.what_changed is not None:
        console.print(result.what_changed.summary, markup=False, highlight=False, soft_wrap=True)
    if fail_on_change and result.changed:
        raise typer.Exit(EXIT_FINDINGS)


# --- schedule ---------------------------------------------------------------------------------


schedule_app = typer.Typer(no_args_is_help=True, help="Re-check on a schedule: a crontab entry or systemd user timer, or an in-process loop.")
app.add_typer(schedule_app, name="schedule")
schedule_out = Console(soft_wrap=True, markup=False, highlight=False)
_AGAINST_HELP = "The earlier run to compare with (default: the audit's latest finished run, i.e. the last re-check)."
_INQUIRY_HELP = "Inquiry whose audit to re-check (default: the current project's, else the packaged inquiry's)."


def _recheck_args(against: str, inquiry: Optional[Path], since: Optional[str], source: Optional[str],
                  arxiv_url: Optional[str], llm: Optional[str], model: Optional[str], wait: float):
    """The re-check options a schedule runs with, checked now (one line and exit 2 when unusable)."""
    from agent.runner import LLMS, RecheckOptions
    from agent.schedule import RecheckArgs

    if source is not None:
        _choice("--source", source, SOURCES)
    if llm is not None:
        _choice("--llm", llm, LLMS)
    if since is not None:
        parse_since(since, datetime.now(timezone.utc).date())
    _check_wait(wait)
    options = RecheckOptions(against=against, inquiry=inquiry.absolute() if inquiry else None, since=since,
                             source=_plain(source), arxiv_url=arxiv_url, llm=_plain(llm), model=model)
    return RecheckArgs(options, wait=wait)


@schedule_app.command("install")
def schedule_install(
    every: Optional[str] = typer.Option(None, help="How often: Nm (N dividing 60), Nh (N dividing 24), 1d, 7d or 1w (default 7d)."),
    cron: Optional[str] = typer.Option(None, metavar="EXPR", help='A cron expression instead: 5 fields, e.g. "0 6 * * 1", or @daily, @weekly.'),
    systemd: bool = typer.Option(False, "--systemd", help="Write a systemd user timer + service (~/.config/systemd/user) instead of a crontab entry."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Print what would be written, and write nothing."),
    against: str = typer.Option("latest", metavar="RUN_ID|latest", help=_AGAINST_HELP),
    inquiry: Optional[Path] = typer.Option(None, help=_INQUIRY_HELP),
    since: Optional[str] = typer.Option(None, help="Passed to recheck: literature since DATE or a span (default: the earlier run's)."),
    source: Optional[Source] = typer.Option(None, help="Passed to recheck: the literature source (default: the earlier run's)."),
    arxiv_url: Optional[str] = typer.Option(None, help="Passed to recheck: arXiv API base URL."),
    llm: Optional[Llm] = typer.Option(None, help="Passed to recheck: the analyst (default: recheck's)."),
    model: Optional[str] = typer.Option(None, help="Passed to recheck: model name for --llm openai."),
    wait: float = typer.Option(0.0, metavar="SECONDS", help="Passed to recheck: " + WAIT_HELP),
) -> None:
    """Schedule `recheck --fail-on-change` of this audit: a crontab entry, or a systemd user timer.

    Prints exactly what it writes and where; absolute paths throughout (this installation's
    collapse-audit, COLLAPSE_AUDIT_HOME, the audit's directory and inquiry). One entry per audit:
    installing again replaces it. Exit 0 written (or shown, --dry-run), 2 bad input.
    """
    from agent.schedule import install, parse_cron, parse_every, plan_job

    try:
        if every is not None and cron is not None:
            raise BadInput("give --every or --cron, not both")
        parsed_every = parse_every(every) if every is not None else None
        parsed_cron = parse_cron(cron) if cron is not None else None
        args = _recheck_args(against, inquiry, since, source, arxiv_url, llm, model, wait)
        lines = install(plan_job(args), every=parsed_every, cron=parsed_cron, systemd=systemd, dry_run=dry_run)
    except BadInput as error:
        raise fail(str(error)) from None
    for line in lines:
        schedule_out.print(line)


@schedule_app.command("list")
def schedule_list() -> None:
    """The installed schedules: crontab lines tagged `# collapse-audit`, and the systemd user units."""
    from agent.schedule import list_lines

    for line in list_lines():
        schedule_out.print(line)


@schedule_app.command("remove")
def schedule_remove(
    inquiry: Optional[Path] = typer.Option(None, help="Whose schedule to remove (default: the current project's, else the packaged inquiry's)."),
    all_: bool = typer.Option(False, "--all", help="Remove every collapse-audit schedule, of any audit."),
) -> None:
    """Remove this audit's schedule (crontab entry, systemd units); says what it removed.

    Removing what is not there is not an error (exit 0).
    """
    from agent.runner import RecheckOptions
    from agent.schedule import RecheckArgs, plan_job, remove

    try:
        lines = remove(None if all_ else plan_job(RecheckArgs(RecheckOptions(inquiry=inquiry.absolute() if inquiry else None))).key)
    except BadInput as error:
        raise fail(str(error)) from None
    for line in lines:
        schedule_out.print(line)


@schedule_app.command("run")
def schedule_run(
    every: str = typer.Option("7d", help="Time between re-checks: Ns, Nm, Nh, Nd or Nw (the first runs at once)."),
    max_runs: Optional[int] = typer.Option(None, help="Stop after N re-checks (default: until SIGINT/SIGTERM)."),
    against: str = typer.Option("latest", metavar="RUN_ID|latest", help=_AGAINST_HELP),
    inquiry: Optional[Path] = typer.Option(None, help=_INQUIRY_HELP),
    since: Optional[str] = typer.Option(None, help="Literature since DATE or a span (default: the earlier run's)."),
    source: Optional[Source] = typer.Option(None, help="Literature source (default: the earlier run's)."),
    arxiv_url: Optional[str] = typer.Option(None, help="arXiv API base URL (default: the earlier run's)."),
    llm: Llm = typer.Option("auto", help="The analyst, as for recheck."),
    model: Optional[str] = typer.Option(None, help="Model name for --llm openai."),
    wait: float = typer.Option(0.0, metavar="SECONDS", help=WAIT_HELP),
) -> None:
    """Re-check in this process, now and then every --every, until stopped.

    Each run is what `recheck --fail-on-change` runs; one line per run (time, run id, exit status,
    changed or not) goes to stderr and $COLLAPSE_AUDIT_HOME/schedule.log. A failed run is logged and
    the loop goes on. SIGINT/SIGTERM stop it after the current run (a second signal abandons that
    run; it stays resumable) with a summary line. Exit 0 when stopped, 2 bad input (also when the
    first re-check is refused as such).
    """
    from agent.config import Settings
    from agent.schedule import LOG_NAME, ScheduleLog, parse_every, run_loop

    try:
        interval = parse_every(every)
    except BadInput as error:
        raise fail(str(error)) from None
    if max_runs is not None and max_runs < 1:
        raise fail(f"--max-runs {max_runs}: give 1 or more")
    args = _recheck_args(against, inquiry, since, source, arxiv_url, llm, model, wait)
    log = ScheduleLog(Settings().home / LOG_NAME)
    code, message = run_loop(args, interval, max_runs=max_runs, log=log)
    if code != EXIT_OK:
        raise fail(message, code)



# --- runs ---------------------------------------------------------------------------------------


runs_app = typer.Typer(no_args_is_help=True, help="The run store: every run's inputs, verdicts, citations, papers and timings.")
app.add_typer(runs_app, name="runs")
runs_out = Console(soft_wrap=True, markup=False, highlight=False)
_VERDICT_ORDER = ("supported", "partly_supported", "contested", "refuted", "insufficient_evidence")


def _verdicts(record: RunRecord) -> str:
    if record.audit is None:
        return "—"
    counts = record.audit.verdict_counts()
    return ", ".join(f"{counts[label]} {label.replace('_', ' ')}" for label in _VERDICT_ORDER if counts.get(label)) or "no claims"


def _summary(record: RunRecord) -> dict:
    return {
        "run_id": record.run_id, "started_at": record.started_at.isoformat(), "status": record.status,
        "inquiry": record.inquiry_name, "inquiry_path": str(record.run.inquiry_path) if record.run.inquiry_path else None,
        "verdicts": record.audit.verdict_counts() if record.audit else None, "against": record.run.against,
        "changed": record.what_changed.changed if record.what_changed else None, "out_dir": str(record.run.out_dir),
    }


@runs_app.command("list")
def runs_list(
    inquiry: Optional[Path] = typer.Option(None, help="Only this inquiry's runs (default: every run of the current project, else of the data dir)."),
    limit: int = typer.Option(20, help="Show the newest N runs (0: all)."),
    format: TableOrJson = typer.Option("table", "--format", help="Output format."),
) -> None:
    """The recorded runs, newest first: id, date, inquiry, status and verdict counts."""
    from agent.runner import list_runs

    _choice("--format", format, ("table", "json"))
    if limit < 0:
        raise fail(f"--limit {limit}: give 0 (all) or more")
    try:
        store, records = list_runs(inquiry, limit=limit or None)
    except BadInput as error:
        raise fail(str(error)) from None
    if format == "json":
        print(json.dumps([_summary(r) for r in records], indent=2, ensure_ascii=False))
        return
    if not records:
        runs_out.print(f"no runs recorded in {store.root}; start one with `collapse-audit run`")
        return
    table = Table(box=box.SIMPLE_HEAD, pad_edge=False)
    table.add_column("run", no_wrap=True)
    table.add_column("started (UTC)", no_wrap=True)
    table.add_column("inquiry", ratio=1)
    table.add_column("status", no_wrap=True)
    table.add_column("verdicts", ratio=1)
    for r in records:
        recheck_of = f" (re-check of {r.run.against})" if r.run.against else ""
        table.add_row(r.run_id, f"{r.started_at:%Y-%m-%d %H:%M}", r.inquiry_name + recheck_of, r.status, _verdicts(r))
    runs_out.print(table)
    runs_out.print(f"{len(records)} run{'s' if len(records) != 1 else ''} from {store.path}")


@runs_app.command("show")
def runs_show(
    run_id: str = typer.Argument(..., metavar="RUN_ID"),
    inquiry: Optional[Path] = typer.Option(None, help="Look in this inquiry's audit first (default: the current project's)."),
    format: TextOrJson = typer.Option("text", "--format", help="text (a readable summary) or json (the whole record)."),
) -> None:
    """One recorded run: config, inputs hash, timings, report paths, and per claim and assertion the
    verdict, citation statuses and papers seen with their stances."""
    from agent.runner import find_run

    _choice("--format", format, ("text", "json"))
    try:
        store, record = find_run(run_id, inquiry=inquiry)
    except BadInput as error:
        raise fail(str(error)) from None
    if format == "json":
        print(record.model_dump_json(indent=2))
        return
    runs_out.print("\n".join(_readable(record, store.path)))


def _readable(r: RunRecord, where: Path) -> list[str]:
    c = r.run
    took = f", took {(r.finished_at - r.started_at).total_seconds():.1f} s" if r.finished_at else ""
    lines = [
        f"run {r.run_id}: {r.status}, started {r.started_at:%Y-%m-%d %H:%M:%S} UTC{took} (recorded in {where})",
        f"inquiry: {r.inquiry_name} ({c.inquiry_path or 'the packaged default inquiry'})"
        + (f"; claims file {c.claims_path}" if c.claims_path else ""),
        f"config: source {c.source} ({c.arxiv_url}), analyst {c.llm}{f' ({c.model})' if c.model else ''}, "
        f"literature since {c.since or 'any date'}, simulations {c.sim_budget} on {c.device}, seed {c.seed}",
        f"inputs hash: {r.inputs_hash or 'not recorded'}",
    ]
    if r.error:
        lines.append(f"error: {r.error}")
    if c.against:
        lines.append(f"re-check of {c.against}: {r.what_changed.summary if r.what_changed else 'not finished'}")
    if r.timings:
        lines.append("timings: " + ", ".join(f"{stage} {seconds:.1f} s" for stage, seconds in r.timings.items()))
    lines += [f"report: {f}" for f in r.report_files]
    if r.audit is None:
        return lines
    lines.append(f"simulations: {r.audit.simulation}")
    for claim in r.audit.claims:
        cites = ", ".join(f"{x.arxiv_id or x.as_written} {x.status}" for x in claim.citations) or "none"
        lines.append(f"{claim.id} {claim.label.replace('_', ' ')} (durability {claim.durability}): {claim.text}")
        lines.append(f"    citations: {cites}")
        for a in claim.assertions:
            papers = ", ".join(f"{p.arxiv_id} {p.stance or 'undetermined'}{' (cited)' if p.cited else ''}" for p in a.papers)
            lines.append(f"    {a.id} {a.label.replace('_', ' ')}; rests on: {', '.join(a.rests_on) or 'nothing'}")
            lines.append(f"        papers seen: {papers or 'none'}")
    if r.audit.anchor_citations:
        lines.append("anchor citations: " + ", ".join(f"{x.arxiv_id or x.as_written} {x.status}" for x in r.audit.anchor_citations))
    return lines


# --- replay -----------------------------------------------------------------------------------


@app.command()
def replay(
    run_id: str = typer.Argument(..., metavar="RUN_ID", help="A run started with `collapse-audit run --record`."),
    out: Path = typer.Option(..., help="Report directory for the replay (empty, or pass --force)."),
    inquiry: Optional[Path] = typer.Option(None, help="Look for the run in this inquiry's audit first (default: the current project's)."),
    force: bool = typer.Option(False, help="Overwrite a non-empty --out directory."),
) -> None:
    """Reproduce a recorded run's report offline, from its recording (`run --record`).

    The recorded config (run date included), inquiry, claims, snapshot, simulations and settings;
    every arXiv and LLM request is answered from the recording, none goes to the network. The
    replay is kept in a store of its own (RUNS_DIR/replays), not among the audit's runs. Exit 0 the
    report reproduces the recorded one (run id, creation time and directory aside), 1 it differs
    (what differs is said), 2 bad input (unknown run, not recorded, not finished, --out not empty),
    4 the replay failed (e.g. it asked a request the recording lacks), 5 another replay is running.
    """
    from agent.replay import compare
    from agent.runner import plan_replay

    planned = _plan(lambda: plan_replay(run_id, out, force=force, inquiry=inquiry))
    result = _start(planned)
    assert planned.replay is not None
    differences = compare(planned.replay, result.out_dir)
    if differences:
        console.print(f"the replay's report differs from run {run_id}'s: {'; '.join(differences)}",
                      markup=False, highlight=False, soft_wrap=True)
        raise typer.Exit(EXIT_FINDINGS)
    console.print(f"the report reproduces run {run_id}'s (run id, creation time and directory aside)",
                  markup=False, highlight=False, soft_wrap=True)


# --- schema -----------------------------------------------------------------------------------


@app.command()
def schema() -> None:
    """Print report.json's JSON Schema (draft 2020-12), generated from the Report model."""
    from agent.models import report_json_schema

    print(json.dumps(report_json_schema(), indent=2, ensure_ascii=False))


# --- init -------------------------------------------------------------------------------------


@app.command()
def init(
    directory: Path = typer.Argument(Path("."), metavar="[DIR]", help="Project directory (default: the current one; made if missing)."),
    inquiry: Optional[Path] = typer.Option(None, help="Inquiry prompt to copy into the project (default: the packaged inquiry)."),
) -> None:
    """Make an audit project: its inquiry, its own claims registry and its runs directory.

    Commands run inside DIR (or below it) work on this project. An existing project is left as it is (exit 0).
    """
    from agent.inquiry import InquiryError
    from agent.projects import AuditError, init_project

    try:
        project, created = init_project(directory, inquiry)
    except (AuditError, InquiryError) as error:
        raise fail(str(error)) from None
    if not created:
        typer.echo(f"{project.directory} is already an audit project; nothing was changed")
        return
    source = inquiry or "the packaged default inquiry"
    typer.echo(f"audit project in {project.directory}: inquiry {project.inquiry_path.name} (from {source}), "
               f"claims {project.claims_path.name}, runs {project.runs_dir.name}/")


# --- verify-citations -------------------------------------------------------------------------


FORMATS = ("table", "json")
_STATUS_STYLE = {"grounded": "green", "unverifiable": "yellow", "no_id": "yellow"}


@app.command("verify-citations")
def verify_citations(
    file: str = typer.Argument(..., metavar="FILE|-", help="Text, Markdown or BibTeX to check; - reads standard input."),
    source: Source = typer.Option("auto", help="Where papers are looked up: auto (cache, snapshot, live arXiv), snapshot, or arxiv."),
    arxiv_url: Optional[str] = typer.Option(None, help="arXiv API base URL (env ARXIV_API_URL)."),
    format: TableOrJson = typer.Option("table", "--format", help="Output format."),
) -> None:
    """Check every arXiv citation in a text: does it exist, is it the paper described, is the year right.

    Exit 0 when every citation is grounded, 1 when any is flagged, 3 when the source was unreachable.
    """
    source = _choice("--source", source, SOURCES)
    _choice("--format", format, FORMATS)
    text = _read_citation_input(file)

    from agent.config import Settings
    from tools.arxiv_api import request_interval
    from tools.embeddings import get_embedder
    from tools.grounding import summarize, verify_text
    from tools.snapshot import Snapshot
    from tools.sources import open_source

    settings = Settings()
    try:
        snapshot = Snapshot.open(settings.snapshot_index_path) if source != "arxiv" else None
        url = arxiv_url or settings.arxiv_url
        papers = open_source(source, arxiv_url=url, cache_path=settings.cache_path, snapshot=snapshot,  # type: ignore[arg-type]
                             min_interval=request_interval(url))
    except ValueError as error:
        raise fail(str(error)) from None
    checks = verify_text(text, papers, run_date=datetime.now(timezone.utc).date(), embedder=get_embedder(settings.embeddings))
    if not checks:
        raise fail(f"{file}: no citations found (looked for arXiv IDs and links, BibTeX eprints, author-year and dated claims)")
    if papers.notice:
        console.print(f"[yellow]note:[/yellow] {papers.notice}", highlight=False, soft_wrap=True)
    summary = summarize(checks)
    if format == "json":
        payload = {"citations": [c.model_dump(mode="json") for c in checks], "summary": summary}
        typer.echo(json.dumps(payload, indent=2, ensure_ascii=False))
    else:
        _print_checks(checks, summary)
    raise typer.Exit(_verify_exit_code(checks, papers.unreachable))


def _read_citation_input(file: str) -> str:
    try:
        text = sys.stdin.read() if file == "-" else Path(file).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise fail(f"{file}: no such file") from None
    except IsADirectoryError:
        raise fail(f"{file} is a directory; give a text, Markdown or BibTeX file") from None
    except UnicodeDecodeError:
        raise fail(f"{file} is not UTF-8 text; give a text, Markdown or BibTeX file") from None
    except OSError as error:
        raise fail(f"{file}: cannot read ({error.strerror or error})") from None
    if not text.strip():
        raise fail(f"{file} is empty")
    return text


def _verify_exit_code(checks: list[CitationCheck], unreachable: bool) -> int:
    from tools.grounding import NOT_GROUNDED

    statuses = {c.status for c in checks}
    if unreachable and "unverifiable" in statuses:
        return EXIT_UNREACHABLE
    if statuses & NOT_GROUNDED:
        return EXIT_FLAGGED
    return EXIT_OK


def _print_checks(checks: list[CitationCheck], summary: dict) -> None:
    out = Console(soft_wrap=True)
    table = Table("line", "citation", "status", "paper", show_lines=True)
    table.add_column("reason", overflow="fold", ratio=1)
    for check in checks:
        style = _STATUS_STYLE.get(check.status, "red")
        paper = f"{check.paper.title} ({check.paper.published.year})" if check.paper else "—"
        reason = check.reason + (f" → suggested {check.suggested_id}" if check.suggested_id else "")
        table.add_row(str(check.line), check.as_written, f"[{style}]{check.status}[/{style}]", paper, reason)
    out.print(table)
    counts = ", ".join(f"{n} {status}" for status, n in summary.items() if status not in ("total", "coverage") and n)
    checkable = sum(c.status not in ("no_id", "malformed") for c in checks)
    out.print(
        f"{summary['total']} citations: {counts}; coverage {summary['coverage']:.0%} ({checkable} of {summary['total']} carry a checkable arXiv ID)",
        highlight=False,
    )


# --- claims -----------------------------------------------------------------------------------


claims_app = typer.Typer(no_args_is_help=True, help="List, add, remove, validate and import claims.")
app.add_typer(claims_app, name="claims")
# Claim texts and paths are printed as written: "[undated; unassessed]" is not Rich markup.
claims_out = Console(soft_wrap=True, markup=False, highlight=False)
CLAIMS_FORMATS = ("table", "json")
DURABILITIES = ("durable", "perishable", "unassessed")


AUDIT_HELP = "Inquiry whose audit to use (default: the current project's, else the packaged inquiry's)."


def _audit(inquiry: Optional[Path]) -> Audit:
    """The audit a command works on (agent/projects.py), saying once if a legacy registry moved."""
    from agent.projects import AuditError, current_audit

    try:
        audit = current_audit(inquiry)
    except AuditError as error:
        raise fail(str(error)) from None
    if audit.notice:
        console.print(f"[yellow]note:[/yellow] {audit.notice}", highlight=False, soft_wrap=True)
    return audit


def _audit_inquiry_claims(audit: Audit) -> list[Claim]:
    from agent.inquiry import InquiryError

    try:
        return audit.load_inquiry().claims
    except InquiryError as error:
        raise fail(str(error)) from None


@claims_app.command("list")
def claims_list(
    inquiry: Optional[Path] = typer.Option(None, help=AUDIT_HELP),
    format: TableOrJson = typer.Option("table", "--format", help="table, or json (a list of claims)."),
) -> None:
    """The audit's claims: its inquiry's, then the user's own. Says which audit (on stderr with --format json)."""
    from agent.claims_store import ClaimsStoreError

    if format not in CLAIMS_FORMATS:
        raise fail(f"--format must be one of {', '.join(CLAIMS_FORMATS)}, not {format!r}")
    audit = _audit(inquiry)
    try:
        claims = _audit_inquiry_claims(audit) + audit.store.list_claims()
    except ClaimsStoreError as error:
        raise fail(str(error)) from None
    if format == "json":
        console.print(f"audit: {audit.describe()}", highlight=False, soft_wrap=True)  # stdout stays JSON
        print(json.dumps([claim.model_dump() for claim in claims], indent=2, ensure_ascii=False))
        return
    claims_out.print(f"audit: {audit.describe()}")
    table = Table("id", "dated", "durability", "tags", "citations", show_lines=True)
    table.add_column("claim", overflow="fold", ratio=1)
    for claim in claims:
        table.add_row(
            claim.id, claim.dated or "—", claim.durability, ", ".join(claim.tags), ", ".join(claim.citations) or "—", claim.text
        )
    claims_out.print(table)


@claims_app.command("add")
def claims_add(
    text: str = typer.Argument(..., help="The claim, e.g. 'Tail erasure persists at 10% synthetic data (2025, arXiv:2404.01413)'."),
    date: Optional[str] = typer.Option(None, "--date", help="When it was claimed: 2024 or 2024-2025 (default: read from the text)."),
    tag: Optional[list[str]] = typer.Option(None, "--tag", help="A tag; repeat for several (default: from the keyword vocabulary)."),
    durability: Optional[Durability] = typer.Option(None, help="How lasting the claim is (default: unassessed)."),
    inquiry: Optional[Path] = typer.Option(None, help=AUDIT_HELP),
) -> None:
    """Add a claim of your own to the audit (ids U1, U2, ...); a claim already there is refused."""
    from agent.claims_store import ClaimsStoreError

    if durability is not None and durability not in DURABILITIES:
        raise fail(f"--durability must be one of {', '.join(DURABILITIES)}, not {durability!r}")
    audit = _audit(inquiry)
    try:
        claim = audit.store.add(text, dated=date, tags=tag or None, durability=_plain(durability), known=_audit_inquiry_claims(audit))
    except ClaimsStoreError as error:
        raise fail(str(error)) from None
    claims_out.print(f"added {claim.id} to {audit.describe()}: {_describe(claim)}")


@claims_app.command("remove")
def claims_remove(
    claim_id: str = typer.Argument(..., metavar="ID", help="A user claim id, e.g. U2."),
    inquiry: Optional[Path] = typer.Option(None, help=AUDIT_HELP),
) -> None:
    """Remove one of your claims from the audit (it is kept in the registry's .removed.jsonl archive)."""
    from agent.claims_store import ClaimsStoreError

    store = _audit(inquiry).store
    try:
        claim = store.remove(claim_id)
    except ClaimsStoreError as error:
        raise fail(str(error)) from None
    claims_out.print(f"removed {claim.id} (archived in {store.removed_path})")


@claims_app.command("validate")
def claims_validate(
    file: Path = typer.Argument(..., help="An inquiry prompt (.md/.txt) or a claims .jsonl/.json file."),
    inquiry: Optional[Path] = typer.Option(None, help=AUDIT_HELP),
) -> None:
    """Check a file of claims; exit 2 when it cannot be used, 0 when it can (warnings included).

    Also says how many of its claims the audit holds already, i.e. what `claims import` would skip.
    """
    from agent.claims_store import (
        CLAIMS_FILE_SUFFIXES,
        ClaimsStoreError,
        claim_key,
        claims_file_warnings,
        read_claims_file,
    )
    from agent.inquiry import InquiryError, load_inquiry

    try:
        if file.suffix.lower() in CLAIMS_FILE_SUFFIXES:
            claims, extra = read_claims_file(file), ""
        else:
            parsed = load_inquiry(file)
            claims, extra = parsed.claims, f", {len(parsed.anchors)} anchors, {len(parsed.tasks)} tasks"
    except (InquiryError, ClaimsStoreError) as error:
        raise fail(str(error)) from None
    for warning in claims_file_warnings(claims):
        console.print(f"[yellow]warning:[/yellow] {warning}", highlight=False, soft_wrap=True)
    audit = _audit(inquiry)
    try:
        present = audit.store.present(_audit_inquiry_claims(audit))
    except ClaimsStoreError as error:
        raise fail(str(error)) from None
    already = sum(claim_key(claim.text) in present for claim in claims)
    claims_out.print(f"valid: {file}: {len(claims)} claims{extra}; {already} already in {audit.describe()}")


@claims_app.command("import")
def claims_import(
    file: Path = typer.Argument(..., help="A claims .jsonl/.json file or an inquiry-shaped .md."),
    inquiry: Optional[Path] = typer.Option(None, help=AUDIT_HELP),
) -> None:
    """Add every claim of a file to the audit under new ids, once: a claim already there (same text,
    ignoring case and spacing) is not added again, so importing twice adds nothing the second time."""
    from agent.claims_store import ClaimsStoreError, read_claims_file

    audit = _audit(inquiry)
    try:
        added, already = audit.store.import_claims(read_claims_file(file), known=_audit_inquiry_claims(audit))
    except ClaimsStoreError as error:
        raise fail(str(error)) from None
    for claim in added:
        claims_out.print(f"added {claim.id}: {_describe(claim)}")
    for claim, claim_id in already:
        claims_out.print(f"already there as {claim_id}: {_describe(claim)}")
    claims_out.print(f"added {len(added)} claims, {len(already)} already there, to {audit.describe()}")


def _describe(claim: Claim) -> str:
    return f"{claim.text[:80]}{'…' if len(claim.text) > 80 else ''} [{claim.dated or 'undated'}; {claim.durability}]"


# --- simulate ---------------------------------------------------------------------------------
def _numbers(text: Optional[str], kind: type, option: str) -> Optional[list]:
    if text is None:
        return None
    try:
        return [kind(part) for part in text.replace(" ", "").split(",") if part]
    except ValueError:
        raise fail(f"{option} takes comma-separated numbers, got {text!r}") from None


def _last(metrics: dict[str, list[float | None]], name: str) -> str:
    """The last generation's mean over seeds with its 95 % half-width, or '-' where the family lacks it."""
    values, se = metrics.get(name), metrics.get(f"{name}_se")
    if not values or values[-1] is None:
        return "-"
    if not se or se[-1] is None:
        return f"{values[-1]:.3f}"
    return f"{values[-1]:.3f}±{1.96 * se[-1]:.3f}"


@app.command()
def simulate(
    family: Optional[list[Family]] = typer.Option(None, help="Model family (repeatable)."),
    regime: Optional[list[SimRegime]] = typer.Option(None, help="Regime (repeatable)."),
    ratios: Optional[str] = typer.Option(None, help="Synthetic shares rho in [0, 1], comma-separated (0: the real-only cell)."),
    diversity: Optional[str] = typer.Option(None, help="Sampler settings, comma-separated (temperature 0.9 sharpens; the unbiased one is always added; matched: target entropy in nats)."),
    diversity_control: Optional[Control] = typer.Option(None, help="The sampler control that --diversity sets (default: temperature)."),
    real_amounts: Optional[str] = typer.Option(None, help="Real samples per generation, comma-separated."),
    hold: Optional[SimHold] = typer.Option(None, help="What stays fixed as rho varies: real (the real count) or total (samples per generation); default: the budget's."),
    samples: Optional[int] = typer.Option(None, help="Samples per generation M >= 2 (same as --real-amounts M --hold total)."),
    estimator: Optional[Estimator] = typer.Option(None, help="Gaussian variance estimator."),
    generations: Optional[int] = typer.Option(None, help="Generations after the truth."),
    seeds: Optional[int] = typer.Option(None, help="Independent runs per cell."),
    budget: Budget = typer.Option("small", help="Starting grid (the options above override it)."),
    device: Device = typer.Option("auto", help="Simulation device (with --executor ray: the workers')."),
    executor: SimExecutor = typer.Option("local", help="Where the grid batches (one per family) run: in this process, or as Ray tasks on a Ray cluster (one GPU per task when the cluster has GPUs); results land in the same cache."),
    ray_address: Optional[str] = typer.Option(None, metavar="HOST:PORT", help="A running Ray cluster (`ray start --head` prints its address); default: RAY_ADDRESS, else a Ray instance on this machine for this sweep."),
    seed: int = typer.Option(0, help="Random seed."),
    out: Optional[Path] = typer.Option(None, help="Write result.json and figures/*.png here."),
    force: bool = typer.Option(False, help="Write into a non-empty --out directory."),
    format: TableOrJson = typer.Option("table", "--format", help="table, or json (the result JSON on stdout)."),
) -> None:
    """Run a recursive-training sweep: synthetic share vs sampler bias vs amount of real data.

    Exit 0 done, 2 bad input (also: --executor ray without Ray installed), 3 the Ray cluster
    unreachable, 4 a batch failed on a Ray worker.
    """
    from simulations.executors import BatchFailed, ExecutorUnavailable, make_executor, ray_missing

    if ray_address is not None and executor != "ray":
        raise fail("--ray-address needs --executor ray")
    if executor == "ray" and (missing := ray_missing()) is not None:
        raise fail(escape(missing))

    from pydantic import ValidationError

    from agent.config import Settings
    from simulations.device import resolve_device
    from simulations.plots import write_figures
    from simulations.sweep import SweepConfig, run_sweep

    family, regime = [str(f) for f in family] if family else None, [str(r) for r in regime] if regime else None
    diversity_control, hold, estimator = _plain(diversity_control), _plain(hold), _plain(estimator)
    budget, device = str(budget), str(device)
    if executor == "local":  # a Ray cluster's GPUs are the workers', checked when the sweep starts
        try:
            resolve_device(device)
        except ValueError as error:
            raise fail(str(error)) from None
    if out is not None and out.exists() and any(out.iterdir()) and not force:
        raise fail(f"{out} is not empty: choose another --out or pass --force")
    base = SweepConfig.budget(budget, seed=seed, device=device).model_dump()  # type: ignore[arg-type]
    overrides = {
        "families": family, "regimes": regime, "ratios": _numbers(ratios, float, "--ratios"),
        "diversity": _numbers(diversity, float, "--diversity"), "diversity_control": diversity_control,
        "real_amounts": _numbers(real_amounts, int, "--real-amounts"), "generations": generations, "seeds": seeds,
    }
    base.update({k: v for k, v in overrides.items() if v is not None})
    if hold is not None:
        base["holds"] = [hold]
    if samples is not None:
        if samples < 2:
            raise fail(f"--samples must be an integer >= 2, got {samples}")
        base["real_amounts"], base["holds"] = [samples], ["total"]
    if diversity is None:
        # The budgets' sampler settings are temperatures; another control needs its own values, or runs at
        # its unbiased setting alone (the config adds that setting to every grid anyway).
        control = diversity_control or base["diversity_control"]
        if control != "temperature":
            from simulations.diversity import CONTROLS, UNBIASED

            if control not in CONTROLS:
                raise fail(f"unknown --diversity-control {control!r}: use one of {', '.join(CONTROLS)}")
            if control not in UNBIASED:
                raise fail(f"--diversity-control {control} needs --diversity values: it has no unbiased setting to run alone")
            base["diversity"] = [UNBIASED[control]]
            console.print(f"--diversity not given: running {control} at its unbiased setting {UNBIASED[control]:g} alone",
                          highlight=False, soft_wrap=True)
    if estimator is not None:
        if estimator not in ("mle", "unbiased"):
            raise fail(f"unknown estimator {estimator!r}: use mle or unbiased")
        base["family_params"] = {**base["family_params"], "gaussian": {"estimator": estimator}}
    try:
        cfg = SweepConfig.model_validate(base)
    except ValidationError as error:
        first = error.errors()[0]
        raise fail(f"{'.'.join(str(p) for p in first['loc']) or 'config'}: {first['msg'].removeprefix('Value error, ')}") from None
    started = time.perf_counter()
    with Progress(console=console, transient=True) as bar:
        task = bar.add_task("simulating", total=len(cfg.cells()))
        try:
            result = run_sweep(cfg, cache_dir=Settings().sim_cache_dir, executor=make_executor(str(executor), ray_address),
                               progress=lambda done, total: bar.update(task, completed=done, total=total))
        except ValueError as error:
            raise fail(str(error)) from None
        except ExecutorUnavailable as error:
            raise fail(escape(str(error)), EXIT_UNREACHABLE if error.reason == "unreachable" else EXIT_BAD_INPUT) from None
        except BatchFailed as error:
            raise fail(escape(str(error)), EXIT_RUN_FAILED) from None
    payload = result.model_dump(mode="json")
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
        (out / "result.json").write_text(json.dumps(payload, indent=2))
        write_figures(result, out / "figures")
    if format == "json":
        sys.stdout.write(json.dumps(payload) + "\n")
        return
    columns = {"tail_mass_ratio": "tail mass ratio (last)", "tail_coverage": "tail coverage (last)",
               "forward_kl": "forward KL (last)"}
    families, holds = {c.family for c in result.cells}, {c.hold for c in result.cells}
    table = Table(title=f"{len(result.cells)} cells, {cfg.generations} generations, {cfg.seeds} seeds; last generation: "
                        "mean ± 95% half-width over seeds", box=box.SIMPLE_HEAD, pad_edge=False)
    for column in (["family"] if len(families) > 1 else []) + ["regime"] + (["hold"] if len(holds) > 1 else []):
        table.add_column(column)
    for column in ("ratio", cfg.diversity_control.replace("_", "-"), "real", "samples"):
        table.add_column(column, justify="right")
    for column in columns.values():
        table.add_column(column, justify="right", min_width=11)
    for cell in result.cells:
        table.add_row(*([cell.family] if len(families) > 1 else []), cell.regime,
                      *([cell.hold] if len(holds) > 1 else []), f"{cell.ratio:g}", f"{cell.diversity:g}",
                      str(cell.real_amount), str(cell.samples), *(_last(cell.metrics, name) for name in columns))
    Console().print(table)
    Console().print(result.analysis.result if result.analysis is not None
                    else "No family in this sweep measures the tail of its truth, so there is no boundary to report.")
    Console().print(f"{time.perf_counter() - started:.1f} s (results cached by config hash under {Settings().sim_cache_dir})")
    if out is not None:
        Console().print(f"wrote {out / 'result.json'} and {out / 'figures'}")



# --- snapshot ---------------------------------------------------------------------------------


snapshot_app = typer.Typer(no_args_is_help=True, help="The offline literature index (packaged snapshot + Kaggle files + arXiv topics).")
app.add_typer(snapshot_app, name="snapshot")


def _open_snapshot() -> Snapshot:
    from agent.config import Settings
    from tools.snapshot import Snapshot

    try:
        return Snapshot.open(Settings().snapshot_index_path)
    except ValueError as error:
        raise fail(str(error)) from None


@snapshot_app.command("ingest")
def snapshot_ingest(
    file: Path = typer.Argument(..., help='Kaggle "arXiv metadata OAI snapshot" JSON Lines file'),
    restart: bool = typer.Option(False, "--restart", help="Read the file from its start even when an earlier ingest of it stopped midway."),
    batch_lines: int = typer.Option(5_000, "--batch-lines", help="Lines per transaction: how far an interrupted ingest can fall back (100-1000000)."),
) -> None:
    """Add or update papers from a Kaggle arXiv-metadata file: streamed in constant memory, resumable.

    Every batch of lines is committed with the place in the file it reached: rerun the same command
    to continue an ingest that stopped. Lines that are no Kaggle record are skipped, counted and
    named; a file with no Kaggle record in its first 1,000 lines is refused. Exit 0 done, 2 bad input
    (nothing written), 130 interrupted (the committed batches are kept).
    """
    if not file.is_file():
        raise fail(f"{file}: not a file (expected a Kaggle arxiv-metadata-oai-snapshot JSON Lines file)")
    if not 100 <= batch_lines <= 1_000_000:
        raise fail(f"--batch-lines {batch_lines}: give 100 to 1000000")
    snapshot = _open_snapshot()
    last: list[IngestReport] = []
    try:
        # no bar when stderr is not a terminal (cron, pipes): the summary line stays the only output;
        # redrawn per batch, not by rich's refresh thread (with no thread running, a large file is
        # parsed in a forked process: tools.snapshot _KaggleReader)
        with Progress(console=console, transient=True, disable=not console.is_terminal, auto_refresh=False) as bar:
            task = bar.add_task("ingesting", total=file.stat().st_size)

            def advance(report: IngestReport) -> None:
                last[:] = [report]
                bar.update(task, completed=report.offset, description=f"{report.written + report.unchanged:,} papers",
                           refresh=True)

            report = snapshot.ingest_kaggle(file, restart=restart, batch_lines=batch_lines, on_batch=advance)
        console.print(_ingest_summary(report, file, snapshot), markup=False, highlight=False, soft_wrap=True)
    except ValueError as error:
        raise fail(escape(f"{file}: {error}; nothing was ingested")) from None
    except OSError as error:
        raise fail(escape(f"{file}: cannot read ({error.strerror or error})")) from None
    except KeyboardInterrupt:
        kept = f"kept {last[0].written:,} papers up to line {last[0].lines:,}" if last else "nothing was committed"
        raise fail(f"interrupted; {kept}: rerun the same command to continue", 130) from None
    finally:
        snapshot.close()


def _ingest_summary(report: IngestReport, file: Path, snapshot: Snapshot) -> str:
    """One line: what the ingest did, the bad lines it skipped, its rate, and the index's size."""
    resumed = f"resumed after line {report.resumed_at:,}; " if report.resumed_at is not None else ""
    restarted = "an unfinished ingest of an earlier version of this file was dropped; " if report.restarted else ""
    counts = f"{report.added:,} papers added, {report.updated:,} updated, {report.unchanged:,} unchanged"
    bad = ""
    if report.skipped:
        named = "; ".join(report.bad_lines)
        more = f"; and {report.skipped - len(report.bad_lines):,} more" if report.skipped > len(report.bad_lines) else ""
        bad = f"; skipped {report.skipped:,} bad line{'s' if report.skipped != 1 else ''} ({named}{more})"
    rate = f"{report.lines_read:,} lines in {report.seconds:.1f} s ({report.rate:,.0f} lines/s)"
    return f"{resumed}{restarted}ingested {file}: {counts}{bad}; {rate}; the index at {snapshot.index_path} holds {len(snapshot):,} papers"


@snapshot_app.command("embed")
def snapshot_embed(
    max_papers: int = typer.Option(10_000, "--max", help="Embed at most N papers, newest first (1-5000000)."),
    since: Optional[str] = typer.Option(None, help="Only papers submitted since DATE (YYYY-MM-DD) or a span: 30d, 6mo, 1y."),
    category: Optional[str] = typer.Option(None, help="Only papers whose primary category is this, e.g. cs.LG."),
    device: str = typer.Option("cpu", help="cpu or cuda: where MiniLM runs (the vectors are the same up to rounding)."),
) -> None:
    """Embed papers for dense retrieval (the embedder runs use: COLLAPSE_AUDIT_EMBEDDINGS).

    Runs find their semantic neighbours among the embedded papers (tools/dense.py): the whole index
    up to 5,000 papers, else our curated papers and those this command embeds. Papers already
    embedded are skipped, so rerunning continues. Prints the rate: MiniLM managed about 17 papers a
    second on 2 shared CPU cores (100 k papers in about 1.6 h), so embed the part of a Kaggle index
    that matters (--category, --since), or run it on a machine with a GPU (--device cuda).
    """
    from agent.config import Settings
    from tools.dense import dense_index
    from tools.embeddings import MiniLMEmbedder, get_embedder

    if not 1 <= max_papers <= 5_000_000:
        raise fail(f"--max {max_papers}: give 1 to 5000000")
    if device not in ("cpu", "cuda"):
        raise fail(f"--device {device}: give cpu or cuda")
    start = parse_since(since, datetime.now(timezone.utc).date()) if since else None
    embedder = get_embedder(Settings().embeddings)
    if device == "cuda":
        import torch

        if not torch.cuda.is_available() or embedder.name != "minilm":
            raise fail("--device cuda: needs a CUDA GPU and the MiniLM embedder (COLLAPSE_AUDIT_EMBEDDINGS=minilm or auto)")
        embedder = MiniLMEmbedder(device="cuda")
    snapshot = _open_snapshot()
    index = dense_index(snapshot, embedder)
    started = time.perf_counter()
    try:
        prepared = index.prepare()  # what every run embeds anyway (our curated papers, or a small index whole)
        with Progress(console=console, transient=True, disable=not console.is_terminal) as bar:
            task = bar.add_task("embedding", total=max_papers)
            done = index.embed(since=start, category=category, limit=max_papers,
                               on_batch=lambda n: bar.update(task, completed=n)) + prepared
        seconds = time.perf_counter() - started
        rate = f" in {seconds:.1f} s ({done / seconds:,.0f} papers/s)" if done and seconds > 0 else ""
        console.print(f"embedded {done:,} papers with {index.key}{rate}; {index.count():,} of {len(snapshot):,} papers "
                      f"in {snapshot.index_path} are embedded for dense retrieval", markup=False, highlight=False, soft_wrap=True)
    except KeyboardInterrupt:
        raise fail("interrupted; the papers embedded so far are kept: rerun to continue", 130) from None
    finally:
        snapshot.close()


@snapshot_app.command("stats")
def snapshot_stats() -> None:
    """Print the index's counts (by origin, topic, category, year, month) and date range as JSON."""
    stats = _open_snapshot().stats()
    typer.echo(json.dumps(stats, indent=2))


@snapshot_app.command("update")
def snapshot_update(
    query: Optional[str] = typer.Option(None, help='Topic words, all required (AND); quote a phrase: \'"model collapse" synthetic\'. Required.'),
    category: Optional[str] = typer.Option(None, help="Only papers in this arXiv category, e.g. cs.LG."),
    since: Optional[str] = typer.Option(None, help="Only papers submitted since DATE (YYYY-MM-DD) or a span: 30d, 8w, 6mo, 1y."),
    max_papers: int = typer.Option(500, "--max", help="Hold the newest N matching papers (1-30000)."),
    page_size: int = typer.Option(100, help="Papers per request (1-2000)."),
    retries: int = typer.Option(3, help="Retries of a failing request, with backoff, before stopping (0-10)."),
    arxiv_url: Optional[str] = typer.Option(None, help="arXiv API base URL (env ARXIV_API_URL)."),
) -> None:
    """Fetch a topic's papers from live arXiv into the offline index: rate-limited, resumable, cached.

    Rerun the same command to continue an interrupted update, or to fetch what arXiv announced since.
    Exit 0 done, 2 bad input, 3 arXiv unreachable (the pages written are kept).
    """
    from agent.config import Settings
    from tools.arxiv_api import ArxivClient, request_interval
    from tools.snapshot_update import MAX_PAGE_SIZE, MAX_PAPERS, Topic, UpdateInterrupted, update_snapshot

    if query is None:
        raise fail('--query is required: the topic to fetch, e.g. --query "model collapse"')
    if not 1 <= max_papers <= MAX_PAPERS:
        raise fail(f"--max {max_papers}: give 1 to {MAX_PAPERS} (arXiv serves at most {MAX_PAPERS} results per query; narrow it with --category or --since)")
    if not 1 <= page_size <= MAX_PAGE_SIZE:
        raise fail(f"--page-size {page_size}: give 1 to {MAX_PAGE_SIZE} (arXiv's most per request)")
    if not 0 <= retries <= 10:
        raise fail(f"--retries {retries}: give 0 to 10")
    try:
        topic = Topic.parse(query, category=category, since=parse_since(since, datetime.now(timezone.utc).date()) if since else None)
    except ValueError as error:
        raise fail(escape(str(error))) from None  # the user's words may hold [brackets]
    snapshot = _open_snapshot()
    url = arxiv_url or Settings().arxiv_url
    client = ArxivClient(url, max_retries=retries, min_interval=request_interval(url))
    try:
        # no bar when stderr is not a terminal (cron, pipes): the summary line stays the only output
        with Progress(console=console, transient=True, disable=not console.is_terminal) as bar:
            task = bar.add_task("arXiv pages", total=None)
            report = update_snapshot(
                snapshot, client, topic, max_papers=max_papers, page_size=page_size,
                on_page=lambda r: bar.update(task, completed=r.pages, description=f"{r.added + r.updated} papers written"),
            )
    except UpdateInterrupted as error:
        kept = error.report
        kept_line = (
            f"kept {kept.added} new and {kept.updated} updated papers from {kept.pages} page{'s' if kept.pages != 1 else ''}; "
            "rerun the same command to continue from there"
            if kept.pages else "nothing was written; rerun the same command when arXiv answers"
        )
        raise fail(escape(f"{error}. {kept_line}"), EXIT_UNREACHABLE) from None
    finally:
        client.close()
    console.print(_update_summary(report, snapshot), markup=False, highlight=False, soft_wrap=True)


def _update_summary(report: UpdateReport, snapshot: Snapshot) -> str:
    """One line: what was written, and whether the topic is complete."""
    pages = f"{report.pages} page{'s' if report.pages != 1 else ''}"
    written = f"{report.added} papers added, {report.updated} updated, {pages} fetched"
    where = f"[{report.search_query}] → {snapshot.index_path}"
    if report.up_to_date:
        return f"up to date: arXiv announced nothing for this topic since the last update (checked {pages}); the index holds {report.held} of {report.total} matching {where}"
    if report.total == 0:
        state = "complete: arXiv has no paper matching this query; try fewer words, a quoted phrase, or no --category/--since"
    elif report.complete and report.target < report.total:
        state = f"complete: the index holds the newest {report.target} of {report.total} matching papers (raise --max for more)"
    elif report.complete:
        state = f"complete: the index holds all {report.total} matching papers"
    else:
        state = f"incomplete: {report.held} of {report.target} held; rerun the same command to continue"
    resumed = f"resumed at offset {report.resumed_at}; " if report.resumed_at is not None else ""
    return f"{resumed}{written}; {state} {where}"


if __name__ == "__main__":
    app()

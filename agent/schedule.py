"""Scheduled re-checks: `collapse-audit schedule install | list | remove | run`.

`install` writes one entry that runs ``collapse-audit recheck --fail-on-change ...`` on a schedule,
with absolute paths throughout (this interpreter's `collapse-audit`, ``COLLAPSE_AUDIT_HOME``, the
audit's directory and inquiry), so it runs the same from cron's or systemd's bare environment:

- a line in the user's crontab (read with ``crontab -l``, written with ``crontab -``; the command is
  ``$COLLAPSE_AUDIT_CRONTAB`` when set, for tests and unusual setups), ending in the tag
  ``# collapse-audit <audit>``, its output appended to ``$COLLAPSE_AUDIT_HOME/recheck.log``;
- with `--systemd`, a user service and timer, ``collapse-audit-recheck.{service,timer}`` in
  ``$XDG_CONFIG_HOME/systemd/user`` (default ``~/.config/systemd/user``), the timer an `OnCalendar`
  one with `Persistent=true` (a re-check missed while the machine was off runs at the next start).

One entry per audit (a project, an inquiry file, or the default inquiry of one data dir): installing
again replaces it. `list` shows the tagged entries, `remove` deletes the current audit's (`--all`:
every one); both say what they found or did. `--every` takes Nm, Nh, Nd, Nw (Ns too for `run`);
a schedule written for cron must be one cron can keep exactly: Nm with N dividing 60, Nh with N
dividing 24, 1d, 7d or 1w; anything else is refused (exit 2) with what to use instead.

`run` re-checks in this process, every `--every`, through agent/runner.py (`plan_recheck`,
`run_audit`), logging one line per run to stderr and ``$COLLAPSE_AUDIT_HOME/schedule.log``; a failed
run is logged and the loop goes on; SIGINT/SIGTERM end it after the current run (a second signal
abandons that run, which stays resumable), with a summary line and exit 0.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable

from agent.runner import (
    EXIT_BAD_INPUT,
    EXIT_FINDINGS,
    EXIT_OK,
    EXIT_RUN_FAILED,
    BadInput,
    RecheckOptions,
)

TAG = "# collapse-audit"
UNIT = "collapse-audit-recheck"
LOG_NAME, RECHECK_LOG_NAME = "schedule.log", "recheck.log"
CRONTAB_ENV = "COLLAPSE_AUDIT_CRONTAB"
_EVERY = re.compile(r"^(\d+)\s*(s|m|h|d|w)$")
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
_UNIT_WORDS = {"s": "second", "m": "minute", "h": "hour", "d": "day", "w": "week"}


# --- when -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Every:
    count: int
    unit: str  # s m h d w

    @property
    def seconds(self) -> int:
        return self.count * _UNIT_SECONDS[self.unit]

    def __str__(self) -> str:
        return f"{self.count}{self.unit}"

    def words(self) -> str:
        word = _UNIT_WORDS[self.unit]
        return f"every {word}" if self.count == 1 else f"every {self.count} {word}s"


def parse_every(text: str) -> Every:
    """`--every`: a whole number and a unit, s m h d w (7d, 12h, 2w, 30s)."""
    match = _EVERY.match(text.strip().lower())
    if not match or int(match.group(1)) == 0:
        raise BadInput(f"--every {text!r}: give a whole number above 0 and a unit (s, m, h, d, w), e.g. 7d, 12h, 1w")
    return Every(int(match.group(1)), match.group(2))


_MONTHS = {m: i for i, m in enumerate("jan feb mar apr may jun jul aug sep oct nov dec".split(), 1)}
_DAYS = {d: i for i, d in enumerate("sun mon tue wed thu fri sat".split())}
_FIELDS = (("minute", 0, 59, {}), ("hour", 0, 23, {}), ("day of month", 1, 31, {}), ("month", 1, 12, _MONTHS),
           ("day of week", 0, 7, _DAYS))
_MACROS = {"@hourly": "0 * * * *", "@daily": "0 0 * * *", "@midnight": "0 0 * * *", "@weekly": "0 0 * * 0",
           "@monthly": "0 0 1 * *", "@yearly": "0 0 1 1 *", "@annually": "0 0 1 1 *"}
_CRON_HELP = 'give 5 fields (minute hour day-of-month month day-of-week), e.g. "0 6 * * 1", or @daily, @weekly, @monthly'


def parse_cron(expr: str) -> str:
    """`--cron`: five fields (numbers, names, `*`, ranges, lists, steps) or a macro; normalised."""
    text = " ".join(expr.split())
    if text.lower() in _MACROS:
        return text.lower()
    fields = text.split(" ") if text else []
    if len(fields) != 5:
        raise BadInput(f"--cron {expr!r} has {len(fields)} field{'s' if len(fields) != 1 else ''}: {_CRON_HELP}")
    for value, (name, low, high, names) in zip(fields, _FIELDS):
        for item in value.split(","):
            problem = _cron_item(item.lower(), low, high, names)
            if problem:
                raise BadInput(f"--cron {expr!r}: {name} {value!r}: {problem}")
    return text


def _cron_item(item: str, low: int, high: int, names: dict[str, int]) -> str | None:
    base, _, step = item.partition("/")
    if step and not (step.isdigit() and int(step) > 0):
        return f"the step {step!r} is not a whole number above 0"
    if base == "*":
        return None
    ends = base.split("-")
    if len(ends) > 2 or not all(ends):
        return f"{item!r} is not a number, a name, * or a range A-B"
    values = []
    for end in ends:
        value = names.get(end) if end in names else int(end) if end.isdigit() else None
        if value is None:
            return f"{end!r} is not a number" + (f" or a name ({', '.join(names)})" if names else "")
        if not low <= value <= high:
            return f"{value} is outside {low}-{high}"
        values.append(value)
    if len(values) == 2 and values[0] > values[1]:
        return f"the range {base!r} runs backwards"
    if step and len(values) == 1:
        return f"a step needs * or a range before it, e.g. */{step}"
    return None


def every_to_cron(every: Every, now: datetime) -> str:
    """The cron expression that keeps `every` exactly, starting from `now`'s minute (and hour, weekday)."""
    n, unit, minute, hour, weekday = every.count, every.unit, now.minute, now.hour, (now.weekday() + 1) % 7
    if unit == "m" and 60 % n == 0 and n < 60:
        return f"*/{n} * * * *" if n > 1 else "* * * * *"
    if unit == "h" and 24 % n == 0:
        return f"{minute} */{n} * * *" if 1 < n < 24 else f"{minute} * * * *" if n == 1 else f"{minute} {hour} * * *"
    if (unit, n) == ("d", 1):
        return f"{minute} {hour} * * *"
    if (unit, n) in (("d", 7), ("w", 1)):
        return f"{minute} {hour} * * {weekday}"
    if unit == "s":
        raise BadInput(f"--every {every}: seconds are for `schedule run` only; an installed schedule takes Nm, Nh, Nd or Nw")
    raise BadInput(f"--every {every} cannot be kept exactly by a calendar schedule: use Nm (N dividing 60), "
                   "Nh (N dividing 24), 1d, 7d or 1w, or give --cron EXPR")


def cron_to_calendar(expr: str) -> str:
    """A cron expression as systemd's OnCalendar=; BadInput for what the two do not mean alike."""
    minute, hour, dom, month, dow = _MACROS.get(expr, expr).lower().split(" ")
    if dom != "*" and dow != "*":
        raise BadInput(f"--cron {expr!r} with --systemd: cron runs when the day of month OR the weekday matches, "
                       "systemd only when both do; restrict one of them, or install into the crontab")
    names = {v: k.capitalize() for k, v in _DAYS.items()} | {7: "Sun"}

    def convert(value: str, field: int, start: int) -> str:
        items = []
        for item in value.split(","):
            base, _, step = item.partition("/")
            if base == "*":
                items.append(f"{start}/{step}" if step else "*")
                continue
            if step:
                raise BadInput(f"--cron {expr!r} with --systemd: a step after a range ({item}) has no OnCalendar form; "
                               "list the values, or install into the crontab")
            ends = [_FIELDS[field][3].get(e, None) if not e.isdigit() else int(e) for e in base.split("-")]
            if field == 4:
                items.append("..".join(names[e] for e in ends))
            else:
                items.append("..".join(f"{e:02d}" if field < 2 else str(e) for e in ends))
        return ",".join(items)

    if "/" in dow:
        raise BadInput(f"--cron {expr!r} with --systemd: weekdays take no step in OnCalendar; list them instead")
    day = "" if dow == "*" else convert(dow, 4, 0) + " "
    return f"{day}*-{convert(month, 3, 1)}-{convert(dom, 2, 1)} {convert(hour, 1, 0)}:{convert(minute, 0, 0)}:00"


# --- what runs --------------------------------------------------------------------------------


@dataclass(frozen=True)
class RecheckArgs:
    """What a schedule re-checks with: `recheck`'s own options (its output folder is left to each run)
    and how long to wait for a run already holding the store."""

    options: RecheckOptions = RecheckOptions()
    wait: float = 0.0

    def argv(self, inquiry: Path | None) -> list[str]:
        o = self.options
        args = ["recheck", "--fail-on-change"] + (["--inquiry", str(inquiry)] if inquiry else [])
        for flag, value in (("--against", None if o.against == "latest" else o.against), ("--since", o.since),
                            ("--source", o.source), ("--arxiv-url", o.arxiv_url), ("--llm", o.llm),
                            ("--model", o.model), ("--wait", f"{self.wait:g}" if self.wait else None)):
            if value is not None:
                args += [flag, value]
        return args


def cli_executable() -> list[str]:
    """This installation's `collapse-audit`, absolute: beside the running interpreter, else on PATH,
    else the interpreter running the CLI module."""
    beside = Path(sys.executable).absolute().with_name("collapse-audit")
    if beside.is_file():
        return [str(beside)]
    found = shutil.which("collapse-audit")
    return [str(Path(found).absolute())] if found else [str(Path(sys.executable).absolute()), "-m", "agent.cli"]


@dataclass
class Job:
    """What a schedule runs, where and for which audit."""

    key: str  # the audit, as the tag names it: "project DIR", "inquiry FILE" or "default inquiry, data dir HOME"
    describe: str
    workdir: Path
    home: Path
    argv: list[str]
    notes: list[str] = field(default_factory=list)

    @property
    def log(self) -> Path:
        return self.home / RECHECK_LOG_NAME


def plan_job(args: RecheckArgs) -> Job:
    """The job for the current audit; BadInput for an audit or option that cannot be used."""
    from agent.config import Settings
    from agent.projects import AuditError, current_audit
    from agent.runner import audit_store, find_run

    try:
        audit = current_audit(args.options.inquiry)
    except AuditError as error:
        raise BadInput(str(error)) from None
    home = Settings().home.absolute()
    if audit.project:
        key, workdir = f"project {audit.project.directory}", audit.project.directory
    elif audit.inquiry_path:
        key, workdir = f"inquiry {audit.inquiry_path}", Path.cwd().absolute()
    else:
        key, workdir = f"default inquiry, data dir {home}", Path.cwd().absolute()
    argv = cli_executable() + args.argv(audit.inquiry_path)
    if any("\n" in part or "\r" in part for part in [*argv, str(workdir), str(home)]):
        raise BadInput("a path or option holds a line break, which a schedule entry cannot carry")
    notes = []
    if args.options.against == "latest":
        baseline = audit_store(audit).latest(audit.inquiry_path)
        if baseline is None:
            notes.append(f"no finished run of {audit.describe()} yet: each re-check exits 2 until "
                         "`collapse-audit run` has finished one")
    else:
        _, baseline = find_run(args.options.against, inquiry=args.options.inquiry)
    if args.options.llm == "openai" or (args.options.llm in (None, "auto") and baseline is not None and baseline.run.llm == "openai"):
        notes.append("the entry carries no OPENAI_API_KEY or OPENAI_BASE_URL: add them to the schedule's environment "
                     "yourself for its re-checks to use the model")
    return Job(key, audit.describe(), workdir, home, argv, notes)


# --- crontab ----------------------------------------------------------------------------------


def crontab_command() -> list[str] | None:
    override = os.environ.get(CRONTAB_ENV)
    if override:
        return shlex.split(override)
    found = shutil.which("crontab")
    return [found] if found else None


def read_crontab(command: list[str]) -> list[str]:
    try:
        done = subprocess.run([*command, "-l"], capture_output=True, text=True, timeout=30)
    except OSError as error:
        raise BadInput(f"cannot run `{shlex.join(command)} -l`: {error.strerror or error}") from None
    if done.returncode != 0:
        if "no crontab" in done.stderr.lower():
            return []
        raise BadInput(f"`{shlex.join(command)} -l` failed: {_first_line(done.stderr) or f'exit {done.returncode}'}")
    return done.stdout.splitlines()


def write_crontab(command: list[str], lines: list[str]) -> None:
    text = "".join(f"{line}\n" for line in lines)
    try:
        done = subprocess.run([*command, "-"], input=text, capture_output=True, text=True, timeout=30)
    except OSError as error:
        raise BadInput(f"cannot run `{shlex.join(command)} -`: {error.strerror or error}") from None
    if done.returncode != 0:
        raise BadInput(f"`{shlex.join(command)} -` refused the new table: {_first_line(done.stderr) or f'exit {done.returncode}'}")


def _first_line(text: str) -> str:
    return next((line.strip() for line in text.splitlines() if line.strip()), "")


def cron_line(job: Job, when: str) -> str:
    command = (f"cd {shlex.quote(str(job.workdir))} && COLLAPSE_AUDIT_HOME={shlex.quote(str(job.home))} "
               f"{shlex.join(job.argv)} >> {shlex.quote(str(job.log))} 2>&1")
    return f"{when} {command.replace('%', chr(92) + '%')}  {TAG} {job.key}"


def tagged(line: str) -> str | None:
    """The audit key of a crontab line this tool wrote, else None."""
    at = line.find(f"  {TAG} ")
    return line[at + len(TAG) + 3:] if at >= 0 and not line.lstrip().startswith("#") else None


# --- systemd ----------------------------------------------------------------------------------


def unit_dir() -> Path:
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "systemd" / "user"


def unit_paths() -> tuple[Path, Path]:
    return unit_dir() / f"{UNIT}.service", unit_dir() / f"{UNIT}.timer"


def _systemd_arg(arg: str) -> str:
    arg = arg.replace("%", "%%").replace("$", "$$")
    return f'"{arg.replace(chr(92), chr(92) * 2).replace(chr(34), chr(92) + chr(34))}"' if re.search(r"[\s\"'\\;]", arg) else arg


def unit_files(job: Job, calendar: str, when: str) -> dict[Path, str]:
    service, timer = unit_paths()
    head = f"{TAG} {job.key}\n# Written by `collapse-audit schedule install`; `collapse-audit schedule remove` deletes it.\n"
    exec_start = " ".join(_systemd_arg(a) for a in job.argv)
    home = str(job.home).replace("%", "%%").replace("$", "$$").replace("\\", "\\\\").replace('"', '\\"')
    return {
        service: head + (
            "[Unit]\n"
            f"Description=collapse-audit re-check of {job.describe}\n\n"
            "[Service]\n"
            "Type=oneshot\n"
            f"WorkingDirectory={str(job.workdir).replace('%', '%%')}\n"
            f'Environment="COLLAPSE_AUDIT_HOME={home}"\n'
            f"ExecStart={exec_start}\n"
        ),
        timer: head + (
            "[Unit]\n"
            f"Description=collapse-audit re-check of {job.describe}, {when}\n\n"
            "[Timer]\n"
            f"OnCalendar={calendar}\n"
            "Persistent=true\n\n"
            "[Install]\n"
            "WantedBy=timers.target\n"
        ),
    }


def unit_key(path: Path) -> str | None:
    try:
        first = path.read_text(encoding="utf-8").splitlines()[:1]
    except (OSError, UnicodeDecodeError):
        return None
    return first[0][len(TAG) + 1:] if first and first[0].startswith(f"{TAG} ") else ""


# --- install, list, remove --------------------------------------------------------------------


def install(job: Job, *, every: Every | None, cron: str | None, systemd: bool, dry_run: bool,
            now: datetime | None = None) -> list[str]:
    """Write (or, dry, only show) the schedule; the lines to print, saying what goes where."""
    now = now or datetime.now().astimezone()
    expr = cron if cron is not None else every_to_cron(every or Every(7, "d"), now)
    when = f"cron {expr!r}" if cron is not None else (every or Every(7, "d")).words()
    verb = "would write" if dry_run else "wrote"
    out: list[str] = []
    if systemd:
        files = unit_files(job, cron_to_calendar(expr), when)
        for path, text in files.items():
            replaced = " (replacing the one there)" if path.exists() else ""
            out += [f"{verb} {path}{replaced}:", *text.rstrip("\n").splitlines(), ""]
            if not dry_run:
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_text(text, encoding="utf-8")
        timer = f"{UNIT}.timer"
        out.append(f"{'then enable' if dry_run else 'enable'} it: systemctl --user daemon-reload && "
                   f"systemctl --user enable --now {timer}  (output: journalctl --user -u {UNIT})")
    else:
        command = crontab_command()
        if command is None:
            raise BadInput(f"no `crontab` command on this machine: pass --systemd for a systemd user timer, "
                           f"or set {CRONTAB_ENV} to a crontab program")
        lines = read_crontab(command)
        line = cron_line(job, expr)
        old = [existing for existing in lines if tagged(existing) == job.key]
        out += [f"{'would replace' if dry_run else 'replaced'} in the crontab: {existing}" for existing in old]
        out.append(f"{'would add' if dry_run else 'added'} to the crontab ({shlex.join(command)} -): {line}")
        out.append(f"re-checks of {job.describe} run {when}; their output goes to {job.log}")
        if not dry_run:
            write_crontab(command, [existing for existing in lines if tagged(existing) != job.key] + [line])
    out += [f"note: {note}" for note in job.notes]
    if dry_run:
        out.append("dry run: nothing was written")
    return out


@dataclass
class Installed:
    crontab: list[str] = field(default_factory=list)  # tagged lines
    crontab_problem: str | None = None  # why the crontab was not read
    units: list[tuple[Path, str]] = field(default_factory=list)  # (unit file, audit key)


def installed() -> Installed:
    found = Installed()
    command = crontab_command()
    if command is None:
        found.crontab_problem = "no `crontab` command"
    else:
        try:
            found.crontab = [line for line in read_crontab(command) if tagged(line) is not None]
        except BadInput as error:
            found.crontab_problem = str(error)
    for path in unit_paths():
        key = unit_key(path) if path.is_file() else None
        if key is not None:
            found.units.append((path, key))
    return found


def list_lines() -> list[str]:
    found = installed()
    out = [f"crontab: {line}" for line in found.crontab]
    for path, key in found.units:
        detail = ""
        text = path.read_text(encoding="utf-8")
        setting = re.search(r"^(OnCalendar|ExecStart)=(.*)$", text, re.MULTILINE)
        if setting:
            detail = f": {setting.group(1)}={setting.group(2)}"
        out.append(f"systemd: {path} ({key or 'untagged'}){detail}")
    if not out:
        out.append("no collapse-audit schedule installed" + (f" (crontab not read: {found.crontab_problem})"
                                                             if found.crontab_problem else ""))
    elif found.crontab_problem and "no `crontab`" not in found.crontab_problem:
        out.append(f"crontab not read: {found.crontab_problem}")
    return out


def remove(key: str | None) -> list[str]:
    """Remove the entries of the audit `key` (None: every collapse-audit entry); idempotent."""
    found = installed()
    out: list[str] = []
    command = crontab_command()
    drop = [line for line in found.crontab if key is None or tagged(line) == key]
    if drop and command is not None:
        write_crontab(command, [line for line in read_crontab(command) if line not in drop])
        out += [f"removed from the crontab: {line}" for line in drop]
    units = [(path, k) for path, k in found.units if key is None or k == key]
    if units:
        wants = unit_dir() / "timers.target.wants" / f"{UNIT}.timer"
        for path in [p for p, _ in units] + ([wants] if wants.is_symlink() or wants.exists() else []):
            path.unlink(missing_ok=True)
            out.append(f"removed {path}")
        out.append(f"if the timer was running: systemctl --user stop {UNIT}.timer && systemctl --user daemon-reload")
    if not out:
        others = len(found.crontab) + len(found.units)
        out.append(("no collapse-audit schedule installed" if key is None or not others else
                    f"no schedule of {key} installed ({others} of other audits: `collapse-audit schedule list`; "
                    "--all removes every one)") + "; nothing removed")
    return out


# --- the in-process loop ----------------------------------------------------------------------


@dataclass
class Outcome:
    run_id: str | None
    exit_code: int
    changed: bool | None = None
    detail: str = ""  # the what-changed summary, or the error

    def line(self, at: datetime) -> str:
        if self.exit_code in (EXIT_OK, EXIT_FINDINGS):
            state = f"{'changed' if self.changed else 'unchanged'}: {self.detail}"
        else:
            state = f"failed: {self.detail}"
        return f"{at:%Y-%m-%dT%H:%M:%SZ} run {self.run_id or '-'} exit {self.exit_code} {state}"


def recheck_once(args: RecheckArgs) -> Outcome:
    """One re-check as `recheck --fail-on-change` would run it: 0 unchanged, 1 changed, else failed."""
    from agent.runner import plan_recheck, run_audit

    try:
        planned = plan_recheck(args.options)
    except BadInput as error:
        return Outcome(None, EXIT_BAD_INPUT, detail=str(error))
    run_id = planned.config.run_id
    try:
        result = run_audit(planned.config, store=planned.store, baseline=planned.baseline, wait=args.wait)
    except KeyboardInterrupt:  # a second SIGINT/SIGTERM: the run is abandoned, checkpointed, resumable
        why = f"abandoned on a second signal; resume it with `collapse-audit run --resume {run_id}`"
        record = planned.store.find(run_id)
        if record is not None and record.status != "finished":  # (a run no process holds reads as failed: agent/store.py)
            planned.store.finish(record, "failed", error=why)
        return Outcome(run_id, EXIT_RUN_FAILED, detail=why)
    except Exception as error:  # noqa: BLE001 — a schedule outlives any one run's failure
        return Outcome(run_id, EXIT_RUN_FAILED, detail=f"{type(error).__name__}: {error}")
    if result.exit_code != EXIT_OK:
        return Outcome(result.run_id, result.exit_code, detail=result.error or "the run failed")
    summary = result.what_changed.summary if result.what_changed else ""
    return Outcome(result.run_id, EXIT_FINDINGS if result.changed else EXIT_OK, result.changed, summary)


@dataclass
class Tally:
    runs: int = 0
    changed: int = 0
    unchanged: int = 0
    failed: int = 0

    def summary(self, why: str, log: Path) -> str:
        return (f"schedule stopped ({why}) after {self.runs} run{'s' if self.runs != 1 else ''}: {self.changed} changed, "
                f"{self.unchanged} unchanged, {self.failed} failed; log in {log}")


class ScheduleLog:
    """One line per run, to stderr and appended to $COLLAPSE_AUDIT_HOME/schedule.log."""

    def __init__(self, path: Path, echo: Callable[[str], None] | None = None) -> None:
        self.path = path
        self.echo = echo or (lambda line: print(line, file=sys.stderr, flush=True))

    def __call__(self, line: str) -> None:
        self.echo(line)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self.path.open("a", encoding="utf-8") as out:
            out.write(line + "\n")


def run_loop(args: RecheckArgs, every: Every, *, max_runs: int | None, log: ScheduleLog,
             say: Callable[[str], None] | None = None) -> tuple[int, str]:
    """Re-check now, then every `every`, until `max_runs` or SIGINT/SIGTERM; (exit code, summary line).

    A first run refused as bad input ends the loop at once, unlogged (exit 2 and its one line: the
    options are wrong); any later failure is logged and the loop goes on."""
    say = say or (lambda text: print(text, file=sys.stderr, flush=True))
    tally, state = Tally(), {"stop": None, "running": False}

    def on_signal(signum: int, frame) -> None:
        name = signal.Signals(signum).name
        if state["stop"] is not None and state["running"]:
            raise KeyboardInterrupt  # a second signal: abandon the run (it stays resumable)
        state["stop"] = name
        if state["running"]:
            say(f"{name}: stopping after the current run (again to abandon it)")

    previous = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    why = "--max-runs reached"
    try:
        while state["stop"] is None:
            started = time.monotonic()
            state["running"] = True
            try:
                outcome = recheck_once(args)
            except KeyboardInterrupt:  # while planning: nothing was started
                outcome = Outcome(None, EXIT_RUN_FAILED, detail="abandoned on a second signal before it started")
            finally:
                state["running"] = False
            if tally.runs == 0 and outcome.exit_code == EXIT_BAD_INPUT:
                return EXIT_BAD_INPUT, outcome.detail  # the options are wrong: every run would be refused alike
            log(outcome.line(datetime.now(timezone.utc)))
            tally.runs += 1
            if outcome.exit_code in (EXIT_OK, EXIT_FINDINGS):
                tally.changed += bool(outcome.changed)
                tally.unchanged += not outcome.changed
            else:
                tally.failed += 1
            if max_runs is not None and tally.runs >= max_runs:
                break
            deadline = started + every.seconds
            while state["stop"] is None and (left := deadline - time.monotonic()) > 0:
                time.sleep(min(left, 0.2))
        if state["stop"] is not None:
            why = state["stop"]
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    summary = tally.summary(why, log.path)
    log(summary)
    return EXIT_OK, summary

"""Scheduled re-checks (`collapse-audit schedule install|list|remove|run`, agent/schedule.py) and the
run lock that keeps two runs of one audit apart (agent/runlock.py).

The crontab is a fake (COLLAPSE_AUDIT_CRONTAB): a shell script that keeps the table in a file.
systemd units are written under a temporary HOME / XDG_CONFIG_HOME and never enabled. Runs use the
loopback arXiv and the lexical embedder, as tests/test_recheck.py does.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import signal
import subprocess
import sys
import threading
import time
from datetime import datetime
from pathlib import Path

import pytest

from agent.runlock import RunBusy, RunLock, holder
from agent.runner import BadInput
from agent.schedule import (
    Every,
    cron_to_calendar,
    every_to_cron,
    parse_cron,
    parse_every,
)
from tests.arxiv_server import ArxivServer, snapshot_papers
from tests.subprocess_cli import Command, Result, run_cli, start

INQUIRY = Path(__file__).parent / "data" / "inquiries" / "recursive_training.md"
LEXICAL = {"COLLAPSE_AUDIT_EMBEDDINGS": "lexical"}
EXE = str(Path(sys.executable).absolute().with_name("collapse-audit"))
FAKE_CRONTAB = """#!/bin/sh
# crontab -l / crontab - , the table kept in $FAKE_CRONTAB_TABLE
table="${FAKE_CRONTAB_TABLE:?}"
case "$1" in
  -l) if [ -f "$table" ]; then cat "$table"; else echo "no crontab for $(id -un)" >&2; exit 1; fi ;;
  -) cat > "$table" ;;
  *) echo "fake crontab: unsupported $*" >&2; exit 2 ;;
esac
"""


def error_lines(result: Result) -> list[str]:
    return [line for line in result.stderr.splitlines() if line.strip()]


@pytest.fixture
def project(tmp_path: Path) -> Path:
    directory = tmp_path / "proj"
    assert run_cli("init", str(directory), "--inquiry", str(INQUIRY), home=tmp_path / "home").returncode == 0
    return directory


@pytest.fixture
def cron(tmp_path: Path) -> dict[str, str]:
    script = tmp_path / "fake-crontab"
    script.write_text(FAKE_CRONTAB)
    script.chmod(0o755)
    return {"COLLAPSE_AUDIT_CRONTAB": str(script), "FAKE_CRONTAB_TABLE": str(tmp_path / "crontab.table"),
            "HOME": str(tmp_path / "user"), "XDG_CONFIG_HOME": ""}


# --- install, list, remove -------------------------------------------------------------------


def test_install_list_and_remove_a_crontab_entry(tmp_path, project, cron):
    home, table = tmp_path / "home", Path(cron["FAKE_CRONTAB_TABLE"])

    def cli(*args: str) -> Result:
        return run_cli("schedule", *args, home=home, cwd=project, env=cron, timeout=60)

    dry = cli("install", "--every", "7d", "--dry-run")
    assert dry.returncode == 0, dry.stderr
    assert "would add to the crontab" in dry.stdout and "dry run: nothing was written" in dry.stdout
    assert not table.exists(), "--dry-run writes nothing"

    table.write_text("0 1 * * * echo keep me\n")  # the user's own entry stays
    done = cli("install", "--every", "7d", "--source", "arxiv")
    assert done.returncode == 0, done.stderr
    keep, line = table.read_text().splitlines()
    assert keep == "0 1 * * * echo keep me"
    assert f"added to the crontab ({cron['COLLAPSE_AUDIT_CRONTAB']} -): {line}" in done.stdout, "prints what it writes"
    assert "no finished run" in done.stdout, "warns that there is nothing to re-check yet"
    fields, command = line.split(" ", 5)[:5], line.split(" ", 5)[5]
    assert fields[2:4] == ["*", "*"] and fields[4] == str((datetime.now().weekday() + 1) % 7), "7d: weekly"
    command, tag = command.split("  # ")
    assert tag == f"collapse-audit project {project}"
    assert shlex.split(command) == [
        "cd", str(project), "&&", f"COLLAPSE_AUDIT_HOME={home}", EXE, "recheck", "--fail-on-change",
        "--inquiry", str(project / "inquiry.md"), "--source", "arxiv", ">>", str(home / "recheck.log"), "2>&1"]
    assert os.access(EXE, os.X_OK) and Path(EXE).is_absolute()

    again = cli("install", "--cron", "0 6 * * 1-5")  # one entry per audit: replaced
    assert again.returncode == 0, again.stderr
    keep, line = table.read_text().splitlines()
    assert line.startswith("0 6 * * 1-5 cd ") and "replaced in the crontab" in again.stdout

    listed = cli("list")
    assert listed.returncode == 0 and listed.stdout.splitlines() == [f"crontab: {line}"], listed.stdout

    removed = cli("remove")
    assert removed.returncode == 0 and removed.stdout.splitlines() == [f"removed from the crontab: {line}"]
    assert table.read_text() == "0 1 * * * echo keep me\n"
    twice = cli("remove")
    assert twice.returncode == 0 and "nothing removed" in twice.stdout, "removing is idempotent"
    assert "no collapse-audit schedule installed" in cli("list").stdout


def test_systemd_units_are_written_under_home_with_the_recheck_command(tmp_path, project, cron):
    home, user = tmp_path / "home", Path(cron["HOME"])
    units = user / ".config" / "systemd" / "user"

    def cli(*args: str, **env: str) -> Result:
        return run_cli("schedule", *args, home=home, cwd=project, env={**cron, **env}, timeout=60)

    dry = cli("install", "--systemd", "--every", "12h", "--dry-run")
    assert dry.returncode == 0 and f"would write {units / 'collapse-audit-recheck.service'}" in dry.stdout, dry.stderr
    assert not user.exists(), "--dry-run writes nothing"

    done = cli("install", "--systemd", "--every", "12h", "--llm", "none")
    assert done.returncode == 0, done.stderr
    service, timer = (units / "collapse-audit-recheck.service").read_text(), (units / "collapse-audit-recheck.timer").read_text()
    for name, text in (("service", service), ("timer", timer)):
        shown = f"wrote {units / f'collapse-audit-recheck.{name}'}:\n{text}"
        assert shown in done.stdout, "prints exactly what it writes, and where"
    settings = dict(line.split("=", 1) for line in service.splitlines() if "=" in line and not line.startswith("#"))
    assert shlex.split(settings["ExecStart"]) == [EXE, "recheck", "--fail-on-change", "--inquiry",
                                                  str(project / "inquiry.md"), "--llm", "none"]
    assert settings["WorkingDirectory"] == str(project) and settings["Type"] == "oneshot"
    assert settings["Environment"] == f'"COLLAPSE_AUDIT_HOME={home}"'
    calendar = next(line.split("=", 1)[1] for line in timer.splitlines() if line.startswith("OnCalendar="))
    assert calendar.startswith("*-*-* 0/12:") and "Persistent=true" in timer and "WantedBy=timers.target" in timer
    if shutil.which("systemd-analyze"):
        assert subprocess.run(["systemd-analyze", "calendar", calendar], capture_output=True).returncode == 0
    assert "systemctl --user enable --now collapse-audit-recheck.timer" in done.stdout

    listed = cli("list")
    assert listed.returncode == 0 and listed.stdout.count("systemd: ") == 2 and "OnCalendar=" in listed.stdout
    (units / "timers.target.wants").mkdir()
    (units / "timers.target.wants" / "collapse-audit-recheck.timer").symlink_to(units / "collapse-audit-recheck.timer")
    removed = cli("remove")
    assert removed.returncode == 0 and removed.stdout.count("removed ") == 3, removed.stdout
    assert not any(units.rglob("collapse-audit-recheck*"))
    assert "nothing removed" in cli("remove").stdout

    xdg = tmp_path / "xdg"
    assert cli("install", "--systemd", "--cron", "@weekly", XDG_CONFIG_HOME=str(xdg)).returncode == 0
    assert "OnCalendar=Sun *-*-* 00:00:00" in (xdg / "systemd" / "user" / "collapse-audit-recheck.timer").read_text()


@pytest.mark.parametrize("args, says", [
    (["install", "--every", "0d"], "--every '0d': give a whole number above 0"),
    (["install", "--every", "weekly"], "--every 'weekly'"),
    (["install", "--every", "10d"], "cannot be kept exactly"),
    (["install", "--every", "30s"], "seconds are for `schedule run` only"),
    (["install", "--cron", "0 6 * *"], "has 4 fields"),
    (["install", "--cron", "61 * * * *"], "minute '61': 61 is outside 0-59"),
    (["install", "--cron", "0 6 * * fri-mon"], "runs backwards"),
    (["install", "--every", "1d", "--cron", "@daily"], "not both"),
    (["install", "--systemd", "--cron", "0 6 1 * 1"], "OR the weekday"),
    (["run", "--every", "7 days"], "--every '7 days'"),
    (["run", "--max-runs", "0"], "--max-runs 0"),
])
def test_bad_schedules_are_one_line_and_exit_2(tmp_path, cron, args, says):
    result = run_cli("schedule", *args, home=tmp_path / "home", cwd=tmp_path, env=cron, timeout=60)
    assert result.returncode == 2, (result.stdout, result.stderr)
    [line] = error_lines(result)
    assert says in line and "Traceback" not in result.stderr
    assert not Path(cron["FAKE_CRONTAB_TABLE"]).exists() and not Path(cron["HOME"]).exists()


def test_intervals_and_cron_expressions():
    monday_3_43 = datetime(2026, 11, 30, 3, 43)
    assert parse_every("7d") == Every(7, "d") and parse_every(" 2W ").seconds == 14 * 86400 and parse_every("1s").seconds == 1
    assert [every_to_cron(parse_every(e), monday_3_43) for e in ("7d", "1w", "1d", "6h", "1h", "24h", "15m")] == [
        "43 3 * * 1", "43 3 * * 1", "43 3 * * *", "43 */6 * * *", "43 * * * *", "43 3 * * *", "*/15 * * * *"]
    for bad in ("5h", "2w", "7m", "90s"):
        with pytest.raises(BadInput):
            every_to_cron(parse_every(bad), monday_3_43)
    assert parse_cron("  0 6  * * Mon-Fri ") == "0 6 * * Mon-Fri" and parse_cron("@Daily") == "@daily"
    for bad in ("* * * * * *", "0 24 * * *", "0 6 0 * *", "0 6 * 13 *", "0 6 * * 8", "*/0 * * * *", "5/2 * * * *", "a b c d e"):
        with pytest.raises(BadInput, match="^--cron"):
            parse_cron(bad)
    assert cron_to_calendar("0 6 * * 1-5") == "Mon..Fri *-*-* 06:00:00"
    assert cron_to_calendar("*/15 6-18 * jan,jul *") == "*-1,7-* 06..18:0/15:00"
    assert cron_to_calendar("@monthly") == "*-*-1 00:00:00"
    for bad in ("0 6 1 * 1", "0 6 * * */2", "0 1-10/2 * * *"):
        with pytest.raises(BadInput, match="--systemd"):
            cron_to_calendar(bad)


# --- the run lock ----------------------------------------------------------------------------


def test_the_run_lock_refuses_waits_and_names_its_holder(tmp_path):
    first = RunLock(tmp_path, "20260101-000000-aaaa")
    first.acquire()
    assert holder(tmp_path)["run_id"] == "20260101-000000-aaaa" and holder(tmp_path)["pid"] == os.getpid()
    with pytest.raises(RunBusy, match=rf"^run 20260101-000000-aaaa is already running \(pid {os.getpid()}\)$"):
        RunLock(tmp_path, "20260101-000000-aaaa").acquire()
    started = time.monotonic()
    with pytest.raises(RunBusy, match=r"^another run \(20260101-000000-aaaa, pid \d+\) .* \(waited 0.3 s\)"):
        RunLock(tmp_path, "20260101-000001-bbbb").acquire(wait=0.3)
    assert 0.3 <= time.monotonic() - started < 2
    threading.Timer(0.3, first.release).start()
    second = RunLock(tmp_path, "20260101-000001-bbbb")
    second.acquire(wait=10)  # the first lets go while the second waits
    assert holder(tmp_path)["run_id"] == "20260101-000001-bbbb"
    second.release()
    assert holder(tmp_path) is None, "a released lock names no holder"


# --- runs: the loop, and two runs at once ----------------------------------------------------


@pytest.fixture(scope="module")
def audited(tmp_path_factory: pytest.TempPathFactory):
    """A project with one finished run against a loopback arXiv that stays up for the module."""
    root = tmp_path_factory.mktemp("scheduled")
    home, project = root / "home", root / "proj"
    assert run_cli("init", str(project), "--inquiry", str(INQUIRY), home=home).returncode == 0
    with ArxivServer(snapshot_papers(), lifetime=600) as server:
        first = run_cli("run", "--source", "arxiv", "--arxiv-url", server.url, "--sim-budget", "none",
                        home=home, cwd=project, env=LEXICAL, timeout=300)
        assert first.returncode == 0, first.stderr
        yield home, project, server


def cli_process(*args: str, home: Path, cwd: Path, env: dict[str, str] | None = None) -> Command:
    """`collapse-audit ARGS` in the background, with the lexical embedder."""
    return start(*args, home=home, cwd=cwd, env={**LEXICAL, **(env or {})})


def wait_for(condition, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if value := condition():
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


def run_lines(log: Path) -> list[str]:
    return [line for line in log.read_text().splitlines() if " run " in line] if log.exists() else []


def test_schedule_run_rechecks_in_process_and_logs_one_line_per_run(audited):
    home, project, _ = audited
    log = home / "schedule.log"
    log.unlink(missing_ok=True)
    result = run_cli("schedule", "run", "--every", "1s", "--max-runs", "2", home=home, cwd=project, env=LEXICAL, timeout=180)
    assert result.returncode == 0, result.stderr
    lines = log.read_text().splitlines()
    assert len(lines) == 3 and lines[-1].startswith("schedule stopped (--max-runs reached) after 2 runs: ")
    assert lines[-1].endswith(f"0 failed; log in {log}")
    assert error_lines(result) == lines, "the same lines on stderr"
    runs = json.loads(run_cli("runs", "list", "--format", "json", home=home, cwd=project, timeout=60).stdout)
    for line, run in zip(lines[:2], runs[1::-1]):  # oldest of the two first
        stamp, word, run_id, exit_word, code, state = line.split(" ", 5)
        assert (word, run_id, exit_word) == ("run", run["run_id"], "exit") and run["status"] == "finished"
        datetime.strptime(stamp, "%Y-%m-%dT%H:%M:%SZ")
        assert (code, state.split(":")[0]) in (("0", "unchanged"), ("1", "changed"))
        assert state.split(":")[0] == ("changed" if run["changed"] else "unchanged")
    assert runs[0]["against"] == runs[1]["run_id"], "each re-check compares with the one before"


def test_a_failed_run_is_logged_and_the_loop_goes_on_until_sigterm(audited):
    home, project, _ = audited
    log = home / "schedule.log"
    log.unlink(missing_ok=True)
    unreachable = {"OPENAI_BASE_URL": "http://127.0.0.1:9/v1", "OPENAI_API_KEY": "test"}
    loop = cli_process("schedule", "run", "--every", "1s", "--llm", "openai", home=home, cwd=project, env=unreachable)
    lines = wait_for(lambda: len(run_lines(log)) >= 2 and run_lines(log), 120, "two failed runs in the log")
    os.kill(loop.pid, signal.SIGTERM)
    stopped = loop.wait(60)
    err = stopped.stderr
    assert stopped.returncode == 0, err
    assert all(" exit 3 failed: cannot reach the LLM endpoint" in line for line in lines[:2]), lines
    summary = err.strip().splitlines()[-1]
    assert summary.startswith("schedule stopped (SIGTERM) after ") and " 0 changed, 0 unchanged, " in summary
    assert summary == log.read_text().splitlines()[-1]


def test_two_runs_of_one_project_never_run_at_once(audited):
    home, project, server = audited
    runs_dir = project / "runs"
    server.slow_s, server.always = 1.0, "slow"  # every arXiv answer takes a second: the first run holds the lock
    try:
        first = cli_process("run", "--source", "arxiv", "--arxiv-url", server.url, "--sim-budget", "none",
                            home=home, cwd=project)
        held = wait_for(lambda: (h := holder(runs_dir)) and h.get("pid") == first.pid and h, 60, "the first run's lock")
        before = sorted(p.name for p in runs_dir.iterdir() if p.is_dir())
        second = run_cli("run", "--source", "arxiv", "--arxiv-url", server.url, "--sim-budget", "none", "--llm", "none",
                         home=home, cwd=project, env=LEXICAL, timeout=60)
        resumed = run_cli("run", "--resume", held["run_id"], home=home, cwd=project, env=LEXICAL, timeout=60)
        assert holder(runs_dir) == held and first.running(), "the first run held the lock throughout"
    finally:
        server.always = None
    finished = first.wait(120)
    assert finished.returncode == 0, finished

    assert second.returncode == 5, second.stderr
    [line] = error_lines(second)
    assert line.startswith(f"error: another run ({held['run_id']}, pid {first.pid}) is using the run store {runs_dir}")
    assert "--wait SECONDS" in line
    assert resumed.returncode == 5, resumed.stderr
    assert error_lines(resumed) == [f"error: run {held['run_id']} is already running (pid {first.pid})"]
    assert sorted(p.name for p in runs_dir.iterdir() if p.is_dir()) == before, "a refused run leaves neither a folder nor a record"
    statuses = {r["run_id"]: r["status"] for r in json.loads(
        run_cli("runs", "list", "--format", "json", home=home, cwd=project, timeout=60).stdout)}
    assert statuses[held["run_id"]] == "finished" and "running" not in statuses.values()
    assert holder(runs_dir) is None, "the lock is let go when the run ends"

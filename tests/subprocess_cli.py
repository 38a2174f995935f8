"""Run `collapse-audit` the way a user does, in its own process, without paying its imports each time.

Every command runs in a fresh process forked from a server process that has already imported the
agent (multiprocessing's forkserver, started once per test process with `PRELOAD`). The child sets
its own environment, working directory, stdout/stderr files and resource limits, then calls
`agent.cli.app` — the console script's entry point (tests/faults/test_guard.py
`test_the_cli_entry_point_is_what_the_harness_runs` holds the two together) — and exits with its
status. An uncaught exception prints its traceback and exits 1, as the interpreter would. So a
command costs its own work, not the seconds of importing torch and LangGraph it would pay from a
cold interpreter, and a signal (SIGKILL, SIGINT, SIGTERM) reaches a real process.

    result = run_cli("run", "--out", str(out), home=home)   # returncode, stdout, stderr
    proc = start("schedule", "run", home=home)             # a running command: pid, stderr so far,
    proc.interrupt()                                        # kill(), interrupt() (Ctrl-C), wait()

Tests of what a cold start costs (bad input refused in under a second, the console script itself)
start the interpreter with subprocess instead.
"""

from __future__ import annotations

import atexit
import multiprocessing
import os
import re
import resource
import shutil
import signal
import sys
import tempfile
import time
import traceback
from dataclasses import dataclass
from pathlib import Path

# What a command's process imports, loaded once in the fork server.
PRELOAD = ["agent.cli", "agent.runner", "agent.graph", "agent.services", "agent.llm_analyst", "agent.store",
           "tools.llm", "tools.arxiv_api", "tools.sources", "simulations.sweep", "simulations.plots"]
_CONTEXT = multiprocessing.get_context("forkserver")
_CONTEXT.set_forkserver_preload(PRELOAD)
# Where the commands' stdout and stderr go (the data dir may be where nothing can be written).
_LOGS = Path(tempfile.mkdtemp(prefix="collapse-audit-cli-"))
atexit.register(shutil.rmtree, _LOGS, ignore_errors=True)
# The CLI's stage lines (agent/cli.py `_ConsoleProgress.stage`), by graph node.
STAGE_LINE = re.compile(r"^✓ .+ \((\w+), [\d.]+s\)$", re.M)


def _child(args: list[str], env: dict[str, str], cwd: str, stdout: str, stderr: str, fsize: int | None) -> None:
    """The command's process: what `collapse-audit ARGS` does, with the given environment and limits."""
    os.environ.clear()
    os.environ.update(env)
    os.chdir(cwd)
    for fd, path in ((1, stdout), (2, stderr)):
        opened = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        os.dup2(opened, fd)
        os.close(opened)
    if fsize is not None:
        # No file may grow past `fsize` bytes: a write past it fails with EFBIG, as one fails with
        # ENOSPC on a full disk (SIGXFSZ ignored, else the kernel kills the process instead).
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (fsize, fsize))
    signal.signal(signal.SIGINT, signal.default_int_handler)  # Ctrl-C as in a terminal, whatever the server had
    code = 1
    try:
        import torch

        torch.set_num_threads(1)  # as tests/conftest.py: small tensors, a shared 2-core machine
        from agent.cli import app

        app(args=args, prog_name="collapse-audit")
        code = 0
    except SystemExit as exit:
        if isinstance(exit.code, int) or exit.code is None:
            code = exit.code or 0
        else:
            print(exit.code, file=sys.stderr)
    except BaseException:  # noqa: BLE001 — what the interpreter does with an uncaught exception
        traceback.print_exc()
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
    os._exit(code)


@dataclass
class Result:
    args: tuple[str, ...]
    returncode: int  # -N: killed by signal N
    stdout: str
    stderr: str

    def lines(self) -> list[str]:
        """stderr's non-blank lines."""
        return [line for line in self.stderr.splitlines() if line.strip()]

    def error_lines(self) -> list[str]:
        return [line for line in self.lines() if line.startswith("error:")]

    def stages(self) -> list[str]:
        """The stages this process reported finished, in order."""
        return STAGE_LINE.findall(self.stderr)

    def __str__(self) -> str:
        return f"collapse-audit {' '.join(self.args)} -> {self.returncode}\n{self.stderr}{self.stdout}"


class Command:
    """A `collapse-audit` process that is running."""

    def __init__(self, args: tuple[str, ...], environment: dict[str, str], cwd: Path, fsize: int | None) -> None:
        self.args = args
        stamp = f"{time.monotonic_ns()}"
        self.stdout_path, self.stderr_path = _LOGS / f"{stamp}.out", _LOGS / f"{stamp}.err"
        self.process = _CONTEXT.Process(target=_child, args=(list(args), environment, str(cwd),
                                                             str(self.stdout_path), str(self.stderr_path), fsize))
        self.process.start()
        _started.append(self)

    @property
    def pid(self) -> int:
        return self.process.pid

    @property
    def stderr(self) -> str:
        """What it has written to stderr so far."""
        try:
            return self.stderr_path.read_text(encoding="utf-8", errors="replace")
        except FileNotFoundError:
            return ""

    def running(self) -> bool:
        return self.process.is_alive()

    def kill(self) -> Result:
        """SIGKILL, as `kill -9` or the OOM killer: no handler, no cleanup."""
        os.kill(self.pid, signal.SIGKILL)
        return self.wait(30)

    def interrupt(self, timeout: float = 30) -> Result:
        """SIGINT, as Ctrl-C in the terminal."""
        os.kill(self.pid, signal.SIGINT)
        return self.wait(timeout)

    def wait(self, timeout: float = 120) -> Result:
        self.process.join(timeout)
        if self.process.exitcode is None:
            os.kill(self.pid, signal.SIGKILL)
            self.process.join(10)
            raise AssertionError(f"collapse-audit {' '.join(self.args)} still running after {timeout} s:\n{self.stderr}")
        return Result(self.args, self.process.exitcode, self.stdout_path.read_text(encoding="utf-8", errors="replace"),
                      self.stderr)


_started: list[Command] = []


def stop_all() -> None:
    """Kill every command a test started and left running (a test that failed half way)."""
    while _started:
        command = _started.pop()
        if command.running():
            os.kill(command.pid, signal.SIGKILL)
        command.process.join(10)


def start(*args: str, home: Path, cwd: Path | None = None, env: dict[str, str] | None = None,
          fsize: int | None = None) -> Command:
    """`collapse-audit ARGS` started in its own process, in `cwd` (default: this process's). The
    environment is this one's without OPENAI_* (`--llm auto` would otherwise go online on a
    developer's machine with a key set; a test that wants an endpoint passes them in `env`), `env`
    on top, and the data dir `home`; `fsize`: no file may grow past that many bytes."""
    inherited = {k: v for k, v in os.environ.items() if not k.startswith("OPENAI_")}
    environment = {**inherited, **(env or {}), "COLLAPSE_AUDIT_HOME": str(home)}
    return Command(args, environment, Path(cwd or os.getcwd()), fsize)


def run_cli(*args: str, home: Path, cwd: Path | None = None, env: dict[str, str] | None = None,
            fsize: int | None = None, timeout: float = 300) -> Result:
    """`collapse-audit ARGS`, run to its end (see `start`)."""
    return start(*args, home=home, cwd=cwd, env=env, fsize=fsize).wait(timeout)

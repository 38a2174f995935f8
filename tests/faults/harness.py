"""Running `collapse-audit` the way a user does, in its own process, without paying its imports each time.

Every command runs in a fresh process forked from a server process that has already imported the
agent (multiprocessing's forkserver, started once per test session with `PRELOAD`). The child sets
its own environment, working directory, stdout/stderr files and resource limits, then calls
`agent.cli.app` — the console script's entry point (`test_the_cli_entry_point_is_what_the_harness_runs`
holds the two together) — and exits with its status. An uncaught exception prints its traceback and
exits 1, as the interpreter would. So a run costs its own work, not the ~10 s of importing torch and
LangGraph, and `kill -9` kills a real process in the middle of a stage.

    proc = start("run", "--out", str(out), home=home)     # a running command
    wait_until(lambda: server.held.is_set(), "the first arXiv request")
    proc.kill()                                            # SIGKILL
    result = cli("run", "--resume", run_id, home=home)     # a finished command: returncode, stdout, stderr

Faults come from outside the product: loopback servers that hold, fail or slow down a request
(`HeldArxiv`, `stand_in_model`), SIGKILL, RLIMIT_FSIZE (a file that may not grow past N bytes: writes
fail with EFBIG, as on a full disk), garbled files, a data dir under a plain file.
"""

from __future__ import annotations

import atexit
import hashlib
import json
import multiprocessing
import os
import re
import resource
import shutil
import signal
import sys
import tempfile
import threading
import time
import traceback
from dataclasses import dataclass
from pathlib import Path

from tests.arxiv_server import ArxivServer
from tests.openai_server import OpenAIServer, Reply, reply

INQUIRY = Path(__file__).parent.parent / "data" / "inquiries" / "recursive_training.md"
# What every run's process imports, loaded once in the fork server.
PRELOAD = ["agent.cli", "agent.runner", "agent.graph", "agent.services", "agent.llm_analyst", "agent.store",
           "tools.llm", "tools.arxiv_api", "tools.sources", "simulations.sweep", "simulations.plots"]
_CONTEXT = multiprocessing.get_context("forkserver")
_CONTEXT.set_forkserver_preload(PRELOAD)
# Where the commands' stdout and stderr go (the data dir may be where nothing can be written).
_LOGS = Path(tempfile.mkdtemp(prefix="collapse-audit-faults-"))
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

    def __init__(self, args: tuple[str, ...], home: Path, cwd: Path | None, env: dict[str, str] | None,
                 fsize: int | None) -> None:
        self.args = args
        stamp = f"{time.monotonic_ns()}"
        self.stdout_path, self.stderr_path = _LOGS / f"{stamp}.out", _LOGS / f"{stamp}.err"
        inherited = {k: v for k, v in os.environ.items() if not k.startswith("OPENAI_")}
        environment = {**inherited, "COLLAPSE_AUDIT_EMBEDDINGS": "lexical", **(env or {}),
                       "COLLAPSE_AUDIT_HOME": str(home)}
        self.process = _CONTEXT.Process(target=_child, args=(list(args), environment, str(cwd or Path(home).parent),
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
    """`collapse-audit ARGS` started in its own process. The environment is this one's without
    OPENAI_* (as tests/subprocess_cli.py), the lexical embedder, `env` on top and the data dir
    `home`; `fsize`: no file may grow past that many bytes."""
    return Command(args, home, cwd, env, fsize)


def cli(*args: str, home: Path, cwd: Path | None = None, env: dict[str, str] | None = None,
        fsize: int | None = None, timeout: float = 120) -> Result:
    """`collapse-audit ARGS`, run to its end."""
    return start(*args, home=home, cwd=cwd, env=env, fsize=fsize).wait(timeout)


def wait_until(condition, what: str, timeout: float = 60, every: float = 0.005, proc: Command | None = None):
    """Poll `condition` until it returns something true, and return that; fail after `timeout` s or
    when `proc` ends first."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if value := condition():
            return value
        if proc is not None and not proc.running():
            raise AssertionError(f"the command ended before {what}:\n{proc.wait(5)}")
        time.sleep(every)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


def run_id_of(text: str) -> str:
    """The run id from the CLI's first line, `run RUN_ID → DIR`."""
    match = re.search(r"^run (\d{8}-\d{6}-[0-9a-f]{4}) → ", text, re.M)
    assert match, text
    return match.group(1)


# --- what must stay intact ---------------------------------------------------------------------


def digest(folder: Path) -> dict[str, str]:
    """sha256 of every file under `folder`, by relative path."""
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def records(runs_dir: Path) -> dict[str, dict]:
    """The run store's rows, by run id, read with plain sqlite (what the store holds, not what the
    code makes of it)."""
    import sqlite3
    from contextlib import closing

    with closing(sqlite3.connect(runs_dir / "runs.sqlite", timeout=30)) as db:
        db.row_factory = sqlite3.Row
        return {row["run_id"]: dict(row) for row in db.execute("SELECT * FROM runs")}


def checkpoint_next(runs_dir: Path, run_id: str) -> tuple[str, ...]:
    """Where the run's checkpoints say it stopped: the stages that come next, or the stage whose results
    were saved but not yet checkpointed (() when the graph ended, or there is no checkpoint)."""
    from agent.graph import build_graph, open_checkpointer

    with open_checkpointer(runs_dir / "checkpoints.sqlite") as saver:
        state = build_graph().compile(checkpointer=saver).get_state({"configurable": {"thread_id": run_id}})
        return tuple(state.next) or tuple(task.name for task in state.tasks)


def status(runs_dir: Path, run_id: str) -> tuple[str, str | None]:
    """(status, error) of a run as the run store reads it — a run recorded as running whose process is
    gone reads as failed — which is what `runs list` and `runs show` show."""
    from agent.store import RunStore

    record = RunStore(runs_dir).get(run_id)
    return record.status, record.error


def checkpoint_step(runs_dir: Path, run_id: str) -> int | None:
    """The step of the run's newest checkpoint, read with plain sqlite: fast enough to poll every millisecond."""
    import sqlite3
    from contextlib import closing

    try:
        with closing(sqlite3.connect(runs_dir / "checkpoints.sqlite", timeout=30)) as db:
            return db.execute("SELECT max(json_extract(CAST(metadata AS TEXT), '$.step')) FROM checkpoints "
                              "WHERE thread_id = ? AND checkpoint_ns = ''", (run_id,)).fetchone()[0]
    except sqlite3.OperationalError:
        return None  # not made yet, or locked for a moment


def step_before(runs_dir: Path, run_id: str, stage: str) -> int:
    """The checkpoint step after which `stage` came next in the (finished) run `run_id` of the same graph."""
    from agent.graph import build_graph, open_checkpointer

    with open_checkpointer(runs_dir / "checkpoints.sqlite") as saver:
        graph = build_graph().compile(checkpointer=saver)
        for snapshot in graph.get_state_history({"configurable": {"thread_id": run_id}}):
            if snapshot.next == (stage,):
                return snapshot.metadata["step"]
    raise AssertionError(f"run {run_id} has no checkpoint before {stage}")


def report_complete(out: Path) -> dict:
    """Assert `out` holds one whole report and return its report.json."""
    from agent.models import Report

    names = {p.name for p in out.iterdir()}
    assert {"report.md", "report.json", "report.html", "report.bib"} <= names, names
    report = Report.model_validate_json((out / "report.json").read_text(encoding="utf-8"))
    assert report.run_id in (out / "report.md").read_text(encoding="utf-8")
    html = (out / "report.html").read_text(encoding="utf-8")
    assert html.rstrip().endswith("</html>"), "report.html is whole"
    return json.loads((out / "report.json").read_text(encoding="utf-8"))


@dataclass
class Earlier:
    """A data dir holding one finished run, its report folder, and what both were."""

    home: Path
    out: Path
    run_id: str
    report: dict[str, str]  # digest(out)
    record: dict

    @property
    def runs(self) -> Path:
        return self.home / "runs"

    def copy(self, to: Path) -> Earlier:
        """This data dir copied to `to/home` (the report folder is shared: tests only read it)."""
        home = to / "home"
        shutil.copytree(self.home, home, ignore=shutil.ignore_patterns("runs.lock"))
        return Earlier(home, self.out, self.run_id, self.report, self.record)

    def assert_intact(self) -> None:
        """The earlier report folder and the earlier run's record are as they were."""
        assert digest(self.out) == self.report, "the earlier report folder changed"
        assert records(self.runs)[self.run_id] == self.record, "the earlier run's record changed"


# --- loopback servers that fault on cue ---------------------------------------------------------


class HeldArxiv(ArxivServer):
    """The loopback arXiv, able to hold requests: with `hold` set (a predicate on the query's
    parameters), a matching request waits until `release` is set; `held` is set when one arrives."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.hold = None
        self.held, self.release = threading.Event(), threading.Event()
        self.retry_after_503: float | None = None  # a 503 that says when to retry, as arXiv's do when overloaded

    def answer(self, params: dict[str, str]) -> tuple[int, dict[str, str], bytes]:
        if self.hold is not None and self.hold(params):
            self.held.set()
            self.release.wait(60)
        status, headers, body = super().answer(params)
        if status == 503 and self.retry_after_503 is not None:
            headers = {**headers, "Retry-After": f"{self.retry_after_503:g}"}
        return status, headers, body


def ids_lookup(params: dict[str, str]) -> bool:
    return bool(params.get("id_list"))


def search(params: dict[str, str]) -> bool:
    return bool(params.get("search_query")) and not params.get("id_list") and params.get("max_results") != "0"


class StandIn:
    """A stand-in model for `OpenAIServer`: splits a claim into its sentences, matches nothing to the
    lab, grades every paper background. `hold` (a reply schema name) makes such requests wait for
    `release`; `held` is set when one arrives. `fail` (a Reply) answers every request with it."""

    def __init__(self) -> None:
        self.hold: str | None = None
        self.held, self.release = threading.Event(), threading.Event()
        self.fail: Reply | None = None

    def __call__(self, body: dict) -> Reply:
        schema = body["response_format"]["json_schema"]["name"]
        if self.hold == schema:
            self.held.set()
            self.release.wait(60)
        if self.fail is not None:
            return self.fail
        prompt = body["messages"][1]["content"]
        if schema == "DecompositionReply":
            claim = re.search(r"CLAIM (\S+), dated [^:]*:\n(.+?)\n\nSplit this", prompt, re.S).group(2)
            return reply({"assertions": [{"text": s, "scope": []} for s in re.split(r"(?<=[.!?])\s+", claim) if s.strip()]})
        if schema == "PropositionReply":
            return reply({"matches": []})
        return reply({"stance": "background", "confidence": 0.9, "rationale": "stand-in model: on topic", "quote": None})


def model_server(model: StandIn) -> OpenAIServer:
    return OpenAIServer(model, max_requests=5000, lifetime=900)


def model_env(server: OpenAIServer) -> dict[str, str]:
    return {"OPENAI_BASE_URL": server.base_url, "OPENAI_API_KEY": "local"}

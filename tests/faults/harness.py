"""The fault suite's tools: commands run as a user runs them, faults from outside, what must stay intact.

Commands run through tests/subprocess_cli.py (a real process forked from a server that has already
imported the agent), with the lexical embedder:

    proc = start("run", "--out", str(out), home=home)     # a running command
    wait_until(lambda: server.held.is_set(), "the first arXiv request")
    proc.kill()                                            # SIGKILL (proc.interrupt(): Ctrl-C)
    result = cli("run", "--resume", run_id, home=home)     # a finished command: returncode, stdout, stderr

Faults come from outside the product: loopback servers that hold, fail or slow down a request
(`HeldArxiv`, `stand_in_model`), SIGKILL, SIGINT, RLIMIT_FSIZE (a file that may not grow past N
bytes: writes fail with EFBIG, as on a full disk), garbled files, a data dir under a plain file.
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from tests.arxiv_server import ArxivServer
from tests.openai_server import OpenAIServer, Reply, reply
from tests.subprocess_cli import Command, Result
from tests.subprocess_cli import start as _start

INQUIRY = Path(__file__).parent.parent / "data" / "inquiries" / "recursive_training.md"


def start(*args: str, home: Path, cwd: Path | None = None, env: dict[str, str] | None = None,
          fsize: int | None = None) -> Command:
    """tests/subprocess_cli.py `start`, with the fault suite's defaults: the lexical embedder (faults
    are about what the process does, not judgement quality) and the data dir's parent as cwd."""
    return _start(*args, home=home, cwd=cwd or Path(home).parent, env={"COLLAPSE_AUDIT_EMBEDDINGS": "lexical", **(env or {})},
                  fsize=fsize)


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

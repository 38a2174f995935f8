"""`run --record` and `replay RUN_ID --out DIR` end to end: a run recorded against loopback arXiv and
OpenAI-compatible servers, then the world changes (arXiv announces a paper, the snapshot index is
updated, the inquiry and its claims are edited, the sweep cache is emptied, both servers stop), and
the replay still writes the same report, byte for byte but for run id, creation time and directory.

The runs use the lexical embedder (COLLAPSE_AUDIT_EMBEDDINGS=lexical): what is tested is the
recording, not the judge.
"""

from __future__ import annotations

import json
import re
import shutil
import socket
import sqlite3
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path

import pytest

from agent.replay import normalised
from tests.arxiv_server import ArxivServer, snapshot_papers
from tests.openai_server import OpenAIServer
from tests.subprocess_cli import Result, run_cli
from tests.test_run_llm import model_answer
from tools.papers import Paper

INQUIRY = Path(__file__).parent / "data" / "inquiries" / "recursive_training.md"
LEXICAL = {"COLLAPSE_AUDIT_EMBEDDINGS": "lexical"}
NEW_PAPER = Paper(
    id="2611.04321", title="Recursive training on synthetic data erases the tails even when real data accumulates",
    summary="Accumulating real data alongside synthetic data across generations does not avoid model collapse: "
            "the tails of the original distribution still disappear in recursive training.",
    authors=["Ada Example"], published=date.today() - timedelta(days=5), categories=["cs.LG"],
    primary_category="cs.LG", source="arxiv", versions=1,
)
REPORTS = ("report.md", "report.json", "report.html", "report.bib")


@dataclass
class Recorded:
    home: Path
    inquiry: Path
    run_id: str
    out: Path
    llm_requests: int
    arxiv_requests: int

    def cli(self, *args: str, timeout: float = 300) -> Result:
        return run_cli(*args, home=self.home, cwd=self.inquiry.parent, env=LEXICAL, timeout=timeout)

    @property
    def recording(self) -> Path:
        return self.home / "runs" / "recordings" / f"{self.run_id}.sqlite"


@pytest.fixture(scope="module")
def recorded(tmp_path_factory: pytest.TempPathFactory) -> Recorded:
    root = tmp_path_factory.mktemp("replay")
    home, out = root / "home", root / "recorded"
    inquiry = root / "audit" / "inquiry.md"
    inquiry.parent.mkdir()
    shutil.copy(INQUIRY, inquiry)
    with ArxivServer(snapshot_papers(), lifetime=600) as arxiv, OpenAIServer(model_answer, max_requests=800, lifetime=600) as llm:
        env = {**LEXICAL, "OPENAI_BASE_URL": llm.base_url, "OPENAI_API_KEY": "local"}
        first = run_cli("run", "--record", "--inquiry", str(inquiry), "--source", "auto", "--arxiv-url", arxiv.url,
                        "--llm", "openai", "--model", "stand-in", "--sim-budget", "tiny", "--out", str(out),
                        home=home, cwd=root, env=env, timeout=400)
        assert first.returncode == 0, first.stderr
        run_id = json.loads((out / "report.json").read_text())["run_id"]
        llm_requests, arxiv_requests = len(llm.requests), len(arxiv.requests)

        # The world changes: arXiv announces a paper on the audit's topic, and the offline index takes it.
        arxiv.papers[NEW_PAPER.id] = NEW_PAPER
        update = run_cli("snapshot", "update", "--query", "recursive training", "--arxiv-url", arxiv.url,
                         home=home, cwd=root, timeout=120)
        assert update.returncode == 0, update.stderr
    # ... the inquiry and its claims are edited, the sweep cache is emptied, and both servers are gone.
    inquiry.write_text(inquiry.read_text().replace("avoids", "does not avoid"))
    added = run_cli("claims", "add", "Synthetic data always causes collapse (2024, arXiv:2305.17493)",
                    "--inquiry", str(inquiry), home=home, cwd=root)
    assert added.returncode == 0, added.stderr
    shutil.rmtree(home / "simulations")
    return Recorded(home, inquiry, run_id, out, llm_requests, arxiv_requests)


def test_the_recording_keeps_every_exchange_and_the_inputs(recorded):
    assert recorded.llm_requests > 0 and recorded.arxiv_requests > 0
    with sqlite3.connect(recorded.recording) as db:
        counts = dict(db.execute("SELECT service, count(*) FROM exchanges GROUP BY service").fetchall())
        meta = {k: json.loads(v) for k, v in db.execute("SELECT key, value FROM meta")}
        headers = " ".join(h for (h,) in db.execute("SELECT headers FROM exchanges WHERE headers IS NOT NULL"))
    # every request the servers saw; the LLM server logs only chat completions, the recording also the probe
    assert counts["arxiv"] == recorded.arxiv_requests
    assert counts["llm"] >= recorded.llm_requests
    assert meta["run_id"] == recorded.run_id and meta["attempts"] == 1
    assert meta["config"]["llm"] == "openai" and meta["settings"]["model"]
    assert "local" not in json.dumps(meta["settings"]) and "Bearer" not in headers, "no API key is recorded"
    assert [c["id"] for c in meta["inquiry"]["claims"]] == ["C1", "C2"]
    assert meta["sweep"]["digest"] and meta["report.json"]
    assert (recorded.home / "runs" / "recordings" / "snapshots" / meta["snapshot"]).is_file()


def test_a_replay_reproduces_the_report_after_the_world_changed(recorded, tmp_path):
    out = tmp_path / "replayed"
    replay = recorded.cli("replay", recorded.run_id, "--out", str(out))
    assert replay.returncode == 0, replay.stderr
    assert f"the report reproduces run {recorded.run_id}'s" in replay.stderr
    first = json.loads((recorded.out / "report.json").read_text())
    second = json.loads((out / "report.json").read_text())
    assert second["run_id"] != first["run_id"] and second["config"]["out_dir"] == str(out)
    assert second["simulations"].get("result"), "the recorded sweep, though the sweep cache was emptied"
    for name in REPORTS:
        original = normalised((recorded.out / name).read_text(), first)
        again = normalised((out / name).read_text(), second)
        assert again == original, f"{name} differs"
    figures = sorted(p.name for p in (recorded.out / "figures").iterdir())
    assert figures and figures == sorted(p.name for p in (out / "figures").iterdir())
    for name in figures:
        assert (out / "figures" / name).read_bytes() == (recorded.out / "figures" / name).read_bytes()
    # the world did change: the index holds the new paper, the inquiry and claims were edited
    with sqlite3.connect(recorded.home / "snapshot.sqlite") as db:
        assert db.execute("SELECT count(*) FROM papers WHERE id = ?", (NEW_PAPER.id,)).fetchone() == (1,)
    assert NEW_PAPER.id not in json.dumps(second)
    assert "U1" not in {c["id"] for c in second["claims"]} and "does not avoid" not in json.dumps(second)

    # A replay is a run of its own store: the audit's runs (what `recheck` compares with) are unchanged.
    listed = recorded.cli("runs", "list", "--format", "json", "--inquiry", str(recorded.inquiry))
    assert listed.returncode == 0, listed.stderr
    assert [r["run_id"] for r in json.loads(listed.stdout)] == [recorded.run_id]
    with sqlite3.connect(recorded.home / "runs" / "replays" / "runs.sqlite") as db:
        assert db.execute("SELECT run_id, status FROM runs").fetchall() == [(second["run_id"], "finished")]


def test_replay_refuses_what_it_cannot_replay(recorded, tmp_path):
    busy = tmp_path / "busy"
    busy.mkdir()
    (busy / "report.md").write_text("earlier")
    refused = recorded.cli("replay", recorded.run_id, "--out", str(busy))
    assert refused.returncode == 2 and "already holds results" in refused.stderr, refused.stderr
    assert (busy / "report.md").read_text() == "earlier"

    unknown = recorded.cli("replay", "20990101-000000-dead", "--out", str(tmp_path / "a"))
    assert unknown.returncode == 2 and "no run '20990101-000000-dead'" in unknown.stderr, unknown.stderr

    plain_out = tmp_path / "plain"
    plain = recorded.cli("run", "--inquiry", str(recorded.inquiry), "--source", "snapshot", "--llm", "none",
                         "--sim-budget", "none", "--out", str(plain_out))
    assert plain.returncode == 0, plain.stderr
    plain_id = json.loads((plain_out / "report.json").read_text())["run_id"]
    not_recorded = recorded.cli("replay", plain_id, "--out", str(tmp_path / "b"))
    assert not_recorded.returncode == 2, not_recorded.stderr
    assert f"run {plain_id} was not recorded" in not_recorded.stderr and "--record" in not_recorded.stderr
    assert len(not_recorded.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "b").exists(), "a refused replay leaves no folder"


def test_an_unreachable_arxiv_is_recorded_and_replayed_as_such(tmp_path):
    """A transport error is an answer too: `--source auto` fell back to the snapshot, and so does the replay."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        closed = f"http://127.0.0.1:{probe.getsockname()[1]}/api/query"  # nothing listens there once closed
    home, out = tmp_path / "home", tmp_path / "recorded"
    first = run_cli("run", "--record", "--inquiry", str(INQUIRY), "--source", "auto", "--arxiv-url", closed,
                    "--llm", "none", "--sim-budget", "none", "--out", str(out), home=home, env=LEXICAL)
    assert first.returncode == 0, first.stderr
    assert "live arXiv unreachable" in first.stderr
    report = json.loads((out / "report.json").read_text())
    with sqlite3.connect(home / "runs" / "recordings" / f"{report['run_id']}.sqlite") as db:
        assert db.execute("SELECT status, error LIKE 'ConnectError: %' FROM exchanges").fetchall() == [(None, 1)]
    again = run_cli("replay", report["run_id"], "--out", str(tmp_path / "replayed"), home=home, env=LEXICAL)
    assert again.returncode == 0, again.stderr
    assert "live arXiv unreachable" in again.stderr and "the report reproduces" in again.stderr
    replayed = json.loads((tmp_path / "replayed" / "report.json").read_text())
    assert normalised((tmp_path / "replayed" / "report.md").read_text(), replayed) == normalised(
        (out / "report.md").read_text(), report)


def test_a_request_the_recording_lacks_fails_the_replay_and_is_named(recorded, tmp_path):
    """Replay never goes to the network: a recording without a request it needs fails, naming it."""
    damaged = recorded.home / "runs" / "recordings" / f"{recorded.run_id}.sqlite"
    copy = tmp_path / "recording.sqlite"
    shutil.copy(damaged, copy)
    try:
        with sqlite3.connect(damaged) as db:
            (key, url) = db.execute("SELECT key, url FROM exchanges WHERE service = 'arxiv' AND url LIKE '%search_query%' "
                                    "AND status = 200 ORDER BY seq DESC LIMIT 1").fetchone()
            db.execute("DELETE FROM exchanges WHERE key = ?", (key,))
        replay = recorded.cli("replay", recorded.run_id, "--out", str(tmp_path / "replayed"))
    finally:
        shutil.copy(copy, damaged)
    assert replay.returncode == 4, replay.stderr
    line = replay.stderr.strip().splitlines()[-1]
    assert "is not in the recording of run" in line and re.sub(r"^https?://[^/]+", "", url).split("?")[0] in line


def test_a_recorded_recheck_replays_with_its_what_changed(tmp_path):
    """`recheck --record` keeps the run it compares with, so its replay reproduces What changed too."""
    home = tmp_path / "home"
    env = {"COLLAPSE_AUDIT_EMBEDDINGS": "lexical"}
    common = ("--inquiry", str(INQUIRY), "--source", "snapshot", "--llm", "none")
    first = run_cli("run", *common, "--sim-budget", "none", "--out", str(tmp_path / "first"), home=home, env=env)
    assert first.returncode == 0, first.stderr
    again = run_cli("recheck", "--record", *common, "--out", str(tmp_path / "again"), home=home, env=env)
    assert again.returncode == 0, again.stderr
    recheck = json.loads((tmp_path / "again" / "report.json").read_text())
    assert recheck["what_changed"] is not None
    replay = run_cli("replay", recheck["run_id"], "--inquiry", str(INQUIRY), "--out", str(tmp_path / "replayed"),
                     home=home, env=env)
    assert replay.returncode == 0, replay.stderr
    replayed = json.loads((tmp_path / "replayed" / "report.json").read_text())
    assert replayed["what_changed"] == recheck["what_changed"]
    for name in REPORTS:
        assert (normalised((tmp_path / "replayed" / name).read_text(), replayed)
                == normalised((tmp_path / "again" / name).read_text(), recheck)), f"{name} differs"

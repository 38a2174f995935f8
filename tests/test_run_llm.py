"""`collapse-audit run --llm openai` end to end against a loopback OpenAI-compatible server."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

from tests.openai_server import OpenAIServer, Reply, reply


def model_answer(body: dict) -> Reply:
    """A stand-in model: grades every paper 'consistent', quoting the first sentence of the text it
    was shown, and calls every claim supported."""
    schema = body["response_format"]["json_schema"]["name"]
    prompt = body["messages"][-1]["content"]
    if schema == "StanceReply":
        shown = re.search(r'PAPER arXiv:\S+, "(.+?)", first submitted', prompt)
        return reply({"stance": "consistent", "rationale": "stand-in model", "quote": shown.group(1) if shown else None})
    return reply({"label": "supported", "rationale": "stand-in model verdict"})


def test_run_with_an_openai_compatible_endpoint(tmp_path):
    with OpenAIServer(model_answer, max_requests=500, lifetime=240) as server:
        env = {**os.environ, "COLLAPSE_AUDIT_HOME": str(tmp_path / "home"), "OPENAI_BASE_URL": server.base_url,
               "OPENAI_API_KEY": "local"}
        exe = str(Path(sys.executable).with_name("collapse-audit"))
        out = tmp_path / "report"
        result = subprocess.run(
            [exe, "run", "--llm", "openai", "--model", "stand-in", "--source", "snapshot", "--sim-budget", "tiny",
             "--out", str(out)],
            env=env, capture_output=True, text=True, timeout=240,
        )
        assert result.returncode == 0, result.stderr
        sent = [r["model"] for r in server.requests]
    report = json.loads((out / "report.json").read_text())
    assert sent and set(sent) == {"stand-in"}
    evidence = [e for c in report["claims"] for e in c["evidence"]]
    assert evidence and all(e["judged_by"] == "model" for e in evidence)
    assert all(c["verdict"]["judged_by"] == "model" for c in report["claims"])
    assert report["method"]["judgements"]["model"] > 0


def test_run_without_an_endpoint_fails_before_any_stage(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("OPENAI_")}
    env["COLLAPSE_AUDIT_HOME"] = str(tmp_path / "home")
    exe = str(Path(sys.executable).with_name("collapse-audit"))
    result = subprocess.run([exe, "run", "--llm", "openai", "--sim-budget", "tiny", "--out", str(tmp_path / "r")],
                            env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 3, result.stderr
    assert "OPENAI_API_KEY" in result.stderr and "Traceback" not in result.stderr
    assert "claims loaded" not in result.stderr

"""`collapse-audit run --llm openai` end to end against a loopback OpenAI-compatible server."""

from __future__ import annotations

import json
import re
import socket

import pytest
from tests.openai_server import OpenAIServer, Reply, reply, thinking
from tests.subprocess_cli import run_cli

FOREIGN_ID = "2599.00001"


def model_answer(body: dict) -> Reply:
    """A stand-in model. It splits each claim into its sentences, copied, except C1, whose first sentence
    it rewords (so that split is not used). It says a citing sentence does not describe its paper
    when the paper's ID ends in 7, and does otherwise. It matches assertions on tails to the lab's tails-first
    proposition (and to a key the lab does not have). On the stance scale it grades every paper `background` (on
    topic, no position), quoting the paper's title, except papers whose ID ends in an odd digit, on which
    it abstains. Some answers are faulty: for IDs ending in 2 it thinks aloud first and cites a paper it
    was not shown (FOREIGN_ID); for IDs ending in 4 it never gives valid JSON, re-asked or not."""
    schema = body["response_format"]["json_schema"]["name"]
    prompt = body["messages"][1]["content"]  # the task; a re-ask adds a message after it
    if schema == "DecompositionReply":
        claim_id, claim = re.search(r"CLAIM (\S+), dated [^:]*:\n(.+?)\n\nSplit this", prompt, re.S).groups()
        sentences = [s for s in re.split(r"(?<=[.!?])\s+", claim) if s.strip()]
        if claim_id == "C1":
            sentences[0] = "In other words: " + sentences[0]
        return reply({"assertions": [{"text": s, "scope": []} for s in sentences]})
    if schema == "PropositionReply":  # tails-first for assertions on tails, plus a key the lab does not have
        assertion = prompt.split("<assertion>", 1)[1].split("</assertion>", 1)[0]
        return reply({"matches": [{"key": "tails_first", "denies": False}, {"key": "made_up", "denies": False}]
                      if "tails" in assertion else []})
    if schema == "FitReply":  # the citation fit: no for IDs ending in 7, else yes
        cited = re.search(r"SENTENCE citing arXiv:(\S+):", prompt).group(1)
        return reply({"fits": "no" if cited.endswith("7") else "yes", "confidence": 0.8,
                      "reason": "stand-in model: " + ("another paper's finding" if cited.endswith("7") else "its finding")})
    if schema != "StanceReply":  # 410 is not retried, so the run fails
        return Reply(status=410, error=f"stand-in model: unexpected {schema}")
    paper = re.search(r"PAPER arXiv:(\S+), first submitted .*\n<paper_text>\n(.+?)\n", prompt)
    if paper.group(1)[-1] in "13579":
        return reply({"stance": "undetermined", "confidence": 0.2, "rationale": "stand-in model: cannot tell",
                      "quote": None})
    if paper.group(1)[-1] == "4":
        return reply('{"stance": "background", "rationale": ')
    if paper.group(1)[-1] == "2":
        return thinking({"stance": "background", "confidence": 0.9, "quote": paper.group(2),
                         "rationale": f"stand-in model: on topic, no position, unlike arXiv:{FOREIGN_ID}"})
    return reply({"stance": "background", "confidence": 0.9, "rationale": "stand-in model: on topic, no position",
                  "quote": paper.group(2)})


def test_run_with_an_openai_compatible_endpoint(tmp_path):
    with OpenAIServer(model_answer, max_requests=500, lifetime=240) as server:
        # the model judges; retrieval's embedder is not what is tested here, so the fast lexical one will do
        env = {"OPENAI_BASE_URL": server.base_url, "OPENAI_API_KEY": "local", "COLLAPSE_AUDIT_EMBEDDINGS": "lexical"}
        out = tmp_path / "report"
        result = run_cli("run", "--llm", "openai", "--model", "stand-in", "--source", "snapshot", "--sim-budget", "tiny",
                         "--out", str(out), home=tmp_path / "home", env=env, timeout=240)
        assert result.returncode == 0, result.stderr
        sent = [r["model"] for r in server.requests]
    report = json.loads((out / "report.json").read_text())
    assert sent and set(sent) == {"stand-in"}
    splits = {c["id"]: c["split"] for c in report["claims"]}
    assert splits["C1"].startswith("by rules on clause structure; the model's split was not used: its assertion")
    assert all(how == "by the model 'stand-in', checked to be spans of the claim" for i, how in splits.items() if i != "C1")
    for claim in report["claims"]:
        assert all(a["text"] in claim["text"] for a in claim["assertions"])
    assertions = [a for c in report["claims"] for a in c["assertions"]]
    # the model's proposition matches decide which lab results an assertion gets; an invented key is dropped
    assert {s["key"] for a in assertions for s in a["simulation"]} == {"simulations.tails_first"}
    assert all("tails" in a["text"] for a in assertions if a["simulation"])
    informs = report["simulations"]["plan"]["informs_assertions"]
    assert informs and all(keys == ["tails_first"] for keys in informs.values())
    judged = [e for a in assertions for e in a["evidence"] + a["cited"]]
    # Where the model failed, that one judgement fell back to the heuristic judge, labelled so.
    failed = [e for e in judged if e["arxiv_id"].endswith("4")]
    assert failed and all(e["fallback"] and e["judged_by"] == "heuristic" for e in failed)
    assert all(e["rationale"].startswith("model failed (model 'stand-in' at ") and "); heuristic: " in e["rationale"]
               for e in failed)
    by_model = [e for e in judged if e not in failed]
    assert by_model and all(e["judged_by"] == "model" and not e["fallback"] for e in by_model)
    assert {e["stance"] for e in by_model} == {"background", None}
    assert all(c["verdict"]["judged_by"] == "model" for c in report["claims"])
    method = report["method"]
    assert method["judgements"]["model"] == len(by_model)
    assert method["judgements"]["heuristic"] == method["judgements"]["fallback"] == len(failed)
    assert method["judgements"]["undetermined"] == sum(e["stance"] is None for e in judged)
    # The reasoning block was stripped, and the paper the model was not shown was cut from its rationale.
    thought = [e for e in judged if e["arxiv_id"].endswith("2")]
    assert thought and all(e["removed"] == 1 and "[removed]" in e["rationale"] for e in thought)
    assert FOREIGN_ID not in json.dumps(report["claims"])
    assert method["removed_from_model_text"] == len(thought)

    # Background is context, never agreement: no paper the model judged is something a verdict rests on, so
    # nothing is supported by it; an assertion stands only on the simulation lab's results (or a fallback's).
    fell_back = {e["arxiv_id"] for e in failed}
    for a in assertions:
        if any(e["fallback"] for e in a["evidence"] + a["cited"]):
            continue
        assert all(ref.startswith("simulations.") for ref in (r.rsplit(" ", 1)[0] for r in a["rests_on"])), a
        if not a["simulation"]:
            assert a["label"] == "insufficient_evidence", a["id"]
    for claim in report["claims"]:
        if claim["verdict"]["label"] == "supported":
            assert all(a["rests_on"] for a in claim["assertions"]), claim["id"]
        if claim["citation_support"] and any(c["status"] == "grounded" for c in claim["citations"]):
            assert "none was found to support" in claim["citation_support"], claim["id"]
    assert not any(t["found"] for t in report["tasks"] if not any(k.startswith("simulations.") for k in t["evidence"])
                   and not fell_back & set(t["evidence"])
                   and not t["summary"].startswith("Answered by the follow-up questions"))

    # The model read each resolved citation's content; code kept identity conflicts and the year.
    cited = [c for claim in report["claims"] for c in claim["citations"] if c["model_fit"] is not None]
    assert cited and {c["model_fit"] for c in cited} == {"yes", "no"}
    for c in cited:
        if c["model_fit"] == "no":
            assert c["status"] == "wrong_paper" and c["arxiv_id"].endswith("7"), c
        elif c["identity_conflict"]:
            assert c["status"] == "wrong_paper", c
        else:
            assert c["status"] in ("grounded", "year_mismatch"), c
    assert all(c["model_fit"] is None for claim in report["claims"] for c in claim["citations"]
               if c["status"] not in ("grounded", "wrong_paper", "year_mismatch"))

    md = (out / "report.md").read_text()
    assert "(model, confidence 0.90)" in md and "undetermined (the model abstained)" in md
    assert "· analyst: openai" in md
    assert f"{len(failed)} of the heuristic ones because the model failed on them" in md
    assert f"{len(thought)} quotes, quoted passages or arXiv IDs removed from the model's text" in md
    assert "split by the model 'stand-in', checked to be spans of the claim." in md
    rows = [line.split(" | ") for line in md.splitlines() if line.startswith("| **C")]
    assert rows and all("background" not in row[6] and "undetermined" not in row[6] for row in rows), "evidence column"


def test_run_without_an_endpoint_fails_before_any_stage(tmp_path):
    result = run_cli("run", "--llm", "openai", "--sim-budget", "tiny", "--out", str(tmp_path / "r"),
                     home=tmp_path / "home", timeout=120)
    assert result.returncode == 3, result.stderr
    assert "OPENAI_API_KEY" in result.stderr and "Traceback" not in result.stderr
    assert "claims loaded" not in result.stderr
    assert not (tmp_path / "r").exists(), "a run that never started leaves no report folder"


@pytest.mark.parametrize(("endpoint", "says"), [("unreachable", "cannot reach the LLM endpoint"),
                                                ("wrong key", "rejected the API key (HTTP 401): set OPENAI_API_KEY")])
def test_run_with_an_unreachable_or_refusing_endpoint_fails_before_any_stage(tmp_path, endpoint, says):
    with socket.socket() as free:  # a port that was free a moment ago: nothing listens there
        free.bind(("127.0.0.1", 0))
        port = free.getsockname()[1]
    with OpenAIServer([], api_key="the-right-key") as server:
        env = {"OPENAI_API_KEY": "a-wrong-key",
               "OPENAI_BASE_URL": server.base_url if endpoint == "wrong key" else f"http://127.0.0.1:{port}/v1"}
        result = run_cli("run", "--llm", "openai", "--sim-budget", "tiny", "--out", str(tmp_path / "r"),
                         home=tmp_path / "home", env=env, timeout=120)
    assert result.returncode == 3, result.stderr
    assert says in result.stderr and "Traceback" not in result.stderr
    assert "claims loaded" not in result.stderr
    assert server.requests == [], "the probe asks for no completion"
    assert not (tmp_path / "r").exists(), "a run that never started leaves no report folder"

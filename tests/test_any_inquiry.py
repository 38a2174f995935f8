"""An inquiry on another topic is audited on its own terms: its title and question, no simulation
unless an assertion states a proposition the lab tests, follow-up questions from its own task, and
task answers that say what was searched."""

from __future__ import annotations

import json
import re
from datetime import date
from pathlib import Path

import pytest

from agent.assertions import split_claim
from agent.inquiry import load_inquiry
from agent.models import AssertionAudit, ClaimAudit, Task, Verdict
from agent.narrative import follow_up_questions
from agent.nodes.simulate import run_simulations
from agent.state import RunConfig
from tests.arxiv_server import ArxivServer
from tests.subprocess_cli import run_cli
from tools.embeddings import get_embedder
from tools.papers import Paper
from tools.snapshot import Snapshot

ICL = Path(__file__).parent / "data" / "inquiries" / "in_context_learning.md"
ICL_PAPERS = Path(__file__).parent / "data" / "icl_papers.jsonl"
# Words of the default inquiry's topic: a report on another topic says them only where its evidence does.
DEFAULT_TOPIC = re.compile(r"\b(ratio|tails?|collapse)\b", re.I)


@pytest.fixture(scope="module")
def arxiv(tmp_path_factory: pytest.TempPathFactory):
    """A loopback arXiv serving real in-context-learning papers (our own-words summaries)."""
    papers = [Paper.model_validate_json(line) for line in ICL_PAPERS.read_text().splitlines() if line.strip()]
    with ArxivServer(papers, lifetime=600) as server:
        yield server, papers


@pytest.fixture(scope="module")
def icl_report(arxiv, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The user's path to an offline audit on their own topic: build a corpus with `snapshot update`
    from (loopback) arXiv, then audit offline against it."""
    server, papers = arxiv
    root = tmp_path_factory.mktemp("icl")
    built = run_cli("snapshot", "update", "--query", "in-context learning", "--arxiv-url", server.url, home=root / "home")
    added = re.search(r"(\d+) papers added", built.stdout + built.stderr)
    assert built.returncode == 0 and added and int(added.group(1)) >= len(papers) - 1, built.stderr
    out = root / "report"
    # the lexical embedder: the audit's path is what is tested here (MiniLM runs in tests/test_run.py)
    result = run_cli("run", "--inquiry", str(ICL), "--source", "snapshot", "--out", str(out), home=root / "home",
                     env={"COLLAPSE_AUDIT_EMBEDDINGS": "lexical"})
    assert result.returncode == 0, result.stderr
    return out


def test_an_offline_corpus_built_for_the_topic_grounds_and_retrieves_it(icl_report, arxiv):
    _, papers = arxiv
    report = json.loads((icl_report / "report.json").read_text())
    status = {c["arxiv_id"]: c["status"] for c in report["citations"] if c["arxiv_id"]}
    index = Snapshot.open(icl_report.parent / "home" / "snapshot.sqlite")
    held = {i for i in status if index.get(i) is not None}
    # every cited paper the corpus holds is grounded (the versioned 2005.14165v4 included); one the
    # query did not bring in cannot be checked offline, and is never called fake
    assert held >= {"2005.14165", "2202.12837", "2209.11895"}
    assert {i: status[i] for i in held} == dict.fromkeys(held, "grounded")
    assert {status[i] for i in status.keys() - held} <= {"unverifiable"}
    [snapshot] = [s["detail"] for s in report["sources"] if s["name"] == "offline snapshot"]
    assert re.search(r"\d+ with our own-words summaries, \d+ with their arXiv abstracts", snapshot), snapshot
    retrieved = {e["arxiv_id"] for c in report["claims"] for a in c["assertions"] for e in a["evidence"]}
    assert retrieved & {"2303.03846", "2404.11018", "2211.15661"}, "newer on-topic papers are found per assertion"


def test_a_live_audit_through_arxiv_names_the_live_source(arxiv, tmp_path):
    server, papers = arxiv
    out = tmp_path / "report"
    # what is checked here is which source answered, not how well: the fast lexical embedder will do
    result = run_cli("run", "--inquiry", str(ICL), "--source", "arxiv", "--arxiv-url", server.url, "--sim-budget", "none",
                     "--out", str(out), home=tmp_path / "home", env={"COLLAPSE_AUDIT_EMBEDDINGS": "lexical"})
    assert result.returncode == 0, result.stderr
    report = json.loads((out / "report.json").read_text())
    cited = {c["arxiv_id"]: c for c in report["citations"] if c["arxiv_id"] in {p.id for p in papers}}
    assert cited and all(c["status"] == "grounded" and c["source"] in ("arxiv", "cache") for c in cited.values())
    summaries = [t["summary"] for t in report["tasks"] if not t["summary"].startswith("Answered by")]
    assert summaries and all("live arXiv (" in s for s in summaries), summaries
    assert report["simulations"]["skipped"] == "Simulations were skipped (--sim-budget none)."


def test_the_report_is_named_and_framed_by_its_inquiry(icl_report):
    report = json.loads((icl_report / "report.json").read_text())
    md = (icl_report / "report.md").read_text()
    assert report["title"] == "Auditing claims about in-context learning"
    assert md.startswith("# Auditing claims about in-context learning\n")
    assert "in the prompt" in report["question"]
    scaffolding = [report["title"], report["bottom_line"], report["simulations"]["skipped"],
                   *(q["question"] + " " + q["rationale"] for q in report["follow_up_questions"])]
    for text in scaffolding:
        assert not DEFAULT_TOPIC.search(text), text


def test_no_assertion_states_a_lab_proposition_so_no_simulation_runs(icl_report):
    report = json.loads((icl_report / "report.json").read_text())
    assert report["simulations"]["plan"]["informs_assertions"] == {}
    assert report["simulations"]["skipped"].startswith("No simulation in the lab bears on this inquiry")
    assert "result" not in report["simulations"] and report["method"]["simulation_config"] is None
    assert not (icl_report / "figures").exists()
    md = (icl_report / "report.md").read_text()
    section = md.split("## Simulation evidence", 1)[1].split("## Follow-up questions", 1)[0]
    assert section.strip() == report["simulations"]["skipped"]
    for claim in report["claims"]:
        for a in claim["assertions"]:
            assert a["simulation"] == [] and "no simulation ran" in a["simulation_note"]


def test_follow_ups_answer_the_inquirys_own_task_and_tasks_say_what_was_searched(icl_report):
    report = json.loads((icl_report / "report.json").read_text())
    # "Propose one follow-up question." names no sub-points: one question, from the run itself
    assert len(report["follow_up_questions"]) == 1
    by_id = {t["task_id"]: t for t in report["tasks"]}
    assert by_id["3"]["summary"].startswith("Answered by the follow-up questions")
    for task_id in ("1", "1a", "1b", "2"):
        summary = by_id[task_id]["summary"]
        assert re.match(r"Searched up to \d{4}-\d\d-\d\d: \d+ paper\(s\) examined — offline snapshot \(\d+\)", summary), summary


def run_config(tmp_path: Path, budget: str) -> RunConfig:
    return RunConfig(run_id="t", run_date=date(2026, 11, 30), source="snapshot", arxiv_url="http://127.0.0.1:9",
                     sim_budget=budget, out_dir=tmp_path)


def test_sim_budget_none_skips_the_lab_even_when_assertions_state_its_propositions(tmp_path):
    inquiry = load_inquiry(Path(__file__).parents[1] / "prompts" / "inquiry.md")
    assertions = {c.id: split_claim(c.id, c.text) for c in inquiry.claims}
    state = {"run": run_config(tmp_path, "none"), "inquiry": inquiry, "assertions": assertions}
    update = run_simulations(state)["simulation"]
    assert update["skipped"] == "Simulations were skipped (--sim-budget none)."
    assert "result" not in update
    assert update["plan"]["informs_assertions"]["C1.b"] == ["tails_first"]


def test_each_sub_point_of_the_follow_up_task_gets_its_own_question():
    claim = "Demonstration labels barely matter for in-context learning (2022), while the input format does."
    audited = [AssertionAudit(id=a.id, text=a.text, label="insufficient_evidence", rests_on=[], reason="none")
               for a in split_claim("C1", claim)]
    audit = ClaimAudit(id="C1", text=claim, dated="2022", tags=[], durability="unassessed", origin="inquiry",
                       citations=[], verdict=Verdict(label="insufficient_evidence", rationale="none"),
                       assertions=audited, evidence=[])
    tasks = [Task(id="4", text="Propose two follow-up questions:"),
             Task(id="4a", text="Does label noise matter more for small models"),
             Task(id="4b", text="What role does the input format play?"), Task(id="5", text="Find newer work.")]
    questions = follow_up_questions([audit], None, tasks, get_embedder("lexical"))
    assert [q.question.split("?")[0] + "?" for q in questions] == [
        "Does label noise matter more for small models?", "What role does the input format play?"]
    assert [q.grounded_in[0] for q in questions] == ["task 4a", "task 4b"]
    assert all("C1." in q.question and "insufficient evidence" in q.question for q in questions)

"""The LLM analyst and client against a loopback OpenAI-compatible server, through the real openai client."""

from __future__ import annotations

import json
import socket
import time
from datetime import date

import pytest
from tests.openai_server import OpenAIServer, Reply, rate_limited, reply, server_error, unauthorized

from agent.llm_analyst import LLMAnalyst, StanceReply, verbatim
from agent.models import Claim, Evidence
from tools.grounding import CitationCheck, PaperRef
from tools.llm import LLMClient, LLMError
from tools.papers import Paper

CLAIM = Claim(
    id="c1",
    text="Training each generation only on the previous generation's samples erodes the tails of the distribution.",
    dated="2023",
    year_start=2023,
    year_end=2023,
    citations=["2305.17493"],
)
FINDING = "Accumulating real and synthetic data across generations keeps the test error bounded — no collapse."
PAPER = Paper(
    id="2404.01413",
    title="Is Model Collapse Inevitable?",
    published=date(2024, 4, 1),
    summary="Our paraphrase: when synthetic data is   added to\nthe real data rather than replacing it, models stay stable.",
    summary_is_paraphrase=True,
    findings=[FINDING],
)


def analyst(server: OpenAIServer, max_retries: int = 2) -> LLMAnalyst:
    return LLMAnalyst(LLMClient(server.base_url, None, "test-model", timeout=5, max_retries=max_retries))


def stance(stance: str, quote: str | None, rationale: str = "The paper bounds the error when data accumulates.") -> dict:
    return {"stance": stance, "rationale": rationale, "quote": quote}


def user_message(request: dict) -> str:
    return next(m["content"] for m in request["messages"] if m["role"] == "user")


def test_stance_round_trip_sends_schema_and_keeps_a_verbatim_quote():
    # The model retypes the quote with a plain dash and a line break: it still is the paper's sentence.
    retyped = FINDING.replace(" — ", " -\n").replace("generations", "generations ")
    with OpenAIServer([reply(stance("qualifies", retyped))]) as server:
        evidence = analyst(server).assess(CLAIM, PAPER, relevance=0.71234)

    assert evidence == Evidence(
        arxiv_id=PAPER.id,
        title=PAPER.title,
        published=PAPER.published,
        stance="qualifies",
        score=0.712,
        rationale="The paper bounds the error when data accumulates.",
        quote=FINDING,  # the paper's own characters, not the model's
        quote_source="paraphrase",
        judged_by="model",
        newer_than_claim=True,
    )
    [request] = server.requests
    assert request["model"] == "test-model"
    assert request["response_format"]["type"] == "json_schema"
    assert request["response_format"]["json_schema"]["name"] == "StanceReply"
    assert set(request["response_format"]["json_schema"]["schema"]["properties"]["stance"]["enum"]) == {
        "contradicts", "qualifies", "unrelated", "consistent", "supports"
    }  # fmt: skip
    prompt = user_message(request)
    for expected in (CLAIM.text, "(2023)", PAPER.id, PAPER.title, "2024-04-01", FINDING, "paraphrase"):
        assert expected in prompt
    # No key was configured: a local server gets a placeholder instead of none at all.
    assert server.headers[0]["authorization"].startswith("Bearer ")


def test_fabricated_quote_is_dropped_and_the_rationale_says_so():
    invented = "Collapse is fully reversed by any amount of real data."
    with OpenAIServer([reply(stance("contradicts", invented))]) as server:
        evidence = analyst(server).assess(CLAIM, PAPER.model_copy(update={"summary_is_paraphrase": False}), 0.5)
    assert evidence.stance == "contradicts"
    assert evidence.quote is None
    assert evidence.quote_source == "abstract"
    assert "quote was dropped" in evidence.rationale and "abstract" in evidence.rationale


def test_verbatim_matches_only_the_text_itself():
    text = "Tails vanish first.\nThen the  mode “narrows” – quickly."
    assert verbatim('the mode "narrows" - quickly', text) == "the  mode “narrows” – quickly"
    assert verbatim('"Tails vanish first."', text) == "Tails vanish first."
    assert verbatim("tails vanish first", text) is None  # case still matters
    assert verbatim("Tails vanish slowly", text) is None
    assert verbatim("  ", text) is None


def test_server_without_json_schema_gets_the_schema_in_the_prompt():
    fenced = "Here you go:\n```json\n" + json.dumps(stance("supports", None)) + "\n```"
    with OpenAIServer([reply(fenced), reply(stance("unrelated", None))], rejects_json_schema=True) as server:
        client = LLMClient(server.base_url, "sk-test", "test-model", timeout=5)
        first = client.structured("You grade.", "Grade it.", StanceReply)
        second = client.structured("You grade.", "Grade it again.", StanceReply)

    assert (first.stance, first.quote, second.stance) == ("supports", None, "unrelated")
    rejected, fallback, remembered = server.requests
    assert rejected["response_format"]["type"] == "json_schema"
    assert "response_format" not in fallback and "response_format" not in remembered
    system = fallback["messages"][0]["content"]
    assert system.startswith("You grade.") and "JSON schema" in system and '"stance"' in system
    assert server.headers[0]["authorization"] == "Bearer sk-test"


def test_invalid_output_is_reasked_once_with_the_validation_error():
    bad = json.dumps(stance("agrees", None))  # not a stance on the scale
    with OpenAIServer([reply(bad), reply(stance("consistent", None))]) as server:
        evidence = analyst(server).assess(CLAIM, PAPER, 0.4)
    assert evidence.stance == "consistent"
    reask = server.requests[1]["messages"][-1]["content"]
    assert "not valid" in reask and "agrees" in reask and "supports" in reask


def test_invalid_output_twice_is_an_llm_error():
    with OpenAIServer([reply("I think it supports the claim."), reply("{not json")]) as server:
        with pytest.raises(LLMError) as failure:
            analyst(server).assess(CLAIM, PAPER, 0.4)
    assert len(server.requests) == 2
    message = str(failure.value)
    assert "\n" not in message and server.base_url in message and "StanceReply" in message


def test_rate_limit_and_server_error_are_retried():
    with OpenAIServer([rate_limited(0.05), server_error(), reply(stance("supports", None))]) as server:
        started = time.monotonic()
        evidence = analyst(server).assess(CLAIM, PAPER, 0.9)
    assert evidence.stance == "supports"
    assert len(server.requests) == 3
    assert time.monotonic() - started < 5


def test_rate_limit_beyond_retries_is_an_llm_error():
    with OpenAIServer([rate_limited(0.01), rate_limited(0.01)]) as server:
        with pytest.raises(LLMError, match=r"rate-limiting \(HTTP 429\) after 1 retries"):
            analyst(server, max_retries=1).assess(CLAIM, PAPER, 0.9)


def test_unreachable_endpoint_is_one_line_saying_what_to_check():
    with socket.socket() as probe:  # a port that was free a moment ago: nothing listens there
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    client = LLMClient(f"http://127.0.0.1:{port}/v1", None, "test-model", timeout=2, max_retries=0)
    with pytest.raises(LLMError) as failure:
        LLMAnalyst(client).assess(CLAIM, PAPER, 0.5)
    message = str(failure.value)
    assert "\n" not in message
    assert f"127.0.0.1:{port}" in message and "running" in message


def test_slow_server_is_a_timeout_error():
    def slow(body: dict) -> Reply:
        time.sleep(0.6)
        return reply(stance("supports", None))

    with OpenAIServer(slow) as server:
        client = LLMClient(server.base_url, None, "test-model", timeout=0.2, max_retries=0)
        with pytest.raises(LLMError, match="did not answer within 0.2 s"):
            client.structured("s", "u", StanceReply)


def test_rejected_key_and_missing_configuration_say_what_to_set():
    with OpenAIServer([unauthorized()]) as server:
        with pytest.raises(LLMError, match="set OPENAI_API_KEY"):
            LLMClient(server.base_url, "wrong", "test-model").structured("s", "u", StanceReply)
    with pytest.raises(LLMError, match="OPENAI_API_KEY.*OPENAI_BASE_URL"):
        LLMClient(None, None, "test-model")


def test_verdict_round_trip_lists_evidence_citations_and_simulation():
    evidence = [
        Evidence(arxiv_id="2404.01413", title=PAPER.title, published=PAPER.published, stance="qualifies", score=0.7,
                 rationale="Accumulation avoids collapse.", quote=FINDING, quote_source="paraphrase", judged_by="model",
                 newer_than_claim=True),
        Evidence(arxiv_id="2401.00001", title="Unrelated", published=date(2024, 1, 2), stance="unrelated", score=0.2,
                 rationale="Off topic.", judged_by="model"),
    ]  # fmt: skip
    citations = [
        CitationCheck(line=1, as_written="arXiv:2305.17493", arxiv_id="2305.17493", status="grounded",
                      context=CLAIM.text, stated_year=2023,
                      paper=PaperRef(id="2305.17493", title="The Curse of Recursion", published=date(2023, 5, 27),
                                     authors=["I. Shumailov"]),
                      reason="title and year fit"),
    ]  # fmt: skip
    verdict = {"label": "contested", "rationale": "2404.01413 qualifies the claim; the simulation agrees."}
    with OpenAIServer([reply({**verdict, "label": "true"}), reply(verdict)]) as server:
        result = analyst(server).judge(CLAIM, evidence, citations, "tail mass falls with the ratio at fixed diversity")

    assert (result.label, result.rationale, result.judged_by) == ("contested", verdict["rationale"], "model")
    request = server.requests[0]
    assert request["response_format"]["json_schema"]["name"] == "VerdictReply"
    prompt = user_message(request)
    for expected in ("arXiv:2404.01413", "qualifies", "newer than the claim", FINDING, "arXiv:2305.17493: grounded",
                     "1 other retrieved paper(s) were judged unrelated", "tail mass falls with the ratio"):  # fmt: skip
        assert expected in prompt
    assert "2401.00001" not in prompt
    assert len(server.requests) == 2  # the label outside the verdict scale was re-asked

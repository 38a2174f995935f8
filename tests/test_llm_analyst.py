"""The LLM analyst and client against a loopback OpenAI-compatible server, through the real openai client."""

from __future__ import annotations

import json
import socket
import time
from datetime import date

import pytest
from tests.openai_server import OpenAIServer, Reply, rate_limited, reply, server_error, unauthorized

from agent.analyst import OfflineAnalyst
from agent.assertions import Assertion, split_claim
from agent.llm_analyst import LLMAnalyst, StanceReply, verbatim
from agent.models import Claim, Evidence
from tools.embeddings import LexicalEmbedder
from tools.llm import AnswerFailed, LLMClient, LLMError
from tools.papers import Paper

CLAIM = Claim(
    id="c1",
    text="Training each generation only on the previous generation's samples erodes the tails of the distribution.",
    dated="2023",
    year_start=2023,
    year_end=2023,
    citations=["2305.17493"],
)
[ASSERTION] = split_claim(CLAIM.id, CLAIM.text)
SCOPED = Assertion(id="c1.b", text="the tails erode even when real data is kept", start=0, end=10,
                   scope=["even when real data is kept"])
WHY = "matches the assertion's keyphrases (tails; previous generation)"
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
    client = LLMClient(server.base_url, None, "test-model", timeout=5, max_retries=max_retries)
    return LLMAnalyst(client, fallback=OfflineAnalyst(LexicalEmbedder()))


def stance(stance: str, quote: str | None, rationale: str = "The paper bounds the error when data accumulates.",
           confidence: float = 0.8) -> dict:
    return {"stance": stance, "confidence": confidence, "rationale": rationale, "quote": quote}


def assess(server: OpenAIServer, paper: Paper = PAPER, relevance: float = 0.5, assertion: Assertion = ASSERTION,
           max_retries: int = 2) -> Evidence:
    return analyst(server, max_retries).assess(assertion, CLAIM, paper, relevance, WHY)


def user_message(request: dict) -> str:
    return next(m["content"] for m in request["messages"] if m["role"] == "user")


def test_stance_round_trip_sends_schema_and_keeps_a_verbatim_quote():
    # The model retypes the quote with a plain dash and a line break: it still is the paper's sentence.
    retyped = FINDING.replace(" — ", " -\n").replace("generations", "generations ")
    with OpenAIServer([reply(stance("qualifies", retyped, confidence=0.7))]) as server:
        evidence = assess(server, relevance=0.71234)

    assert evidence == Evidence(
        arxiv_id=PAPER.id,
        title=PAPER.title,
        published=PAPER.published,
        assertion_id=ASSERTION.id,
        stance="qualifies",
        confidence=0.7,
        score=0.712,
        rationale="The paper bounds the error when data accumulates.",
        quote=FINDING,  # the paper's own characters, not the model's
        quote_source="paraphrase",
        judged_by="model",
        newer_than_claim=True,
        retrieved_because=WHY,
    )
    [request] = server.requests
    assert request["model"] == "test-model"
    assert request["response_format"]["type"] == "json_schema"
    assert request["response_format"]["json_schema"]["name"] == "StanceReply"
    schema = request["response_format"]["json_schema"]["schema"]
    assert set(schema["properties"]["stance"]["enum"]) == {
        "supports", "qualifies", "contradicts", "background", "unrelated", "undetermined"
    }  # fmt: skip
    assert {"stance", "confidence", "rationale", "quote"} <= set(schema["properties"])
    prompt = user_message(request)
    for expected in (ASSERTION.text, "(none stated)", CLAIM.text, "dated 2023", PAPER.id, PAPER.title, "2024-04-01",
                     FINDING, "paraphrase"):  # fmt: skip
        assert expected in prompt
    system = request["messages"][0]["content"]
    assert "background" in system and "not support" in system, "the scale is explained to the model"
    # No key was configured: a local server gets a placeholder instead of none at all.
    assert server.headers[0]["authorization"].startswith("Bearer ")


def test_the_assertion_is_judged_with_its_scope():
    with OpenAIServer([reply(stance("background", None, "On topic, no finding on the tails.", 0.6))]) as server:
        evidence = assess(server, assertion=SCOPED)
    assert (evidence.stance, evidence.assertion_id, evidence.is_evidence) == ("background", "c1.b", False)
    prompt = user_message(server.requests[0])
    assert SCOPED.text in prompt and "Scope conditions: even when real data is kept" in prompt


TWO_PART = Claim(
    id="C9",
    text=("Replacing real data with synthetic data makes test error grow across generations (2024, arXiv:2404.01413), "
          "while accumulating both keeps it bounded even when the synthetic share is large."),
    dated="2024",
)


def split(assertions: list[dict]) -> Reply:
    return reply({"assertions": assertions})


def test_model_split_is_used_when_its_assertions_are_spans_that_cover_the_claim():
    first = "Replacing real data with synthetic data makes test error grow across generations"
    second = "accumulating both keeps it bounded even when the synthetic share is large"
    with OpenAIServer([split([{"text": first, "scope": ["across generations"]},
                              {"text": second.replace("it", "it\n"), "scope": ["even when the synthetic share is large"]}])]) as server:
        result = analyst(server).decompose(TWO_PART)
    assert [a.id for a in result.assertions] == ["C9.a", "C9.b"]
    assert [a.text for a in result.assertions] == [first, second]  # the claim's own characters, not the model's
    assert all(TWO_PART.text[a.start : a.end] == a.text for a in result.assertions)
    assert result.assertions[1].scope == ["even when the synthetic share is large"]
    assert result.how.startswith("by the model 'test-model'")
    assert server.requests[0]["response_format"]["json_schema"]["name"] == "DecompositionReply"
    assert TWO_PART.text in user_message(server.requests[0])


@pytest.mark.parametrize(
    ("assertions", "why"),
    [
        ([{"text": "Replacing real data with synthetic data increases test error", "scope": []},
          {"text": "accumulating both keeps it bounded even when the synthetic share is large", "scope": []}],
         "is not a span of the claim"),
        ([{"text": "Replacing real data with synthetic data makes test error grow across generations", "scope": []}],
         "cover 48% of the claim's words"),
        ([{"text": "Replacing real data with synthetic data makes test error grow across generations",
           "scope": ["when the model is large"]},
          {"text": "accumulating both keeps it bounded even when the synthetic share is large", "scope": []}],
         "scope condition 'when the model is large' is not a span"),
        ([], "gave no assertion"),
    ],
)
def test_a_model_split_that_does_not_stand_for_the_claim_falls_back_to_the_rules(assertions, why):
    with OpenAIServer([split(assertions)]) as server:
        result = analyst(server).decompose(TWO_PART)
    assert result.assertions == split_claim(TWO_PART.id, TWO_PART.text)
    assert result.how.startswith("by rules on clause structure; the model's split was not used: ")
    assert why in result.how


def test_the_model_matches_lab_propositions_and_invented_keys_are_dropped():
    assertion = split_claim("C9", "Collapse is not a function of the synthetic-to-real ratio.")[0]
    with OpenAIServer([reply({"matches": [{"key": "ratio", "denies": True}, {"key": "vibes", "denies": False}]})]
                      ) as server:
        matched = analyst(server).propositions(assertion)
    assert matched == [("ratio", True)]
    request = server.requests[0]
    assert request["response_format"]["json_schema"]["name"] == "PropositionReply"
    assert "- tails_first:" in user_message(request) and "<assertion>Collapse is not a function" in user_message(request)


def test_undetermined_is_an_abstention_not_a_stance():
    with OpenAIServer([reply(stance("undetermined", None, "The text does not say.", 0.3))]) as server:
        evidence = assess(server)
    assert evidence.stance is None and not evidence.is_evidence
    assert (evidence.confidence, evidence.rationale, evidence.judged_by) == (0.3, "The text does not say.", "model")


def test_fabricated_quote_is_dropped_and_the_rationale_says_so():
    invented = "Collapse is fully reversed by any amount of real data."
    with OpenAIServer([reply(stance("contradicts", invented))]) as server:
        evidence = assess(server, PAPER.model_copy(update={"summary_is_paraphrase": False}))
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


def test_server_without_json_schema_gets_json_mode_and_the_schema_in_the_prompt():
    fenced = "Here you go:\n```json\n" + json.dumps(stance("supports", None)) + "\n```"
    with OpenAIServer([reply(fenced), reply(stance("unrelated", None))], rejects_json_schema=True) as server:
        client = LLMClient(server.base_url, "sk-test", "test-model", timeout=5)
        first = client.structured("You grade.", "Grade it.", StanceReply)
        second = client.structured("You grade.", "Grade it again.", StanceReply)

    assert (first.stance, first.confidence, first.quote, second.stance) == ("supports", 0.8, None, "unrelated")
    rejected, fallback, remembered = server.requests
    assert rejected["response_format"]["type"] == "json_schema"
    assert fallback["response_format"] == remembered["response_format"] == {"type": "json_object"}
    assert client.mode == "json_object"
    system = fallback["messages"][0]["content"]
    assert system.startswith("You grade.") and "JSON schema" in system and '"stance"' in system
    assert '"confidence"' in system
    assert server.headers[0]["authorization"] == "Bearer sk-test"


@pytest.mark.parametrize(
    "bad, complaint",
    [
        (stance("agrees", None), "agrees"),  # not a stance on the scale
        (stance("consistent", None), "consistent"),  # the old scale's word: on topic is not a stance any more
        (stance("supports", None, confidence=1.5), "confidence"),  # outside 0..1
        ({"stance": "supports", "rationale": "no confidence given", "quote": None}, "confidence"),
    ],
)
def test_invalid_output_is_reasked_once_with_the_validation_error(bad, complaint):
    with OpenAIServer([reply(bad), reply(stance("background", None))]) as server:
        evidence = assess(server)
    assert evidence.stance == "background"
    assert len(server.requests) == 2
    reask = server.requests[1]["messages"][-1]["content"]
    assert "not valid" in reask and complaint in reask


def test_invalid_output_twice_fails_that_answer():
    with OpenAIServer([reply("I think it supports the claim."), reply("{not json")]) as server:
        with pytest.raises(AnswerFailed) as failure:
            LLMClient(server.base_url, None, "test-model", timeout=5).structured("s", "u", StanceReply)
    assert len(server.requests) == 2
    message = str(failure.value)
    assert "\n" not in message and server.base_url in message and "StanceReply" in message


def test_rate_limit_and_server_error_are_retried():
    with OpenAIServer([rate_limited(0.05), server_error(), reply(stance("supports", None))]) as server:
        started = time.monotonic()
        evidence = assess(server, relevance=0.9)
    assert evidence.stance == "supports"
    assert len(server.requests) == 3
    assert time.monotonic() - started < 5


def test_rate_limit_beyond_retries_fails_that_answer():
    with OpenAIServer([rate_limited(0.01), rate_limited(0.01)]) as server:
        with pytest.raises(AnswerFailed, match=r"rate-limiting \(HTTP 429\) after 1 retries"):
            LLMClient(server.base_url, None, "test-model", timeout=5, max_retries=1).structured("s", "u", StanceReply)


def test_unreachable_endpoint_is_one_line_saying_what_to_check():
    with socket.socket() as probe:  # a port that was free a moment ago: nothing listens there
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    client = LLMClient(f"http://127.0.0.1:{port}/v1", None, "test-model", timeout=2, max_retries=0)
    with pytest.raises(LLMError) as failure:
        client.probe()
    assert not isinstance(failure.value, AnswerFailed), "no answer to fall back from: the run must stop"
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

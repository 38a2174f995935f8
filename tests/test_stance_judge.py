"""The five-stance judge: the offline judge's mechanism and abstention, the stance benchmark, the LLM path."""

from __future__ import annotations

import json
from datetime import date
from pathlib import Path

import pytest
from tests.openai_server import OpenAIServer, reply

from agent.llm_analyst import verbatim
from agent.stance_judge import (
    EVIDENCE_STANCES,
    LEXICAL_THRESHOLDS,
    MINILM_THRESHOLDS,
    STANCES,
    OfflineStanceJudge,
    StanceJudgement,
    Thresholds,
    compare,
    decide,
    read_clause,
)
from benchmarks import stance_accuracy as bench
from tools.embeddings import get_embedder
from tools.prompts import load_prompt
from tools.papers import Paper

GOLD = Path(__file__).parent / "data" / "stance_dev.jsonl"

# Papers from other inquiries (alignment, retrieval, biology): the judge must not depend on the collapse topic.
RLHF = Paper(
    id="2310.06452",
    title="Understanding the Effects of RLHF on LLM Generalisation and Diversity",
    published=date(2023, 10, 10),
    summary=(
        "Compares supervised fine-tuning, reward modeling and RLHF stages on summarization and instruction "
        "following, measuring out-of-distribution generalization and output diversity."
    ),
    summary_is_paraphrase=True,
    findings=[
        "RLHF generalizes better than SFT to new inputs, more so as train-test shift grows",
        "RLHF substantially reduces output diversity relative to SFT across per-input and across-input measures",
        "current fine-tuning methods face a generalization-diversity trade-off",
    ],
)
RETRIEVAL = Paper(
    id="2104.08663",
    title="BEIR: A Heterogeneous Benchmark for Zero-shot Evaluation of Information Retrieval Models",
    published=date(2021, 4, 17),
    summary="Evaluates lexical, sparse, dense and re-ranking retrieval models zero-shot on 18 datasets from diverse domains.",
    findings=[
        "BM25 remains a robust baseline for zero-shot retrieval",
        "dense retrievers often underperform BM25 on out-of-domain datasets",
        "re-ranking models achieve the best zero-shot performance at a high computational cost",
    ],
)
PROTEIN = Paper(
    id="2101.00001",
    title="Accurate protein structure prediction with attention over residue pairs",
    published=date(2021, 1, 1),
    summary="Predicts three-dimensional protein structures from amino-acid sequences with an attention network.",
    findings=[
        "predicted structures reach near-experimental accuracy on the CASP benchmark",
        "multiple sequence alignments remain the most informative input",
    ],
)


@pytest.fixture(scope="module", params=["lexical", "minilm"])
def judge(request) -> OfflineStanceJudge:
    return OfflineStanceJudge(get_embedder(request.param))


@pytest.fixture(scope="module")
def gold() -> tuple[list[dict], dict[str, Paper]]:
    cases = bench.load_gold(GOLD)
    papers, _ = bench.load_papers({c["arxiv_id"] for c in cases}, [bench.SHARED_SNAPSHOT])
    return cases, papers


def test_gold_loads_from_tests_data_and_splits_by_assertion():
    cases = bench.load_gold(GOLD)
    assert len(cases) == 72 and {c["expected"] for c in cases} == set(STANCES)
    assert len({c["case"] for c in cases}) == 72
    halves = {}
    for case in cases:
        halves.setdefault(case["assertion"], set()).add(bench.split_of(case["assertion"]))
    assert all(len(sides) == 1 for sides in halves.values())  # an assertion's pairs never straddle the split
    sizes = {name: sum(bench.split_of(c["assertion"]) == name for c in cases) for name in bench.SPLITS}
    assert sizes == {"dev": 30, "held_out": 42}
    assert bench.split_of("  Same   words ") == bench.split_of("Same words")  # whitespace does not move a pair


def test_no_opposite_error_on_dev_and_defaults_meet_the_dev_constraints(judge, gold):
    cases, papers = gold
    dev = [c for c in cases if bench.split_of(c["assertion"]) == "dev" and c["arxiv_id"] in papers]
    # All 30 with ../shared beside the repo; the packaged snapshot alone lacks the papers of s054 and s071.
    assert len(dev) >= 28
    judge.warm([(c["assertion"], papers[c["arxiv_id"]]) for c in dev])
    rows = [(c, judge.judge(c["assertion"], papers[c["arxiv_id"]])) for c in dev]
    for case, judgement in rows:
        assert {case["expected"], judgement.stance} != {"supports", "contradicts"}, case["case"]
    table = bench.per_label(rows)
    for label in ("supports", "contradicts"):
        assert table[label][0] is None or table[label][0] >= bench.MIN_PRECISION, (label, table[label])
    if len(dev) == 30:  # the thresholds were chosen on exactly these pairs
        ok, result = bench.acceptable(rows)
        assert ok, result
    assert judge.thresholds == (LEXICAL_THRESHOLDS if judge.embedder.name == "lexical" else MINILM_THRESHOLDS)


def test_quotes_are_verbatim_from_the_paper_text(gold):
    cases, papers = gold
    judge = OfflineStanceJudge(get_embedder("lexical"))
    for case in cases:
        paper = papers.get(case["arxiv_id"])
        if paper is None:
            continue
        judgement = judge.judge(case["assertion"], paper)
        if judgement.quote is not None:
            assert judgement.quote in paper.text()
            assert verbatim(judgement.quote, paper.text()) == judgement.quote
        assert 0.0 <= judgement.confidence <= 1.0
        assert (judgement.stance is None) == (judgement.confidence == 0.0)
        assert judgement.reason.startswith("undetermined offline:") == (judgement.stance is None)


def test_restatement_supports_and_its_negation_does_not(judge):
    said = judge.judge("RLHF reduces the diversity of a language model's outputs.", RLHF)
    assert said.stance == "supports" and said.confidence >= 0.5
    assert said.quote == RLHF.findings[1]
    for negated in (
        "RLHF does not reduce the diversity of a language model's outputs.",
        "RLHF increases the diversity of a language model's outputs.",
        "RLHF preserves the diversity of model outputs.",
    ):
        assert judge.judge(negated, RLHF).stance in ("contradicts", None), negated


def test_a_limit_stated_elsewhere_in_the_paper_turns_support_into_qualifies(judge):
    # The same agreeing finding; only the second paper states, in other words, when it stops holding.
    limited = RLHF.model_copy(
        update={"findings": [*RLHF.findings, "the drop in diversity is reversed unless the reward model is fixed"]}
    )
    assertion = "RLHF reduces the diversity of a language model's outputs."
    assert judge.judge(assertion, RLHF).stance == "supports"
    said = judge.judge(assertion, limited)
    assert said.stance == "qualifies" and said.quote == RLHF.findings[1]
    assert "unless the reward model is fixed" in said.reason


def test_a_loss_of_diversity_is_read_relative_to_the_assertion_not_by_cue_words(judge):
    # Cue-word direction (degrade vs preserve words) is what reversed a diversity-loss claim on an alignment
    # inquiry: here "loss" and "reduces" are compared as what happens to the same words (output diversity).
    assert judge.judge("Preference tuning with RLHF causes a loss of output diversity.", RLHF).stance == "supports"


def test_swapped_sides_of_a_comparison_reverse_it(judge):
    assert judge.judge("Dense retrievers underperform BM25 on out-of-domain datasets.", RETRIEVAL).stance == "supports"
    assert judge.judge("BM25 outperforms dense retrievers on out-of-domain datasets.", RETRIEVAL).stance == "supports"
    assert judge.judge("Dense retrievers outperform BM25 on out-of-domain datasets.", RETRIEVAL).stance == "contradicts"


def test_a_paper_on_another_topic_is_unrelated(judge):
    for assertion, paper in (
        ("RLHF reduces the diversity of a language model's outputs.", PROTEIN),
        ("Dense retrievers outperform BM25 on out-of-domain datasets.", PROTEIN),
    ):
        judgement = judge.judge(assertion, paper)
        assert judgement.stance == "unrelated" and judgement.quote is None


def test_on_topic_without_a_comparable_polarity_abstains(judge):
    for ambiguous in (
        "RLHF affects output diversity in some way that depends on the task.",
        "Reward modeling is the stage that matters for diversity.",
    ):
        judgement = judge.judge(ambiguous, RLHF)
        assert judgement.stance is None and judgement.confidence == 0.0, ambiguous
        assert judgement.reason.startswith("undetermined offline:")
        assert not judgement.is_evidence and judgement.abstained


def test_similarity_alone_is_never_support():
    # Everything close, nothing comparable: even a zero threshold yields no `supports` without polarity.
    loose = Thresholds(unrelated=0.0, position=0.0, supports=0.0, contradicts=0.0, restate=1.01, dominance=1.0)
    judge = OfflineStanceJudge(get_embedder("lexical"), loose)
    assert judge.judge("RLHF stages matter for summarization and instruction following.", RLHF).stance != "supports"


def test_judgement_model_validates():
    assert set(EVIDENCE_STANCES) < set(STANCES)
    with pytest.raises(ValueError):
        StanceJudgement(stance="consistent", confidence=0.5, reason="r")
    with pytest.raises(ValueError):
        StanceJudgement(stance="supports", confidence=1.5, reason="r")


def small_gold(tmp_path: Path) -> Path:
    """Dev pairs whose papers are in the packaged snapshot, one of each non-abstaining kind."""
    keep = {"s001", "s002", "s003", "s025", "s027", "s051"}
    lines = [line for line in GOLD.read_text().splitlines() if json.loads(line)["case"] in keep]
    path = tmp_path / "gold.jsonl"
    path.write_text("\n".join(lines) + "\n")
    return path


def last_json(out: str) -> dict:
    return json.loads(out.strip().splitlines()[-1])


def test_benchmark_prints_the_table_and_ends_with_the_json_line(tmp_path, capsys):
    result = bench.main(["--gold", str(small_gold(tmp_path)), "--embeddings", "lexical", "--split", "all", "--papers"])
    out = capsys.readouterr().out
    line = last_json(out)
    assert line == result and set(line) == {"accuracy", "answered", "abstention", "opposite_errors"}
    assert 0 <= line["accuracy"] <= 1 and 0 <= line["answered"] <= 1 and line["opposite_errors"] == 0
    assert line["answered"] + line["abstention"] == pytest.approx(1.0)
    assert "precision" in out and "recall" in out and "abstained" in out


def test_fit_chooses_thresholds_on_dev_that_meet_the_constraints(gold):
    cases, papers = gold
    judge = OfflineStanceJudge(get_embedder("lexical"))
    dev = [(c, judge.signals(c["assertion"], papers[c["arxiv_id"]])) for c in cases
           if bench.split_of(c["assertion"]) == "dev" and c["arxiv_id"] in papers]  # fmt: skip
    grid = {"unrelated": [0.08], "position": [0.3], "supports": [0.3, 0.5], "contradicts": [0.3, 0.5],
            "restate": [0.7], "dominance": [0.2, 1.0]}  # fmt: skip
    chosen, result = bench.fit(dev, grid)
    ok, again = bench.acceptable([(c, decide(s, chosen)) for c, s in dev])
    assert ok and again == result


def test_benchmark_llm_without_an_endpoint_says_so_on_one_line_and_exits_3(tmp_path, capsys, monkeypatch):
    for name in ("OPENAI_API_KEY", "OPENAI_BASE_URL"):
        monkeypatch.delenv(name, raising=False)
    with pytest.raises(SystemExit) as stop:
        bench.main(["--gold", str(small_gold(tmp_path)), "--llm", "openai"])
    assert stop.value.code == bench.EXIT_NO_LLM
    out = capsys.readouterr().out.strip().splitlines()
    assert len(out) == 1 and "no LLM endpoint configured" in out[0]


def test_benchmark_llm_path_against_a_loopback_server(tmp_path, capsys, monkeypatch):
    def answer(request: dict):
        user = next(m["content"] for m in request["messages"] if m["role"] == "user")
        stance = "undetermined" if "arXiv:2603.03415" in user else "supports"
        return reply({"stance": stance, "confidence": 0.9, "rationale": "The finding says so.", "quote": None})

    with OpenAIServer(answer) as server:
        monkeypatch.setenv("OPENAI_BASE_URL", server.base_url)
        monkeypatch.delenv("OPENAI_API_KEY", raising=False)
        result = bench.main(["--gold", str(small_gold(tmp_path)), "--llm", "openai", "--split", "all", "--papers"])
        systems = {next(m["content"] for m in r["messages"] if m["role"] == "system") for r in server.requests}
    assert last_json(capsys.readouterr().out) == result
    # the question a run asks: the stance prompt file, the same for every pair
    assert systems == {load_prompt("stance.md.j2").system.render().strip()}
    assert result["abstention"] == pytest.approx(1 / 6, abs=0.001) and result["opposite_errors"] == 1  # s051 is contradicts


def test_a_negated_word_is_denied_only_when_said_about_the_same_thing():
    negated = read_clause("Retrieval quality is not simply a function of index size")
    assert compare([negated], [read_clause("retrieval quality is a function of the index size alone")])[0] == "oppose"
    # the same word in another sense, about something else: no position
    other = read_clause("learned scoring functions raise retrieval quality on web queries")
    assert compare([negated], [other])[0] != "oppose"


def test_a_fragment_takes_its_topic_from_its_claim_never_its_position(judge):
    fragment = "which held in every setting tried"
    claim = "RLHF substantially reduces output diversity relative to SFT, which held in every setting tried."
    alone = judge.judge(fragment, RLHF)
    framed = judge.judge(fragment, RLHF, topic=claim)
    assert alone.stance == "unrelated"
    assert framed.stance in ("background", None)  # on the topic now, but the claim lends it no position


def test_a_negated_blocker_says_the_thing_happens_and_only_of_the_same_situation():
    avoids = read_clause("Data augmentation with random crops avoids overfitting in small networks")
    assert compare([avoids], [read_clause("data augmentation with random crops does not prevent overfitting in small "
                                          "networks")])[0] == "oppose"
    assert compare([avoids], [read_clause("data augmentation with random crops avoids overfitting in small networks")]
                   )[0] == "agree"
    # another subject that fails to avoid it says nothing about early stopping
    assert compare([avoids], [read_clause("dropout does not avoid overfitting")])[0] == "unknown"

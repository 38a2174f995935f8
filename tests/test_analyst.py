"""The offline analyst's explicit rules: direction cues, stance grading and verdict labels."""

from __future__ import annotations

from datetime import date

import pytest

from agent.analyst import OfflineAnalyst, direction
from agent.models import Claim, Evidence
from tools.embeddings import get_embedder
from tools.grounding import CitationCheck
from tools.papers import Paper


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("recursive training makes the tails disappear", 1),
        ("accumulating real data does not collapse", -1),
        ("mixing in real data avoids model collapse", -1),
        ("collapse is not simply a function of the ratio; diversity loss enables collapse", 1),
        ("the survey lists generation methods", 0),
    ],
)
def test_direction_reads_degradation_and_its_negation(text, expected):
    assert direction(text) == expected


def evidence(stance: str, arxiv_id: str = "2401.00001") -> Evidence:
    return Evidence(arxiv_id=arxiv_id, title="t", published=date(2025, 1, 1), stance=stance, score=0.6, rationale="r")


def citation(status: str) -> CitationCheck:
    return CitationCheck(line=1, as_written="x", arxiv_id="2305.17493", status=status, context="c", stated_year=2023, paper=None, reason="r")


CLAIM = Claim(id="C1", text="tails vanish under recursive training", year_start=2023, year_end=2023)


@pytest.mark.parametrize(
    ("stances", "citations", "label"),
    [
        (["consistent", "consistent"], [], "insufficient_evidence"),  # on topic is not support
        (["consistent"], ["grounded"], "supported"),
        (["supports"], ["unverifiable"], "supported"),
        (["contradicts"], [], "refuted"),
        (["contradicts", "supports"], ["grounded"], "contested"),
        (["qualifies", "consistent"], ["grounded"], "contested"),
        (["qualifies", "supports", "consistent"], ["grounded"], "supported"),
        (["unrelated"], [], "insufficient_evidence"),
    ],
)
def test_verdict_rules(stances, citations, label):
    analyst = OfflineAnalyst(get_embedder("lexical"))
    ids = [f"2401.0000{i}" for i in range(len(stances))]
    verdict = analyst.judge(CLAIM, [evidence(s, i) for s, i in zip(stances, ids)], [citation(c) for c in citations], None)
    assert verdict.label == label
    assert verdict.rationale.startswith("heuristic:") and verdict.judged_by == "heuristic"


def test_assess_quotes_the_closest_finding_verbatim():
    paper = Paper(
        id="2305.17493", title="The Curse of Recursion", published=date(2023, 5, 27), summary_is_paraphrase=True,
        findings=["tails of the original distribution disappear under recursive training", "a survey of VAEs"],
    )
    graded = OfflineAnalyst(get_embedder("lexical")).assess(CLAIM, paper, relevance=0.7)
    assert graded.quote == paper.findings[0] and graded.quote_source == "paraphrase"
    assert graded.stance in ("supports", "consistent") and graded.rationale.startswith("heuristic:")

"""The offline analyst's contract on real snapshot papers: one Evidence per (assertion, paper), a stance
on the report's scale or None (undetermined offline), a confidence, a rationale that says it is
heuristic, and a quote only when it occurs verbatim in the text held for the paper.

How the stance judge decides is tested in tests/test_stance_judge.py; here only what the analyst
hands to the rest of the agent.
"""

from __future__ import annotations

import pytest

from agent.analyst import OfflineAnalyst
from agent.assertions import split_claim
from agent.models import Claim, Evidence
from agent.verdicts import EVIDENCE_STANCES
from tools.embeddings import get_embedder
from tools.snapshot import Snapshot

STANCES = ("supports", "qualifies", "contradicts", "background", "unrelated")

# C1 of the default inquiry, and a claim on the other side of the question.
TAILS = Claim(
    id="C1",
    text="Recursive training on model-generated content causes irreversible collapse by eroding the tails of the "
    "distribution first — rare events vanish before common ones (2023, arXiv:2305.17493). This held across VAEs, "
    "GMMs, and LLMs.",
    dated="2023", year_start=2023, year_end=2023, citations=["2305.17493"],
)  # fmt: skip
BOUNDED = Claim(id="C9", text="Mixing accumulated real data into every generation keeps the test error bounded, so "
                "collapse is avoided.", dated="2023", year_start=2023, year_end=2023)  # fmt: skip
PAPERS = ("2305.17493", "2404.01413", "2505.13947", "2310.06452", "2505.19046", "2410.04840")


@pytest.fixture(scope="module")
def snapshot() -> Snapshot:
    return Snapshot.open()


@pytest.fixture(scope="module", params=["lexical", "minilm"])
def graded(request, snapshot) -> list[tuple[Claim, object, object, Evidence]]:
    """Every assertion of both claims against every paper, as the analyst grades them."""
    analyst = OfflineAnalyst(get_embedder(request.param))
    out = []
    for claim in (TAILS, BOUNDED):
        for assertion in split_claim(claim.id, claim.text):
            for arxiv_id in PAPERS:
                paper = snapshot.get(arxiv_id)
                out.append((claim, assertion, paper, analyst.assess(assertion, claim, paper, 0.61234, "probe query")))
    return out


def test_every_judgement_is_on_the_scale_or_an_abstention(graded):
    for claim, assertion, paper, e in graded:
        assert e.arxiv_id == paper.id and e.title == paper.title and e.published == paper.published
        assert e.assertion_id == assertion.id and e.retrieved_because == "probe query" and e.score == 0.612
        assert e.stance in STANCES or e.stance is None
        assert 0.0 <= e.confidence <= 1.0
        assert e.judged_by == "heuristic" and e.rationale.startswith("heuristic:")
        assert not e.rationale.startswith("heuristic: heuristic:"), "said once"
        if e.stance is None:  # an abstention says so and claims no confidence
            assert e.confidence == 0.0 and "undetermined offline" in e.rationale
        assert e.newer_than_claim == (paper.published.year > claim.year_end)
    seen = {e.stance for *_, e in graded}
    assert {"supports", "contradicts"} <= seen and {"unrelated"} <= seen, seen


def test_quotes_are_verbatim_from_the_text_held(graded):
    quoted = [(paper, e) for _, _, paper, e in graded if e.quote]
    assert quoted
    for paper, e in quoted:
        assert e.quote in paper.text()
        assert e.quote_source == "paraphrase", "the packaged snapshot holds paraphrases, and the report says so"


def test_the_cited_paper_supports_what_it_is_cited_for(graded):
    [(_, _, paper, e)] = [(c, a, p, e) for c, a, p, e in graded if a.id == "C1.a" and p.id == "2305.17493"]
    assert e.stance == "supports" and e.confidence > 0.5
    assert e.quote in paper.findings, "the finding the stance rests on"
    assert not e.newer_than_claim


def test_a_paper_on_another_question_is_never_evidence(graded):
    rlhf = [e for _, a, p, e in graded if p.id == "2310.06452"]
    assert rlhf and not any(e.stance in EVIDENCE_STANCES for e in rlhf)
    assert not any(e.is_evidence for e in rlhf)


def test_an_abstract_is_labelled_as_such(snapshot):
    paper = snapshot.get("2305.17493").model_copy(update={"summary_is_paraphrase": False})
    [assertion, *_] = split_claim(TAILS.id, TAILS.text)
    e = OfflineAnalyst(get_embedder("lexical")).assess(assertion, TAILS, paper, 1.0, "cited by the claim")
    assert e.quote_source == "abstract" and e.retrieved_because == "cited by the claim"


def test_undated_claims_have_no_newer_papers(snapshot):
    claim = TAILS.model_copy(update={"dated": None, "year_start": None, "year_end": None})
    [assertion, *_] = split_claim(claim.id, claim.text)
    e = OfflineAnalyst(get_embedder("lexical")).assess(assertion, claim, snapshot.get("2505.13947"), 0.5, "q")
    assert e.newer_than_claim is False

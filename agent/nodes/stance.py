"""Stage 4: the analyst grades each paper's stance toward each assertion: the newer papers found for
it, and the claim's own grounded citations (a cited paper's existence is not support; whether it
supports the assertion it is cited for is judged like any other stance)."""

from __future__ import annotations

from agent.analyst import concurrently
from agent.services import services_for
from agent.state import AuditState
from tools.papers import Paper

CITED = "cited by the claim"


def assess_stance(state: AuditState) -> dict:
    services = services_for(state["run"])
    analyst = services.analyst
    asks: list[tuple] = []  # (which, assertion id, assess's arguments), in report order
    evidence, cited = {}, {}
    for claim in state["inquiry"].claims:
        papers = _cited_papers(services, state["citations"].get(claim.id, []))
        for assertion in state["assertions"][claim.id]:
            found = state.get("candidates", {}).get(assertion.id, [])
            evidence[assertion.id], cited[assertion.id] = [], []
            asks += [(evidence, assertion.id, (assertion, claim, c.paper, c.relevance, c.why)) for c in found]
            asks += [(cited, assertion.id, (assertion, claim, p, 1.0, CITED)) for p in papers]
    # an LLM analyst's judgements go out several at once (its client bounds the requests in flight)
    for (which, assertion_id, _), judged in zip(asks, concurrently(analyst, lambda ask: analyst.assess(*ask[2]), asks)):
        which[assertion_id].append(judged)
    return {"evidence": evidence, "cited": cited}


def _cited_papers(services, checks) -> list[Paper]:
    """The papers behind a claim's grounded citations, with the text the source holds for them."""
    ids = list(dict.fromkeys(c.arxiv_id for c in checks if c.status == "grounded" and c.arxiv_id))
    held = services.snapshot.get_many(ids)
    return [held[i] for i in ids if i in held]

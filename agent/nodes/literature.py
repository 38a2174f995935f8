"""Stage 3: newer literature per claim, one branch per claim (LangGraph `Send`)."""

from __future__ import annotations

from datetime import date

from langgraph.types import Send

from agent.services import Services, services_for
from agent.state import AuditState, Candidate, ClaimPayload
from tools.papers import Paper
from tools.retrieval import find_related, rerank

CANDIDATES, KEEP = 40, 8


def related_papers(
    services: Services, query: str, *, since: date | None, until: date, limit: int, exclude: list[str] = ()
) -> list[tuple[Paper, float]]:
    """Source search (live arXiv when reachable, plus the snapshot) and the snapshot's semantic
    neighbours, re-ranked together by embedding similarity to the query."""
    found = {p.id: p for p in services.source.search(query, since=since, until=until, limit=CANDIDATES)}
    for paper, _ in find_related(query, services.snapshot, services.embedder, since=since, until=until, limit=CANDIDATES):
        found.setdefault(paper.id, paper)
    pool = [p for p in found.values() if p.id not in exclude]
    return rerank(query, pool, services.embedder, limit=limit)


def fan_out_literature(state: AuditState) -> list[Send]:
    """One search per claim, for papers newer than the claim (or than `--since` when given)."""
    run = state["run"]
    sends = []
    for claim in state["inquiry"].claims:
        since = run.since or (date(claim.year_start, 1, 1) if claim.year_start else None)
        payload = ClaimPayload(run=run, claim_id=claim.id, query=claim.text, since=since, exclude=claim.citations)
        sends.append(Send("retrieve_literature", payload))
    return sends


def retrieve_literature(payload: ClaimPayload) -> dict:
    run = payload["run"]
    ranked = related_papers(
        services_for(run), payload["query"], since=payload["since"], until=run.run_date, limit=KEEP,
        exclude=payload["exclude"],
    )
    return {"candidates": {payload["claim_id"]: [Candidate(paper=p, relevance=s) for p, s in ranked]}}

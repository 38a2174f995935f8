"""Stage 3: newer literature per claim, one branch per claim (LangGraph `Send`)."""

from __future__ import annotations

from datetime import date

from langgraph.types import Send

from agent.services import services_for
from agent.state import AuditState, Candidate, ClaimPayload
from tools.retrieval import rerank

CANDIDATES, KEEP = 40, 8


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
    services = services_for(payload["run"])
    found = services.source.search(payload["query"], since=payload["since"], until=payload["run"].run_date, limit=CANDIDATES)
    found = [p for p in found if p.id not in payload["exclude"]]
    ranked = rerank(payload["query"], found, services.embedder, limit=KEEP)
    return {"candidates": {payload["claim_id"]: [Candidate(paper=p, relevance=s) for p, s in ranked]}}

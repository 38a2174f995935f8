"""Stage 3: newer literature per assertion, one branch per claim (LangGraph `Send`).

Each assertion is searched twice (agent/queries.py): by its keyphrases, and by its negation to seek
counter-evidence; the papers found keep the reason they were retrieved."""

from __future__ import annotations

from datetime import date

from langgraph.types import Send

from agent.services import Services, services_for
from agent.queries import queries_for
from agent.state import AuditState, Candidate, ClaimPayload
from tools.papers import Paper
from tools.retrieval import find_related, rerank

CANDIDATES, KEEP = 40, 8
PER_QUERY = 4  # papers kept per query (two queries per assertion)


def related_papers(
    services: Services, query: str, *, since: date | None, until: date, limit: int, exclude: list[str] = (),
    rank_by: str | None = None,
) -> list[tuple[Paper, float]]:
    """Source search for `query` (live arXiv when reachable, plus the snapshot) and the snapshot's
    semantic neighbours of `rank_by` (default: the query), re-ranked together by embedding
    similarity to `rank_by`."""
    rank_by = rank_by or query
    pool = search_pool(services, query, since=since, until=until, exclude=exclude, rank_by=rank_by)
    return rerank(rank_by, pool, services.embedder, limit=limit)


def search_pool(
    services: Services, query: str, *, since: date | None, until: date, exclude: list[str] = (), rank_by: str | None = None,
) -> list[Paper]:
    """Every paper examined for `query`: the sources' search hits and the snapshot's semantic neighbours."""
    found = {p.id: p for p in services.source.search(query, since=since, until=until, limit=CANDIDATES)}
    for paper, _ in find_related(rank_by or query, services.snapshot, services.embedder, since=since, until=until,
                                 limit=CANDIDATES):
        found.setdefault(paper.id, paper)
    return [p for p in found.values() if p.id not in exclude]


def fan_out_literature(state: AuditState) -> list[Send]:
    """One search per claim, for papers newer than the claim (or than `--since` when given)."""
    run = state["run"]
    sends = []
    for claim in state["inquiry"].claims:
        since = run.since or (date(claim.year_start, 1, 1) if claim.year_start else None)
        payload = ClaimPayload(run=run, claim_id=claim.id, claim_text=claim.text, assertions=state["assertions"][claim.id],
                               since=since, exclude=claim.citations)
        sends.append(Send("retrieve_literature", payload))
    return sends


def retrieve_literature(payload: ClaimPayload) -> dict:
    run = payload["run"]
    services = services_for(run)
    found: dict[str, list[Candidate]] = {}
    claim_text = payload["claim_text"]
    for assertion in payload["assertions"]:
        kept: dict[str, Candidate] = {}
        for query in queries_for(assertion.text, claim_text):
            # Each query adds papers the earlier ones did not find: the counter-evidence query would
            # otherwise return the same closest papers again.
            for paper, score in related_papers(services, query.text, since=payload["since"], until=run.run_date,
                                               limit=PER_QUERY, exclude=[*payload["exclude"], *kept],
                                               rank_by=query.rank_by):
                kept[paper.id] = Candidate(paper=paper, relevance=score, why=query.why)
        found[assertion.id] = sorted(kept.values(), key=lambda c: -c.relevance)[:KEEP]
    return {"candidates": found}

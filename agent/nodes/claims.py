"""Stage 1: the inquiry prompt (plus the user's own claims of its audit) becomes structured, dated
claims, each split into its atomic assertions, and each assertion matched to the simulation lab's
propositions it states (the analyst's reading; the lab's result then decides by agent/sim_evidence.py)."""

from __future__ import annotations

from agent.analyst import concurrently
from agent.projects import inquiry_for_run
from agent.services import services_for
from agent.state import AuditState


def load_claims(state: AuditState) -> dict:
    run = state["run"]
    inquiry = inquiry_for_run(run)
    analyst = services_for(run).analyst
    splits = dict(zip([c.id for c in inquiry.claims], concurrently(analyst, analyst.decompose, inquiry.claims)))
    assertions = [a for s in splits.values() for a in s.assertions]
    matched = concurrently(analyst, analyst.propositions, assertions)
    return {"inquiry": inquiry,
            "assertions": {i: s.assertions for i, s in splits.items()},
            "splits": {i: s.how for i, s in splits.items()},
            "propositions": {a.id: [list(m) for m in found] for a, found in zip(assertions, matched, strict=True)}}

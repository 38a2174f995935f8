"""Stage 1: the inquiry prompt (plus the user's own claims of its audit) becomes structured, dated
claims, each split into its atomic assertions."""

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
    return {"inquiry": inquiry,
            "assertions": {i: s.assertions for i, s in splits.items()},
            "splits": {i: s.how for i, s in splits.items()}}

"""Stage 1: the inquiry prompt (plus the user's own claims) becomes structured, dated claims, each
split into its atomic assertions."""

from __future__ import annotations

from agent.claims_store import load_user_claims, read_claims_file
from agent.config import Settings
from agent.inquiry import load_default_inquiry, load_inquiry
from agent.services import services_for
from agent.state import AuditState


def load_claims(state: AuditState) -> dict:
    run = state["run"]
    inquiry = load_inquiry(run.inquiry_path) if run.inquiry_path else load_default_inquiry()
    extra = read_claims_file(run.claims_path) if run.claims_path else load_user_claims(Settings().claims_path)
    claims = inquiry.claims + extra
    analyst = services_for(run).analyst
    splits = {c.id: analyst.decompose(c) for c in claims}
    return {"inquiry": inquiry.model_copy(update={"claims": claims}),
            "assertions": {i: s.assertions for i, s in splits.items()},
            "splits": {i: s.how for i, s in splits.items()}}

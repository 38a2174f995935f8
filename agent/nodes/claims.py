"""Stage 1: the inquiry prompt (plus the user's own claims) becomes structured, dated claims."""

from __future__ import annotations

from agent.claims_store import load_user_claims
from agent.config import Settings
from agent.inquiry import load_default_inquiry, load_inquiry
from agent.state import AuditState


def load_claims(state: AuditState) -> dict:
    run = state["run"]
    inquiry = load_inquiry(run.inquiry_path) if run.inquiry_path else load_default_inquiry()
    user_claims = load_user_claims(run.claims_path or Settings().claims_path)
    return {"inquiry": inquiry.model_copy(update={"claims": inquiry.claims + user_claims})}

"""Stage 1: the inquiry prompt (plus the user's own claims) becomes structured, dated claims."""

from __future__ import annotations

from agent.claims_store import load_user_claims
from agent.config import Settings
from agent.inquiry import default_inquiry_path, load_inquiry
from agent.state import AuditState


def load_claims(state: AuditState) -> dict:
    run = state["run"]
    inquiry = load_inquiry(run.inquiry_path or default_inquiry_path())
    user_claims = load_user_claims(run.claims_path or Settings().claims_path)
    return {"inquiry": inquiry.model_copy(update={"claims": inquiry.claims + user_claims})}

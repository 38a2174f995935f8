"""Stage 4: the analyst grades each retrieved paper's stance on its claim."""

from __future__ import annotations

from agent.services import services_for
from agent.state import AuditState


def assess_stance(state: AuditState) -> dict:
    analyst = services_for(state["run"]).analyst
    evidence = {}
    for claim in state["inquiry"].claims:
        found = state.get("candidates", {}).get(claim.id, [])
        evidence[claim.id] = [analyst.assess(claim, c.paper, c.relevance) for c in found]
    return {"evidence": evidence}

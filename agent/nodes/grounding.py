"""Stage 2: every citation in every claim (and the anchor list) is checked against the source."""

from __future__ import annotations

from agent.services import services_for
from agent.state import AuditState
from tools.grounding import verify_text


def ground_citations(state: AuditState) -> dict:
    run, inquiry = state["run"], state["inquiry"]
    services = services_for(run)
    source, embedder = services.source, services.embedder
    checks = {c.id: verify_text(c.text, source, run_date=run.run_date, embedder=embedder) for c in inquiry.claims}
    anchor_lines = "\n".join(
        f"arXiv:{a.arxiv_id} ({a.year}): {a.label}" if a.year else f"arXiv:{a.arxiv_id}: {a.label}" for a in inquiry.anchors
    )
    if anchor_lines:
        checks["anchors"] = verify_text(anchor_lines, source, run_date=run.run_date, embedder=embedder)
    return {"citations": checks}

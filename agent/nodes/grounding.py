"""Stage 2: every citation in every claim (and the anchor list) is checked against the source.

With a model, each citation whose ID resolved is also put to the analyst's fit question (does this
sentence describe this paper?), and the answer combines with the offline check as
tools/grounding.py `with_model_fit` says: the model reads the content, code keeps identity and year.
"""

from __future__ import annotations

from agent.analyst import Analyst, FitAnswer, concurrently
from agent.services import services_for
from agent.state import AuditState
from tools.grounding import FIT_JUDGED, CitationCheck, verify_text, with_model_fit
from tools.papers import Paper
from tools.sources import PaperSource


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
    if services.llm is not None:
        checks = {key: ask_fit(found, source, services.analyst) for key, found in checks.items()}
    return {"citations": checks}


def ask_fit(checks: list[CitationCheck], source: PaperSource, analyst: Analyst) -> list[CitationCheck]:
    """`checks` with the analyst's fit answer combined into each one whose ID resolved to a paper."""
    return [check if answer is None else with_model_fit(check, answer.fits, f"({answer.confidence:.2f}) {answer.reason}")
            for check, answer in zip(checks, fit_answers(checks, source, analyst))]


def fit_answers(checks: list[CitationCheck | None], source: PaperSource, analyst: Analyst) -> list[FitAnswer | None]:
    """The analyst's answer for each check whose ID resolved to a paper; None for the others."""
    # the source is asked one citation at a time (its arXiv client is not thread-safe), the model several at once
    asks = [(check, _paper(check, source)) for check in checks]

    def ask(item: tuple[CitationCheck | None, Paper | None]) -> FitAnswer | None:
        check, paper = item
        return None if check is None or paper is None else analyst.citation_fit(check.context, paper)

    return concurrently(analyst, ask, asks)


def _paper(check: CitationCheck | None, source: PaperSource) -> Paper | None:
    if check is None or check.status not in FIT_JUDGED or check.arxiv_id is None:
        return None
    found = source.lookup([check.arxiv_id])
    lookup = found.get(check.arxiv_id) or next(iter(found.values()), None)
    return lookup.paper if lookup is not None else None

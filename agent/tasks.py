"""The inquiry's own tasks, each answered from the literature source and the simulations."""

from __future__ import annotations

import re
from datetime import date, timedelta

from agent.assertions import Assertion
from agent.models import Claim, TaskFinding
from agent.nodes.literature import related_papers
from agent.services import services_for
from agent.state import RunConfig
from simulations.analysis import SimAnalysis
from tools.embeddings import Embedder, cosine

# A task's paper must be at least this similar to count as "found".
TASK_RELEVANCE = 0.45

_WINDOW = re.compile(r"last\s+(\d+)\s+(day|week|month|year)s?", re.I)
_HELD_FIXED = re.compile(r"\b(holding|held|fixed|constant|controlling|matched)\b", re.I)
_CONTRADICT = re.compile(r"\b(contradict\w*|refut\w*|counter-?evidence|disagree\w*)\b", re.I)
_PROPOSE = re.compile(r"\b(propose|suggest)\b.*\bquestions?\b", re.I)


def task_window(text: str, run_date: date) -> date | None:
    match = _WINDOW.search(text)
    if not match:
        return None
    n, unit = int(match.group(1)), match.group(2).lower()
    return run_date - timedelta(days=n * {"day": 1, "week": 7, "month": 30.44, "year": 365.25}[unit])


def task_finding(
    task_id: str, text: str, run: RunConfig, claims: list[Claim], assertions: dict[str, list[Assertion]],
    analysis: SimAnalysis | None,
) -> TaskFinding:
    """Answer one of the inquiry's own tasks from the literature source and the simulations.

    Papers found for a task are graded against the assertion the task is closest to; a task that
    asks for contradicting work counts as answered only when a paper qualifies or contradicts it.
    """
    if _PROPOSE.search(text):
        return TaskFinding(
            task_id=task_id, task=text, found=True,
            summary="Answered by the two follow-up questions below, each grounded in this run's results.",
        )
    services = services_for(run)
    since = task_window(text, run.run_date)
    ranked = [(p, s) for p, s in related_papers(services, text, since=since, until=run.run_date, limit=5) if s >= TASK_RELEVANCE]
    claim, assertion = _nearest_assertion(text, claims, assertions, services.embedder)
    graded = [services.analyst.assess(assertion, claim, p, s, "found for this task") for p, s in ranked]
    wants_contradiction = bool(_CONTRADICT.search(text))
    parts, evidence = [], [e.arxiv_id for e in graded]
    if since:
        held = sum(since <= p.published <= run.run_date for p in services.snapshot.papers())
        parts.append(f"Window: since {since.isoformat()}; the offline snapshot holds {held} paper(s) in it.")
    if graded:
        listed = "; ".join(f"{e.arxiv_id} ({e.published.year}) {e.title} — {e.stance or 'undetermined'} "
                           f"[relevance {e.score:.2f}]" for e in graded)
        parts.append(f"Papers that address it, graded against {assertion.id} (\u201c{assertion.text}\u201d): {listed}.")
    else:
        parts.append(f"No paper in the source reached relevance {TASK_RELEVANCE:.2f} to this task.")
    against = [e for e in graded if e.stance in ("qualifies", "contradicts")]
    if wants_contradiction:
        parts.append(
            f"{len(against)} of them qualify or contradict {assertion.id}." if against
            else f"None of them qualifies or contradicts {assertion.id}."
        )
    found = bool(against) if wants_contradiction else any(e.is_evidence for e in graded)
    if analysis is not None and analysis.headline and "ratio" in text.lower() and _HELD_FIXED.search(text):
        parts.append(
            "Our simulations vary the synthetic share at each fixed sampler bias and state what they hold fixed; "
            f"the lab's answer: \u201c{analysis.result}\u201d"
        )
        evidence.append("simulations.result")
        found = True
    return TaskFinding(task_id=task_id, task=text, found=found, summary=" ".join(parts), evidence=evidence)


def _nearest_assertion(
    text: str, claims: list[Claim], assertions: dict[str, list[Assertion]], embedder: Embedder
) -> tuple[Claim, Assertion]:
    pairs = [(c, a) for c in claims for a in assertions[c.id]]
    similarity = cosine(embedder.encode([text]), embedder.encode([a.text for _, a in pairs]))[0]
    return pairs[int(similarity.argmax())]

"""The inquiry's own tasks, each answered from the literature sources and, where the task states a
proposition the simulation lab tests, from the lab.

Every answer says which sources were searched, the window it covered and how many papers were
examined; papers are graded against the assertion the task is nearest to. A task that asks for
contradicting work lists what qualifies or contradicts that assertion (among the papers examined
for the task and the run's own evidence on it), or says plainly that nothing examined did.
"""

from __future__ import annotations

import re
from collections import Counter
from datetime import date, timedelta

from agent.assertions import Assertion
from agent.models import Claim, ClaimAudit, Evidence, TaskFinding
from agent.nodes.literature import search_pool
from agent.services import services_for
from agent.sim_evidence import stated_propositions
from agent.state import RunConfig
from simulations.analysis import SimAnalysis
from tools.embeddings import Embedder, cosine
from tools.retrieval import rerank

# A task's paper must be at least this similar to count as "found".
TASK_RELEVANCE = 0.45
TOP = 5  # papers graded per task

_WINDOW = re.compile(r"last\s+(\d+)\s+(day|week|month|year)s?", re.I)
_CONTRADICT = re.compile(r"\b(contradict\w*|refut\w*|counter-?evidence|disagree\w*)\b", re.I)
_SOURCE_NAMES = {"arxiv": "live arXiv", "snapshot": "offline snapshot", "cache": "cache of earlier live answers"}


def task_window(text: str, run_date: date) -> date | None:
    match = _WINDOW.search(text)
    if not match:
        return None
    n, unit = int(match.group(1)), match.group(2).lower()
    return run_date - timedelta(days=n * {"day": 1, "week": 7, "month": 30.44, "year": 365.25}[unit])


def task_finding(
    task_id: str, text: str, run: RunConfig, claims: list[Claim], assertions: dict[str, list[Assertion]],
    analysis: SimAnalysis | None, audits: list[ClaimAudit] = (), *, follow_up: bool = False,
) -> TaskFinding:
    """Answer one of the inquiry's own tasks from the literature sources and the simulations.
    `follow_up`: the task (or a sub-point of it) asks for follow-up questions, which answer it."""
    if follow_up:
        return TaskFinding(task_id=task_id, task=text, found=True,
                           summary="Answered by the follow-up questions below, each grounded in this run's results.")
    services = services_for(run)
    since = task_window(text, run.run_date)
    pool = search_pool(services, text, since=since, until=run.run_date)
    ranked = [(p, s) for p, s in rerank(text, pool, services.embedder, limit=TOP) if s >= TASK_RELEVANCE]
    claim, assertion = _nearest_assertion(text, claims, assertions, services.embedder)
    graded = [services.analyst.assess(assertion, claim, p, s, "found for this task") for p, s in ranked]
    parts = [_searched(pool, since, run.run_date, services.source.unreachable)]
    if graded:
        listed = "; ".join(f"{e.arxiv_id} ({e.published.year}) {e.title} — {e.stance or 'undetermined'} "
                           f"[relevance {e.score:.2f}]" for e in graded)
        parts.append(f"Papers that address it, graded against {assertion.id} (\u201c{assertion.text}\u201d): {listed}.")
    else:
        parts.append(f"No paper examined reached relevance {TASK_RELEVANCE:.2f} to this task.")
    evidence = [e.arxiv_id for e in graded]
    found = any(e.is_evidence for e in graded)
    if _CONTRADICT.search(text):
        # the run's own evidence on the same assertion counts too: it was examined for this claim
        audited = next((a for c in audits for a in c.assertions if a.id == assertion.id), None)
        in_window = [e for e in (audited.evidence if audited else []) if since is None or e.published >= since]
        against = _against([*graded, *in_window])
        if against:
            parts.append(f"Qualifying or contradicting {assertion.id}: " + "; ".join(
                f"{e.arxiv_id} {e.stance} ({e.title})" for e in against) + ".")
            evidence += [e.arxiv_id for e in against if e.arxiv_id not in evidence]
        else:
            parts.append(f"Nothing examined qualifies or contradicts {assertion.id}.")
        found = bool(against)
    lab = _lab_answer(task_id, text, analysis)
    if lab is not None:
        parts.append(lab[0])
        evidence.append(lab[1])
        # the lab answers a re-test; it is not the contradicting work a contradiction task asks for
        found = found or not _CONTRADICT.search(text)
    return TaskFinding(task_id=task_id, task=text, found=found, summary=" ".join(parts), evidence=evidence)


def _searched(pool, since: date | None, until: date, live_unreachable: bool) -> str:
    by_source = Counter(_SOURCE_NAMES.get(p.source, p.source) for p in pool)
    sources = ", ".join(f"{name} ({n})" for name, n in by_source.most_common()) or "no source returned any paper"
    window = f"from {since.isoformat()} to {until.isoformat()}" if since else f"up to {until.isoformat()}"
    note = "; live arXiv was unreachable, so only offline sources answered" if live_unreachable else ""
    return f"Searched {window}: {len(pool)} paper(s) examined — {sources}{note}."


def _against(evidence: list[Evidence]) -> list[Evidence]:
    seen: dict[str, Evidence] = {}
    for e in evidence:
        if e.stance in ("qualifies", "contradicts") and e.arxiv_id not in seen:
            seen[e.arxiv_id] = e
    return list(seen.values())


def _lab_answer(task_id: str, text: str, analysis: SimAnalysis | None) -> tuple[str, str] | None:
    """The lab's result when the task itself states a proposition the lab tests."""
    if analysis is None:
        return None
    for proposition, _ in stated_propositions(Assertion(id=task_id, text=text, start=0, end=len(text))):
        finding = proposition.decide(analysis)
        if finding is not None:
            return (f"The simulation lab tests \u201c{proposition.statement}\u201d; its result {finding.stance} it: "
                    f"{finding.detail}.", f"simulations.{proposition.key}")
    return None


def _nearest_assertion(
    text: str, claims: list[Claim], assertions: dict[str, list[Assertion]], embedder: Embedder
) -> tuple[Claim, Assertion]:
    pairs = [(c, a) for c in claims for a in assertions[c.id]]
    similarity = cosine(embedder.encode([text]), embedder.encode([a.text for _, a in pairs]))[0]
    return pairs[int(similarity.argmax())]

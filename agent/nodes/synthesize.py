"""Stage 6: per-claim verdicts, the inquiry's own tasks, two follow-up questions, the bottom line.

Everything here is computed from the run's claims, citations, evidence and simulation results;
the only fixed text is sentence scaffolding around those numbers and IDs.
"""

from __future__ import annotations

import re
from datetime import date, timedelta

from agent.models import STANCE_SCORE, Claim, ClaimAudit, Evidence, FollowUpQuestion, TaskFinding
from agent.nodes.literature import related_papers
from agent.nodes.simulate import (
    SIMULATABLE_TAGS,
    band_text,
    bias_label,
    headline_boundaries,
    lab_answer,
    per_real,
    share_text,
    sim_analysis,
    size_label,
)
from agent.services import services_for
from agent.state import AuditState, RunConfig
from simulations.analysis import Boundary, SimAnalysis
from tools.embeddings import Embedder, cosine

# A task or claim paper must be at least this similar to count as "found".
TASK_RELEVANCE = 0.45


def simulation_note(claim: Claim, analysis: SimAnalysis | None) -> str | None:
    """What the simulations say about a claim whose tags they speak to: the lab's answer, quoted."""
    if analysis is None or not set(claim.tags) & SIMULATABLE_TAGS:
        return None
    return f"the simulation lab's answer: \u201c{analysis.result}\u201d"


def synthesize(state: AuditState) -> dict:
    run, inquiry = state["run"], state["inquiry"]
    services = services_for(run)
    analysis = sim_analysis(state)
    audits = []
    for claim in inquiry.claims:
        citations = state["citations"].get(claim.id, [])
        evidence = state["evidence"].get(claim.id, [])
        verdict = services.analyst.judge(claim, evidence, citations, simulation_note(claim, analysis))
        audits.append(
            ClaimAudit(
                id=claim.id, text=claim.text, dated=claim.dated, tags=claim.tags, durability=claim.durability,
                origin=claim.origin, citations=citations, verdict=verdict,
                evidence=sorted(evidence, key=lambda e: -e.score),
            )
        )
    return {
        "audits": audits,
        "tasks": [task_finding(t.id, t.text, run, inquiry.claims, analysis) for t in inquiry.tasks],
        "follow_ups": follow_up_questions(audits, analysis),
        "bottom_line": bottom_line(audits, analysis),
    }


def bottom_line(audits: list[ClaimAudit], analysis: SimAnalysis | None) -> str:
    """The lab's answer, quoted as it computed it, then what the literature retrieved for the ratio claims says."""
    ratio_claims = [a for a in audits if "ratio" in a.tags]
    against = sorted({e.arxiv_id for a in ratio_claims for e in a.evidence if STANCE_SCORE[e.stance] < 0})
    support = sorted({e.arxiv_id for a in ratio_claims for e in a.evidence if STANCE_SCORE[e.stance] > 0})
    flagged = sum(c.status not in ("grounded", "unverifiable") for a in audits for c in a.citations)
    literature = (
        f"Among newer papers retrieved for the {len(ratio_claims)} ratio-related claim(s), {len(support)} agree "
        f"and {len(against)} disagree or qualify. {flagged} citation(s) in the claims could not be grounded."
    )
    if analysis is None:
        return f"{lab_answer(analysis)} {literature}"
    return f"The simulation lab's answer: \u201c{analysis.result}\u201d {literature}"


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
    task_id: str, text: str, run: RunConfig, claims: list[Claim], analysis: SimAnalysis | None
) -> TaskFinding:
    """Answer one of the inquiry's own tasks from the literature source and the simulations.

    Papers found for a task are graded against the claim the task is closest to; a task that asks
    for contradicting work counts as answered only when a paper disagrees with that claim.
    """
    if _PROPOSE.search(text):
        return TaskFinding(
            task_id=task_id, task=text, found=True,
            summary="Answered by the two follow-up questions below, each grounded in this run's results.",
        )
    services = services_for(run)
    since = task_window(text, run.run_date)
    ranked = [(p, s) for p, s in related_papers(services, text, since=since, until=run.run_date, limit=5) if s >= TASK_RELEVANCE]
    claim = _nearest_claim(text, claims, services.embedder)
    graded = [services.analyst.assess(claim, p, s) for p, s in ranked]
    wants_contradiction = bool(_CONTRADICT.search(text))
    parts, evidence = [], [e.arxiv_id for e in graded]
    if since:
        held = sum(since <= p.published <= run.run_date for p in services.snapshot.papers())
        parts.append(f"Window: since {since.isoformat()}; the offline snapshot holds {held} paper(s) in it.")
    if graded:
        listed = "; ".join(f"{e.arxiv_id} ({e.published.year}) {e.title} — {e.stance} [relevance {e.score:.2f}]" for e in graded)
        parts.append(f"Papers that address it, graded against {claim.id}: {listed}.")
    else:
        parts.append(f"No paper in the source reached relevance {TASK_RELEVANCE:.2f} to this task.")
    against = [e for e in graded if STANCE_SCORE[e.stance] < 0]
    if wants_contradiction:
        parts.append(
            f"{len(against)} of them qualify or contradict {claim.id}." if against
            else f"None of them contradicts {claim.id}."
        )
    found = bool(against) if wants_contradiction else bool(graded)
    if analysis is not None and analysis.headline and "ratio" in text.lower() and _HELD_FIXED.search(text):
        parts.append(
            "Our simulations vary the synthetic share at each fixed sampler bias and state what they hold fixed; "
            f"the lab's answer: \u201c{analysis.result}\u201d"
        )
        evidence.append("simulations.result")
        found = True
    return TaskFinding(task_id=task_id, task=text, found=found, summary=" ".join(parts), evidence=evidence)


def _nearest_claim(text: str, claims: list[Claim], embedder: Embedder) -> Claim:
    similarity = cosine(embedder.encode([text]), embedder.encode([c.text for c in claims]))[0]
    return claims[int(similarity.argmax())]


def follow_up_questions(audits: list[ClaimAudit], analysis: SimAnalysis | None) -> list[FollowUpQuestion]:
    first = _question_from_boundaries(audits, analysis) if analysis and analysis.boundaries else None
    return [first or _question_from_grounding(audits), _question_from_disagreement(audits)]


def _question_from_boundaries(audits: list[ClaimAudit], analysis: SimAnalysis) -> FollowUpQuestion:
    """Built on the lowest collapse boundary the lab found (the most fragile setting), or on its absence."""
    rows = headline_boundaries(analysis) or analysis.boundaries
    threshold = 1 - analysis.tolerance
    crossed = [b for b in rows if b.status == "crossed" and b.ratio is not None]
    claims = [a.id for a in audits if {"ratio", "diversity"} & set(a.tags)]
    if crossed:
        b = min(crossed, key=lambda b: b.ratio)
        slice_ = [o for o in rows if (o.family, o.regime, o.hold) == (b.family, b.regime, b.hold)]
        detail = (
            f"In our simulations ({_where(b, analysis)}), a sampler at {bias_label(b.diversity_control, b.diversity)} "
            f"with {size_label(b)} cut the tail's probability mass below {threshold:g} of the real-only "
            f"model's from a synthetic share of {share_text(b)} ({per_real(b.ratio)} synthetic per real; 95% "
            f"bootstrap band {band_text(b)})"
        )
        same = [o for o in slice_ if o.diversity == b.diversity and o is not b]
        if same:
            detail += "; the same sampler " + "; ".join(_crossed_or_not(o) for o in same)
        never = _never_crossed(slice_)
        if never:
            detail += f", while {' and '.join(never)} did not cross up to share {b.tested[1]:g} at any tested size"
        question = (
            f"{detail}. Does a boundary of this kind, a synthetic share that depends on the sampler's bias, hold "
            "for neural language models trained at scale, and what sets where it lies: the bias, the amount of "
            "real data kept, or model capacity?"
        )
    else:
        b = rows[0]
        labels = sorted({bias_label(o.diversity_control, o.diversity) for o in rows})
        names = list(dict.fromkeys(o.regime for o in rows))
        regimes = f"{' and '.join(names)} regime{'s' if len(names) > 1 else ''}"
        held = " and ".join(dict.fromkeys("real count" if o.hold == "real" else "samples per generation" for o in rows))
        question = (
            f"In our simulations ({b.family} family; {regimes}, {held} held fixed), no tested sampler "
            f"({', '.join(labels)}) cut the tail's "
            f"probability mass below {threshold:g} of the real-only model's up to a synthetic share of "
            f"{max(o.tested[1] for o in rows):g}. Does that hold for neural language models trained at scale, or "
            "is there a sampler bias or synthetic share at which they lose the tail?"
        )
    return FollowUpQuestion(
        question=question,
        rationale=(
            "The lab locates, per sampler bias and amount of real data, the synthetic share at which the tail's "
            "probability mass falls below that of a real-only model trained on the same real data, with bootstrap "
            "bands; whether that boundary carries over to other model families, and what moves it, decides "
            "between the share and the sampler as the lever."
        ),
        grounded_in=[f"simulations.boundaries[{analysis.boundaries.index(b)}]", *claims],
    )


def _where(b: Boundary, analysis: SimAnalysis) -> str:
    if b.hold == "real" and b.regime in analysis.headline:
        return f"{b.family} family, {b.regime} regime: {analysis.headline[b.regime]}"
    held = "real count" if b.hold == "real" else "samples per generation"
    return f"{b.family} family, {b.regime} regime, {held} held fixed"


def _crossed_or_not(b: Boundary) -> str:
    if b.status == "crossed" and b.ratio is not None:
        return f"crossed at {share_text(b)} (band {band_text(b)}) with {size_label(b)}"
    if b.status == "below_grid":
        return f"was already past the boundary at the lowest tested share ({b.tested[0]:g}) with {size_label(b)}"
    return f"did not cross up to share {b.tested[1]:g} with {size_label(b)} (band {band_text(b)})"


def _never_crossed(rows: list[Boundary]) -> list[str]:
    """Sampler settings that crossed at no size of the slice."""
    by_bias: dict[float, list[Boundary]] = {}
    for b in rows:
        by_bias.setdefault(b.diversity, []).append(b)
    return [bias_label(bs[0].diversity_control, v) for v, bs in by_bias.items() if all(b.status == "not_reached" for b in bs)]


def _question_from_disagreement(audits: list[ClaimAudit]) -> FollowUpQuestion:
    def disagreement(audit: ClaimAudit) -> tuple[int, int]:
        against = [e for e in audit.evidence if STANCE_SCORE[e.stance] < 0]
        return (len(against), sum(STANCE_SCORE[e.stance] > 0 for e in audit.evidence))

    audit = max(audits, key=disagreement)
    against = [e for e in audit.evidence if STANCE_SCORE[e.stance] < 0]
    support = [e for e in audit.evidence if STANCE_SCORE[e.stance] > 0]
    if against:
        return FollowUpQuestion(
            question=(
                f"Claim {audit.id} ({audit.dated or 'undated'}) is qualified or contradicted by "
                f"{_ids(against)} yet agreed with by {_ids(support) or 'no retrieved paper'}: which experimental "
                f"condition (regime, amount of real data kept, model family) separates these results?"
            ),
            rationale=f"{len(against)} newer paper(s) point the other way on {audit.id}; the disagreement is the "
            "part of the claim most likely to be perishable.",
            grounded_in=[audit.id, *[e.arxiv_id for e in against + support]],
        )
    return _question_from_grounding(audits)


def _question_from_grounding(audits: list[ClaimAudit]) -> FollowUpQuestion:
    weakest = min(audits, key=lambda a: sum(c.status == "grounded" for c in a.citations))
    return FollowUpQuestion(
        question=(
            f"Claim {weakest.id} ({weakest.dated or 'undated'}) has no grounded citation in this run; "
            f"which primary study, if any, supports it, and does {_ids(weakest.evidence[:3]) or 'newer work'} "
            f"bear it out?"
        ),
        rationale="The claim with the least grounding is the weakest point of the inquiry.",
        grounded_in=[weakest.id, *[e.arxiv_id for e in weakest.evidence[:3]]],
    )


def _ids(evidence: list[Evidence]) -> str:
    return ", ".join(e.arxiv_id for e in evidence[:4])


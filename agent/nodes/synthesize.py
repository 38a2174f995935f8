"""Stage 6: per-claim verdicts, the inquiry's own tasks, two follow-up questions, the bottom line.

Everything here is computed from the run's claims, citations, evidence and simulation results;
the only fixed text is sentence scaffolding around those numbers and IDs.
"""

from __future__ import annotations

import re
from datetime import date, timedelta

from agent.models import STANCE_SCORE, Claim, ClaimAudit, Evidence, FollowUpQuestion, TaskFinding
from agent.nodes.literature import related_papers
from agent.nodes.simulate import SimFacts, sim_facts
from agent.services import services_for
from agent.state import AuditState, RunConfig
from tools.embeddings import Embedder, cosine

# A task or claim paper must be at least this similar to count as "found".
TASK_RELEVANCE = 0.45


def simulation_note(claim: Claim, facts: SimFacts | None) -> str | None:
    """What the simulations say about a claim, for claims whose tags they speak to."""
    if facts is None or not set(claim.tags) & {"ratio", "diversity", "tails"}:
        return None
    collapsed, total = facts.collapsed()
    return (
        f"tail loss exceeded {facts.tolerance:g} in {collapsed} of {total} simulated conditions; across the "
        f"matched-diversity block, shares of variance in final tail loss are {facts.share_text('ratio')}, "
        f"{facts.share_text('diversity')}, {facts.share_text('real_amount')}"
    )


def synthesize(state: AuditState) -> dict:
    run, inquiry = state["run"], state["inquiry"]
    services = services_for(run)
    result = state["simulation"]["result"]
    facts = sim_facts(result["analysis"], result["cells"])
    audits = []
    for claim in inquiry.claims:
        citations = state["citations"].get(claim.id, [])
        evidence = state["evidence"].get(claim.id, [])
        verdict = services.analyst.judge(claim, evidence, citations, simulation_note(claim, facts))
        audits.append(
            ClaimAudit(
                id=claim.id, text=claim.text, dated=claim.dated, tags=claim.tags, durability=claim.durability,
                origin=claim.origin, citations=citations, verdict=verdict,
                evidence=sorted(evidence, key=lambda e: -e.score),
            )
        )
    return {
        "audits": audits,
        "tasks": [task_finding(t.id, t.text, run, inquiry.claims, facts) for t in inquiry.tasks],
        "follow_ups": follow_up_questions(audits, facts),
        "bottom_line": bottom_line(audits, facts),
    }


def bottom_line(audits: list[ClaimAudit], facts: SimFacts | None) -> str:
    ratio_claims = [a for a in audits if "ratio" in a.tags]
    against = sorted({e.arxiv_id for a in ratio_claims for e in a.evidence if STANCE_SCORE[e.stance] < 0})
    support = sorted({e.arxiv_id for a in ratio_claims for e in a.evidence if STANCE_SCORE[e.stance] > 0})
    flagged = sum(c.status not in ("grounded", "unverifiable") for a in audits for c in a.citations)
    literature = (
        f"Among newer papers retrieved for the {len(ratio_claims)} ratio-related claim(s), {len(support)} agree "
        f"and {len(against)} disagree or qualify. {flagged} citation(s) in the claims could not be grounded."
    )
    if facts is None:
        return "The simulations did not vary ratio and diversity together, so they cannot separate the two. " + literature
    return f"{simulated_collapse(facts)} {literature}"


def simulated_collapse(facts: SimFacts) -> str:
    """Where the simulations collapsed, and how much the ratio moved tail loss where real data stayed."""
    collapsed, total = facts.collapsed()
    mixing = {regime for regime, ratio, _ in facts.final_loss if ratio < 1}
    mixed_collapsed, mixed_total = facts.collapsed(mixing)
    pure = {regime for regime, ratio, _ in facts.final_loss if ratio >= 1}
    max_ratio = max((ratio for regime, ratio, _ in facts.final_loss if regime in mixing), default=0.0)
    effect = facts.ratio_effect
    change = effect["tail_loss_at_high"] - effect["tail_loss_at_low"]
    direction = "raised" if change > 0 else "lowered"
    return (
        f"In our simulations tail loss exceeded {facts.tolerance:g} of the true tail mass in {collapsed} of {total} "
        f"conditions; with real data in every generation ({', '.join(sorted(mixing)) or 'no such regime'}), "
        f"{mixed_collapsed} of {mixed_total} did, at synthetic ratios up to {max_ratio:g}"
        + (f", while purely synthetic training ({', '.join(sorted(pure))}) collapsed in "
           f"{facts.collapsed(pure)[0]} of {facts.collapsed(pure)[1]}" if pure else "")
        + f". At matched diversity in the {facts.regime} regime, raising the ratio from {effect['low_level']:g} to "
        f"{effect['high_level']:g} {direction} final tail loss by {abs(change):.3f} "
        f"({facts.share_text('ratio')} of its variance; {facts.share_text('diversity')}; "
        f"{facts.share_text('real_amount')})."
    )


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


def task_finding(task_id: str, text: str, run: RunConfig, claims: list[Claim], facts: SimFacts | None) -> TaskFinding:
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
    if facts is not None and "ratio" in text.lower() and _HELD_FIXED.search(text):
        parts.append(f"Our matched-diversity simulations address it directly: {facts.verdict}")
        evidence.append("simulations.analysis.primary")
        found = True
    return TaskFinding(task_id=task_id, task=text, found=found, summary=" ".join(parts), evidence=evidence)


def _nearest_claim(text: str, claims: list[Claim], embedder: Embedder) -> Claim:
    similarity = cosine(embedder.encode([text]), embedder.encode([c.text for c in claims]))[0]
    return claims[int(similarity.argmax())]


def follow_up_questions(audits: list[ClaimAudit], facts: SimFacts | None) -> list[FollowUpQuestion]:
    first = _question_from_thresholds(audits, facts) if facts else _question_from_grounding(audits)
    return [first, _question_from_disagreement(audits)]


def _question_from_thresholds(audits: list[ClaimAudit], facts: SimFacts) -> FollowUpQuestion:
    """Built on the hardest threshold the grid found: where the most diversity was needed, or none sufficed."""
    measure = "diversity target" if facts.diversity_control == "matched" else facts.diversity_control
    missed = [t for t in facts.thresholds if t["min_diversity"] is None]
    reached = [t for t in facts.thresholds if t["min_diversity"] is not None]
    if missed:
        t = missed[0]
        detail = (
            f"in the {t['regime']} regime with {t['data']} per generation, no tested {measure} kept tail loss "
            f"under {facts.tolerance:g} at synthetic ratio {t['ratio']:g}"
        )
    else:
        t = max(reached, key=lambda t: (t["min_diversity"], t["ratio"]))
        detail = (
            f"the most demanding condition ({t['regime']} regime, ratio {t['ratio']:g}, {t['data']} per generation) "
            f"needed {measure} {t['min_diversity']:g} to keep tail loss under {facts.tolerance:g}"
        )
    return FollowUpQuestion(
        question=(
            f"In our simulations {detail}. Does a threshold on that one measure of the synthetic batch keep "
            f"predicting collapse in neural language models trained at scale, or does the minimal diversity "
            f"depend on model capacity and the amount of real data kept?"
        ),
        rationale="The simulations give a minimal-diversity threshold per ratio and regime for one diversity "
        "measure; whether a single measure predicts collapse across model families is what a 'minimal "
        "diversity' answer needs.",
        grounded_in=["simulations.analysis.groups[].thresholds", *[a.id for a in audits if "diversity" in a.tags]],
    )


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


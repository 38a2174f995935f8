"""Stage 6: per-claim verdicts, the inquiry's own tasks, two follow-up questions, the bottom line.

Everything here is computed from the run's claims, citations, evidence and simulation results;
the only fixed text is sentence scaffolding around those numbers and IDs.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date, timedelta

from agent.nodes.literature import related_papers
from agent.models import STANCE_SCORE, Claim, ClaimAudit, Evidence, FollowUpQuestion, TaskFinding
from agent.services import services_for
from agent.state import AuditState, RunConfig

# A task or claim paper must be at least this similar to count as "found".
TASK_RELEVANCE = 0.45


@dataclass(frozen=True)
class SimFacts:
    """The few numbers from the simulation lab's analysis that claims, tasks and questions cite."""

    verdict: str
    ratio_share: float
    diversity_share: float
    real_share: float
    ratio_ci: tuple[float, float]
    diversity_ci: tuple[float, float]
    thresholds: dict[float, float | None]  # rho -> smallest diversity keeping tail loss under tolerance
    tolerance: float
    diversity_measure: str

    @property
    def ratio_dominates(self) -> bool:
        return self.ratio_share > self.diversity_share


def sim_facts(simulation: dict) -> SimFacts:
    analysis = simulation["result"]["analysis"]
    shares = analysis["variance_explained"]
    thresholds = analysis["diversity_threshold"]
    return SimFacts(
        verdict=analysis["verdict"],
        ratio_share=shares["ratio"]["share"],
        diversity_share=shares["diversity"]["share"],
        real_share=shares["real_amount"]["share"],
        ratio_ci=tuple(shares["ratio"]["ci"]),
        diversity_ci=tuple(shares["diversity"]["ci"]),
        thresholds={float(k): v for k, v in thresholds["by_ratio"].items()},
        tolerance=thresholds["tolerance"],
        diversity_measure=thresholds["measure"],
    )


def simulation_note(claim: Claim, facts: SimFacts) -> str | None:
    """What the simulations say about a claim, for claims whose tags they speak to."""
    tags = set(claim.tags)
    notes = []
    if tags & {"ratio", "diversity"}:
        notes.append(
            f"across the sweep the synthetic ratio explains {facts.ratio_share:.0%} "
            f"(95% CI {facts.ratio_ci[0]:.0%}–{facts.ratio_ci[1]:.0%}) of the variance in final tail loss and "
            f"synthetic diversity {facts.diversity_share:.0%} ({facts.diversity_ci[0]:.0%}–{facts.diversity_ci[1]:.0%})"
        )
    if "tails" in tags:
        notes.append(facts.verdict)
    return "; ".join(notes) or None


def synthesize(state: AuditState) -> dict:
    run, inquiry = state["run"], state["inquiry"]
    services = services_for(run)
    facts = sim_facts(state["simulation"])
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
        "tasks": [task_finding(t.id, t.text, run, audits, facts) for t in inquiry.tasks],
        "follow_ups": follow_up_questions(audits, facts),
        "bottom_line": bottom_line(audits, facts),
    }


def bottom_line(audits: list[ClaimAudit], facts: SimFacts) -> str:
    ratio_claims = [a for a in audits if "ratio" in a.tags]
    against = sorted({e.arxiv_id for a in ratio_claims for e in a.evidence if STANCE_SCORE[e.stance] < 0})
    support = sorted({e.arxiv_id for a in ratio_claims for e in a.evidence if STANCE_SCORE[e.stance] > 0})
    lead = "the synthetic ratio" if facts.ratio_dominates else "the diversity of the synthetic data"
    flagged = sum(c.status not in ("grounded", "unverifiable") for a in audits for c in a.citations)
    return (
        f"In our simulations {lead} is the larger driver of tail loss (ratio {facts.ratio_share:.0%} vs "
        f"diversity {facts.diversity_share:.0%} of explained variance; real-data amount {facts.real_share:.0%}). "
        f"Among newer papers retrieved for the {len(ratio_claims)} ratio-related claim(s), {len(support)} agree "
        f"and {len(against)} disagree or qualify. {flagged} citation(s) in the inquiry could not be grounded."
    )


_WINDOW = re.compile(r"last\s+(\d+)\s+(day|week|month|year)s?", re.I)
_HELD_FIXED = re.compile(r"\b(holding|held|fixed|constant|controlling|matched)\b", re.I)
_PROPOSE = re.compile(r"\b(propose|suggest)\b.*\bquestions?\b", re.I)


def task_window(text: str, run_date: date) -> date | None:
    match = _WINDOW.search(text)
    if not match:
        return None
    n, unit = int(match.group(1)), match.group(2).lower()
    return run_date - timedelta(days=n * {"day": 1, "week": 7, "month": 30.44, "year": 365.25}[unit])


def task_finding(task_id: str, text: str, run: RunConfig, audits: list[ClaimAudit], facts: SimFacts) -> TaskFinding:
    """Answer one of the inquiry's own tasks from the literature source and the simulations."""
    if _PROPOSE.search(text):
        return TaskFinding(
            task_id=task_id, task=text, found=True,
            summary="Answered by the two follow-up questions below, each grounded in this run's results.",
        )
    services = services_for(run)
    since = task_window(text, run.run_date)
    ranked = [(p, s) for p, s in related_papers(services, text, since=since, until=run.run_date, limit=5) if s >= TASK_RELEVANCE]
    window = f" published since {since.isoformat()}" if since else ""
    parts, evidence = [], [p.id for p, _ in ranked]
    if ranked:
        listed = "; ".join(f"{p.id} ({p.published.year}) {p.title} [relevance {s:.2f}]" for p, s in ranked)
        parts.append(f"Papers{window} that address it: {listed}.")
    else:
        newest = max((p.published for p in services.snapshot.papers()), default=None)
        parts.append(
            f"No paper{window} in the source reached relevance {TASK_RELEVANCE:.2f} to this task"
            + (f" (the offline snapshot's newest paper is from {newest.isoformat()})." if newest else ".")
        )
    if "ratio" in text.lower() and _HELD_FIXED.search(text):
        parts.append(f"Our matched-diversity simulations address it directly: {facts.verdict}")
        evidence.append("simulations.analysis.variance_explained")
    return TaskFinding(task_id=task_id, task=text, found=bool(ranked) or len(parts) > 1, summary=" ".join(parts), evidence=evidence)


def follow_up_questions(audits: list[ClaimAudit], facts: SimFacts) -> list[FollowUpQuestion]:
    return [_question_from_thresholds(audits, facts), _question_from_disagreement(audits)]


def _question_from_thresholds(audits: list[ClaimAudit], facts: SimFacts) -> FollowUpQuestion:
    reached = {rho: d for rho, d in facts.thresholds.items() if d is not None}
    never = sorted(rho for rho, d in facts.thresholds.items() if d is None)
    diversity_claims = [a.id for a in audits if "diversity" in a.tags]
    if reached:
        top = max(reached)
        detail = (
            f"at synthetic ratio {top:g} the smallest {facts.diversity_measure} keeping tail loss under "
            f"{facts.tolerance:g} was {reached[top]:.3g}"
        )
    else:
        detail = f"no tested {facts.diversity_measure} kept tail loss under {facts.tolerance:g} at any ratio"
    if never:
        detail += f"; at ratio {', '.join(f'{r:g}' for r in never)} no tested diversity did"
    return FollowUpQuestion(
        question=(
            f"In our simulations {detail}. Does that threshold, measured as {facts.diversity_measure} of the "
            f"synthetic batch, transfer to neural language models trained at scale, or does the minimal diversity "
            f"depend on model capacity?"
        ),
        rationale="The simulations give a threshold curve for one diversity measure; whether a single measure "
        "predicts collapse across model families is what the inquiry's 'minimal diversity' question needs.",
        grounded_in=["simulations.analysis.diversity_threshold", *diversity_claims],
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
    weakest = min(audits, key=lambda a: sum(c.status == "grounded" for c in a.citations))
    return FollowUpQuestion(
        question=(
            f"Claim {weakest.id} ({weakest.dated or 'undated'}) has no grounded citation in this run; "
            f"which primary study, if any, supports it, and does {_ids(weakest.evidence[:3]) or 'newer work'} "
            f"bear it out?"
        ),
        rationale="No retrieved paper disagrees with any claim, so the weakest point is the claim with the least "
        "grounding.",
        grounded_in=[weakest.id, *[e.arxiv_id for e in weakest.evidence[:3]]],
    )


def _ids(evidence: list[Evidence]) -> str:
    return ", ".join(e.arxiv_id for e in evidence[:4])


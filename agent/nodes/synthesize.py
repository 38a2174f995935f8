"""Stage 6: verdicts by the calculus (agent/verdicts.py), then the tasks, follow-ups and bottom line.

Per assertion, the evidence is the newer papers' stances, the claim's cited papers' stances and the
simulation lab's result where the assertion states a lab proposition (agent/sim_evidence.py); the
assertion's verdict and the claim's verdict and durability follow by fixed rules. The analyst, offline
or a model, only judged the stances.
"""

from __future__ import annotations

from agent.assertions import Assertion
from agent.models import AssertionAudit, Claim, ClaimAudit, Evidence, SimulationStance, Verdict
from agent.narrative import bottom_line, follow_up_questions, proposal_task
from agent.nodes.simulate import sim_analysis, skipped_because
from agent.services import services_for
from agent.sim_evidence import simulation_stances
from agent.state import AuditState
from agent.tasks import task_finding
from agent.verdicts import Judged, assertion_verdict, claim_verdict
from simulations.analysis import SimAnalysis


def synthesize(state: AuditState) -> dict:
    run, inquiry = state["run"], state["inquiry"]
    analysis, skipped = sim_analysis(state), skipped_because(state)
    services = services_for(run)
    judged_by = services.analyst.judged_by
    audits = [
        audit_claim(claim, state["assertions"][claim.id], state["evidence"], state["cited"],
                    state["citations"].get(claim.id, []), analysis, judged_by,
                    split=state.get("splits", {}).get(claim.id, ""),
                    no_lab="no simulation ran in this audit (see the simulation section)" if skipped else None,
                    matched=state.get("propositions"))
        for claim in inquiry.claims
    ]
    asked = proposal_task(inquiry.tasks)
    follow_up_ids = {asked[0].id, *(t.id for t in asked[1])} if asked else set()
    return {
        "audits": audits,
        "tasks": [task_finding(t.id, t.text, run, inquiry.claims, state["assertions"], analysis, audits,
                               follow_up=t.id in follow_up_ids)
                  for t in inquiry.tasks],
        "follow_ups": follow_up_questions(audits, analysis, inquiry.tasks, services.embedder),
        "bottom_line": bottom_line(audits, analysis, skipped),
    }


def _judged(e: Evidence, source: str) -> Judged:
    return Judged(source=source, ref=e.arxiv_id, stance=e.stance, confidence=e.confidence, newer_than_claim=e.newer_than_claim)


def audit_claim(claim: Claim, assertions: list[Assertion], evidence: dict[str, list[Evidence]],
                cited: dict[str, list[Evidence]], citations, analysis: SimAnalysis | None, judged_by,
                split: str = "", no_lab: str | None = None, matched: dict[str, list] | None = None) -> ClaimAudit:
    per_assertion, audited = [], []
    for assertion in assertions:
        found = sorted(evidence.get(assertion.id, []), key=lambda e: -e.score)
        own = cited.get(assertion.id, [])
        lab = simulation_stances(assertion, analysis, _matched(matched, assertion.id))
        judged = [_judged(e, "literature") for e in found] + [_judged(e, "cited") for e in own] + [s.judged for s in lab]
        verdict = assertion_verdict(judged)
        per_assertion.append((verdict, judged))
        note = ("it states (or denies) a proposition the simulation lab decides: " + "; ".join(
                    f"{'denies' if s.denies else 'states'} that {s.proposition}" for s in lab) if lab
                else "no simulation result bears on it: it states none of the lab's propositions"
                if analysis is not None else (no_lab or "no simulations were run"))
        audited.append(AssertionAudit(
            id=assertion.id, text=assertion.text, scope=assertion.scope, label=verdict.label, rests_on=verdict.rests_on,
            reason=verdict.reason, evidence=found, cited=own,
            simulation=[SimulationStance(key=s.judged.ref, proposition=s.proposition, denies=s.denies,
                                         stance=s.judged.stance, detail=s.detail) for s in lab],
            simulation_note=note,
        ))
    overall = claim_verdict(per_assertion)
    rationale = "; ".join(f"{a.id} {a.label.replace('_', ' ')} ({', '.join(a.rests_on) or a.reason})" for a in audited)
    return ClaimAudit(
        id=claim.id, text=claim.text, dated=claim.dated, tags=claim.tags, durability=claim.durability,
        origin=claim.origin, citations=citations,
        verdict=Verdict(label=overall.label, rationale=f"{overall.reason}: {rationale}.", durability=overall.durability,
                        durability_reason=overall.durability_reason, judged_by=judged_by),
        assertions=audited,
        split=split,
        evidence=sorted((e for a in audited for e in a.evidence), key=lambda e: -e.score),
        citation_support=citation_support(citations, audited),
    )


def citation_support(citations, assertions: list[AssertionAudit]) -> str:
    """Whether the claim's grounded citations support what they are cited for, in words, with the
    better-fitting sources the search found when they do not."""
    grounded = [c.arxiv_id for c in citations if c.status == "grounded" and c.arxiv_id]
    if not grounded:
        return "The claim has no grounded citation, so no cited source could be checked for support."
    judged = [e for a in assertions for e in a.cited]
    supporting = sorted({e.arxiv_id for e in judged if e.stance in ("supports", "qualifies")})
    if supporting:
        against = sorted({e.arxiv_id for e in judged if e.stance == "contradicts"} - set(supporting))
        return (f"Cited and supporting (or qualifying) at least one assertion: {', '.join(supporting)}."
                + (f" Cited but contradicting: {', '.join(against)}." if against else ""))
    unheld = [i for i in grounded if i not in {e.arxiv_id for e in judged}]
    stances = sorted({f"{e.arxiv_id} {e.stance or 'undetermined'}" for e in judged})
    better = sorted({e.arxiv_id for a in assertions for e in a.evidence if e.stance == "supports"})
    return (
        f"The cited paper(s) {', '.join(grounded)} exist, but none was found to support the assertions it is cited for"
        + (f" ({'; '.join(stances)})" if stances else "")
        + (f"; no text is held for {', '.join(unheld)}" if unheld else "")
        + (f". Better-fitting sources found: {', '.join(better)}." if better else ". No better-fitting source was found.")
    )


def _matched(matched: dict[str, list] | None, assertion_id: str) -> list[tuple[str, bool]] | None:
    """The analyst's proposition matches for one assertion; None (the registry's patterns decide) for
    runs checkpointed before matches were recorded."""
    if matched is None or assertion_id not in matched:
        return None
    return [(key, bool(denies)) for key, denies in matched[assertion_id]]

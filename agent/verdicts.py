"""The verdict calculus: pure functions from judged evidence to assertion and claim verdicts.

One module, used by the offline and the LLM analyst alike: a judge (heuristic or model) only says
what each source's stance toward an assertion is; the labels below follow from those stances by
these rules, never from the judge itself.

Evidence: only `supports`, `qualifies` and `contradicts` count. `background` (on topic, takes no
position) is context and `unrelated` is noise; an abstention (stance None, "undetermined") counts
as nothing. A cited paper being real (grounded) is not a stance at all.

Assertion verdict, from the distinct sources with an evidence stance:
- supported:             some support, no qualification, no contradiction;
- partly_supported:      qualifications (holds only under conditions or in part), no contradiction;
- contested:             contradiction alongside support or qualification;
- refuted:               contradiction only;
- insufficient_evidence: no source takes a position.

Claim verdict, from its assertions: supported when every assertion is; refuted when one is refuted
and none supported; contested when any is contested or refuted; insufficient_evidence when none has
evidence; otherwise partly_supported (some assertions hold, others hold in part or lack evidence).

Durability: durable when the claim is supported by at least two independent sources, at least one of
them newer than the claim (or a simulation result), and nothing newer contradicts or qualifies it.
The claim's own citations are where it came from, not replications, so they do not count toward
the two;
perishable when newer work contradicts or qualifies it; unassessed otherwise. Each comes with its reason.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel

Stance = Literal["supports", "qualifies", "contradicts", "background", "unrelated"]
EVIDENCE_STANCES: tuple[str, ...] = ("supports", "qualifies", "contradicts")
SourceKind = Literal["literature", "cited", "simulation"]
VerdictLabel = Literal["supported", "partly_supported", "contested", "refuted", "insufficient_evidence"]
Durability = Literal["durable", "perishable", "unassessed"]


class Judged(BaseModel):
    """One source's stance toward one assertion, as a judge gave it."""

    source: SourceKind
    ref: str  # an arXiv ID, or a simulation proposition key
    stance: Stance | None  # None: the judge abstained (undetermined)
    confidence: float = 1.0
    newer_than_claim: bool = False


class AssertionVerdict(BaseModel):
    label: VerdictLabel
    rests_on: list[str]  # "ref stance" for every source that took a position
    reason: str


class ClaimVerdict(BaseModel):
    label: VerdictLabel
    durability: Durability
    durability_reason: str
    reason: str


def _positions(evidence: list[Judged]) -> dict[str, list[Judged]]:
    """Evidence stances by kind, one vote per source (its most confident judgement)."""
    best: dict[str, Judged] = {}
    for item in evidence:
        if item.stance in EVIDENCE_STANCES and (item.ref not in best or item.confidence > best[item.ref].confidence):
            best[item.ref] = item
    return {stance: [j for j in best.values() if j.stance == stance] for stance in EVIDENCE_STANCES}


def assertion_verdict(evidence: list[Judged]) -> AssertionVerdict:
    by = _positions(evidence)
    support, qualify, contra = by["supports"], by["qualifies"], by["contradicts"]
    rests_on = [f"{j.ref} {j.stance}" for j in support + qualify + contra]
    if contra and (support or qualify):
        label: VerdictLabel = "contested"
    elif contra:
        label = "refuted"
    elif qualify:
        label = "partly_supported"
    elif support:
        label = "supported"
    else:
        label = "insufficient_evidence"
    context = sum(j.stance in ("background", "unrelated") for j in evidence)
    undetermined = sum(j.stance is None for j in evidence)
    reason = (f"{len(support)} source(s) support, {len(qualify)} qualify, {len(contra)} contradict"
              + (f"; {context} on-topic or unrelated source(s) take no position" if context else "")
              + (f"; {undetermined} undetermined" if undetermined else ""))
    return AssertionVerdict(label=label, rests_on=rests_on, reason=reason)


def claim_label(assertions: list[AssertionVerdict]) -> VerdictLabel:
    labels = [a.label for a in assertions]
    if not labels or all(label == "insufficient_evidence" for label in labels):
        return "insufficient_evidence"
    if all(label == "supported" for label in labels):
        return "supported"
    if "refuted" in labels and "supported" not in labels and "partly_supported" not in labels:
        return "refuted"
    if "contested" in labels or "refuted" in labels:
        return "contested"
    return "partly_supported"


def durability(evidence: list[Judged], label: VerdictLabel) -> tuple[Durability, str]:
    by = _positions(evidence)
    newer_against = [j.ref for j in by["contradicts"] + by["qualifies"] if j.newer_than_claim or j.source == "simulation"]
    if newer_against:
        return "perishable", f"newer evidence contradicts or qualifies it: {', '.join(sorted(set(newer_against)))}"
    support = [j for j in by["supports"] if j.source != "cited"]
    fresh = [j.ref for j in support if j.newer_than_claim or j.source == "simulation"]
    if label == "supported" and len(support) >= 2 and fresh:
        return "durable", (f"supported by {len(support)} independent sources, {len(fresh)} of them newer than the claim "
                           f"or from the simulations ({', '.join(sorted(fresh))}), and nothing newer points against it")
    return "unassessed", "too little independent, newer evidence to say whether it will last"


def claim_verdict(per_assertion: list[tuple[AssertionVerdict, list[Judged]]]) -> ClaimVerdict:
    verdicts = [v for v, _ in per_assertion]
    label = claim_label(verdicts)
    state, why = durability([j for _, evidence in per_assertion for j in evidence], label)
    counts = {k: sum(v.label == k for v in verdicts) for k in ("supported", "partly_supported", "contested", "refuted",
                                                                 "insufficient_evidence")}
    reason = ", ".join(f"{n} assertion(s) {k.replace('_', ' ')}" for k, n in counts.items() if n)
    return ClaimVerdict(label=label, durability=state, durability_reason=why, reason=reason)

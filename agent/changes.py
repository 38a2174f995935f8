"""What changed between two runs of one audit: a pure diff of their stored records (agent/store.py).

`collapse-audit recheck` runs the audit again and compares the new run's record with the earlier
run's, as the run store holds it. Claims are matched by their text (ignoring case and spacing),
assertions within a claim by theirs, so a renumbering never reads as a change. Reported:

- claims added or removed;
- per claim, a verdict or durability change, with the assertion verdicts that moved it;
- per assertion, papers listed now and not before (new) and the reverse (dropped), each with its
  stance — papers judged unrelated are left out, as the report lists them apart —; papers judged in
  both runs whose stance changed; a verdict change, with the positions behind it that changed;
- citation statuses that changed (per claim, and the anchor list's);
- the simulation lab's one-sentence result (or why none ran), when it changed.

`changes_view` words a diff for the report's "What changed" section (md and html alike).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date
from typing import TYPE_CHECKING

from pydantic import BaseModel

from agent.models import (
    AssertionChange,
    CitationChange,
    ClaimChange,
    ClaimRef,
    EvidenceMove,
    PaperChange,
    StanceChange,
    WhatChanged,
)
from agent.store import AssertionRecord, AuditRecord, CitationRecord, ClaimRecord, PaperSeen, audit_record

if TYPE_CHECKING:
    from agent.models import Report


class Baseline(BaseModel):
    """The run a re-check compares with, as the graph carries it (`AuditState.baseline`, JSON form)."""

    run_id: str
    run_date: date | None = None
    audit: AuditRecord


def since_baseline(baseline: dict, report: Report, *, since: date | None) -> WhatChanged:
    """What changed from the baseline run to the run whose report this is."""
    earlier = Baseline.model_validate(baseline)
    return compare(earlier.audit, audit_record(report), against=earlier.run_id, against_date=earlier.run_date, since=since)


def compare(before: AuditRecord, after: AuditRecord, *, against: str, against_date: date | None = None,
            since: date | None = None) -> WhatChanged:
    """The diff of two runs' records: `before` the earlier run's, `after` the later one's."""
    old = {_key(c.text): c for c in before.claims}
    new = {_key(c.text): c for c in after.claims}
    claims: list[ClaimChange] = []
    assertions: list[AssertionChange] = []
    citations: list[CitationChange] = []
    for key, claim in new.items():
        if key not in old:
            continue
        earlier = old[key]
        changed = _assertion_changes(earlier, claim)
        assertions += changed
        citations += _citation_changes(claim.id, earlier.citations, claim.citations)
        if (earlier.label, earlier.durability) != (claim.label, claim.durability):
            claims.append(ClaimChange(
                claim_id=claim.id, text=claim.text, verdict_before=earlier.label, verdict_after=claim.label,
                durability_before=earlier.durability, durability_after=claim.durability,
                moved_by=[f"{c.assertion_id}: {_label(c.verdict_before, 'new')} → {_label(c.verdict_after, 'gone')}"
                          for c in changed if c.verdict_before != c.verdict_after],
            ))
    citations += _citation_changes("anchors", before.anchor_citations, after.anchor_citations)
    sim_changed = before.simulation != after.simulation
    diff = WhatChanged(
        against=against, against_date=against_date, since=since, changed=False, summary="",
        claims_added=[ClaimRef(id=c.id, text=c.text) for k, c in new.items() if k not in old],
        claims_removed=[ClaimRef(id=c.id, text=c.text) for k, c in old.items() if k not in new],
        claims=claims, assertions=assertions, citations=citations,
        simulation_before=before.simulation if sim_changed else None,
        simulation_after=after.simulation if sim_changed else None,
    )
    diff.changed = bool(diff.claims_added or diff.claims_removed or claims or assertions or citations or sim_changed)
    diff.summary = summary(diff)
    return diff


def _key(text: str) -> str:
    return " ".join(text.lower().split())


def _label(label: str | None, missing: str) -> str:
    return label if label is not None else missing


def _assertion_changes(before: ClaimRecord, after: ClaimRecord) -> list[AssertionChange]:
    old = {_key(a.text): a for a in before.assertions}
    new = {_key(a.text): a for a in after.assertions}
    pairs = [(old.get(k), a) for k, a in new.items()] + [(a, None) for k, a in old.items() if k not in new]
    changes = [_assertion_change(after.id, b, a) for b, a in pairs]
    return [c for c in changes if c is not None]


def _assertion_change(claim_id: str, before: AssertionRecord | None, after: AssertionRecord | None) -> AssertionChange | None:
    old = _papers(before)
    new = _papers(after)
    shown = lambda p: p.stance != "unrelated"  # noqa: E731 — the report lists unrelated papers apart
    added = [_paper(p) for k, p in new.items() if k not in old and shown(p)]
    dropped = [_paper(p) for k, p in old.items() if k not in new and shown(p)]
    stances = [StanceChange(arxiv_id=p.arxiv_id, title=p.title, before=old[k].stance, after=p.stance, cited=p.cited)
               for k, p in new.items() if k in old and old[k].stance != p.stance]
    label_before = before.label if before else None
    label_after = after.label if after else None
    positions_before, positions_after = _positions(before), _positions(after)
    moved = [EvidenceMove(ref=ref, before=positions_before.get(ref), after=positions_after.get(ref))
             for ref in dict.fromkeys([*positions_before, *positions_after])
             if positions_before.get(ref) != positions_after.get(ref)]
    if not (added or dropped or stances or label_before != label_after):
        return None
    current = after or before
    assert current is not None
    return AssertionChange(
        claim_id=claim_id, assertion_id=current.id, text=current.text, new_papers=added, dropped_papers=dropped,
        stance_changes=stances, verdict_before=label_before, verdict_after=label_after,
        moved_by=moved if label_before != label_after else [],
    )


def _papers(assertion: AssertionRecord | None) -> dict[tuple[str, bool], PaperSeen]:
    return {(p.arxiv_id, p.cited): p for p in assertion.papers} if assertion else {}


def _paper(p: PaperSeen) -> PaperChange:
    return PaperChange(arxiv_id=p.arxiv_id, title=p.title, published=p.published, stance=p.stance, cited=p.cited)


def _positions(assertion: AssertionRecord | None) -> dict[str, str]:
    """REF → stance for every source the verdict rests on ('2404.01413 supports')."""
    if assertion is None:
        return {}
    return dict(item.rsplit(" ", 1) for item in assertion.rests_on if " " in item)


def _citation_changes(where: str, before: list[CitationRecord], after: list[CitationRecord]) -> list[CitationChange]:
    key = lambda c: c.arxiv_id or c.as_written  # noqa: E731
    old = {key(c): c for c in before}
    new = {key(c): c for c in after}
    changes = []
    for k in dict.fromkeys([*new, *old]):
        b, a = old.get(k), new.get(k)
        if (b.status if b else None) != (a.status if a else None):
            shown = a or b
            assert shown is not None
            changes.append(CitationChange(where=where, as_written=shown.as_written, arxiv_id=shown.arxiv_id,
                                          before=b.status if b else None, after=a.status if a else None))
    return changes


def _n(count: int, one: str, many: str | None = None) -> str:
    return f"{count} {one if count == 1 else (many or one + 's')}"


def summary(diff: WhatChanged) -> str:
    """One sentence: what changed since the earlier run, or that nothing did."""
    when = f" ({diff.against_date})" if diff.against_date else ""
    if not diff.changed:
        return (f"Nothing changed since run {diff.against}{when}: the same papers with the same stances, "
                "the same verdicts and the same citation statuses.")
    new = sum(len(a.new_papers) for a in diff.assertions)
    dropped = sum(len(a.dropped_papers) for a in diff.assertions)
    stances = sum(len(a.stance_changes) for a in diff.assertions)
    verdicts = [a for a in diff.assertions if a.verdict_before != a.verdict_after]
    parts = []
    if diff.claims_added or diff.claims_removed:
        parts.append(f"{_n(len(diff.claims_added), 'claim')} added and {len(diff.claims_removed)} removed")
    if diff.claims:
        parts.append(f"{_n(len(diff.claims), 'claim verdict')} changed ("
                     + ", ".join(f"{c.claim_id} {_words(c.verdict_before)} → {_words(c.verdict_after)}"
                                 if c.verdict_before != c.verdict_after else f"{c.claim_id} durability "
                                 f"{c.durability_before} → {c.durability_after}" for c in diff.claims) + ")")
    if verdicts:
        parts.append(f"{_n(len(verdicts), 'assertion verdict')} changed")
    if new:
        parts.append(f"{_n(new, 'new paper')} for {_n(len({a.assertion_id for a in diff.assertions if a.new_papers}), 'assertion')}")
    if dropped:
        parts.append(f"{_n(dropped, 'paper')} no longer listed")
    if stances:
        parts.append(f"{_n(stances, 'stance change')}")
    if diff.citations:
        parts.append(f"{_n(len(diff.citations), 'citation status', 'citation statuses')} changed")
    if diff.simulation_before is not None:
        parts.append("the simulation lab's result changed")
    return f"Since run {diff.against}{when}: " + "; ".join(parts) + "."


def _words(label: str | None) -> str:
    return label.replace("_", " ") if label else "none"


def _stance(stance: str | None) -> str:
    return stance or "undetermined"


def _ref(ref: str) -> str:
    return ref if ref.startswith("simulations.") else f"arXiv:{ref}"


def _moves(moves: list[EvidenceMove]) -> str:
    return ", ".join(f"{_ref(m.ref)} ({m.before or 'no position'} → {m.after or 'no position'})" for m in moves)


@dataclass
class ChangesView:
    """A diff worded for the report: a summary sentence, then titled lists of plain lines."""

    summary: str
    sections: list[tuple[str, list[str]]] = field(default_factory=list)


def changes_view(diff: WhatChanged) -> ChangesView:
    window = f" Literature since {diff.since}." if diff.since else ""
    view = ChangesView(summary=diff.summary + window)
    add = lambda title, lines: view.sections.append((title, lines)) if lines else None  # noqa: E731
    add("Claims added", [f"{c.id}: {c.text}" for c in diff.claims_added])
    add("Claims removed", [f"{c.id}: {c.text}" for c in diff.claims_removed])
    verdicts = [
        f"{c.claim_id}: {_words(c.verdict_before)} → {_words(c.verdict_after)}"
        + (f" (durability {c.durability_before} → {c.durability_after})" if c.durability_before != c.durability_after else "")
        + (f"; moved by {'; '.join(m.replace('_', ' ') for m in c.moved_by)}" if c.moved_by else "")
        for c in diff.claims
    ] + [
        f"{a.assertion_id}: {_words(a.verdict_before) if a.verdict_before else 'new assertion'} → "
        f"{_words(a.verdict_after) if a.verdict_after else 'no longer an assertion'}"
        + (f"; moved by {_moves(a.moved_by)}" if a.moved_by else "")
        for a in diff.assertions if a.verdict_before != a.verdict_after
    ]
    add("Verdicts", verdicts)
    add("New papers", [f"{a.assertion_id}: arXiv:{p.arxiv_id}{f' ({p.published})' if p.published else ''} “{p.title}” — "
                       f"{_stance(p.stance)}{' (cited by the claim)' if p.cited else ''}"
                       for a in diff.assertions for p in a.new_papers])
    add("Papers no longer listed", [f"{a.assertion_id}: arXiv:{p.arxiv_id} “{p.title}” (was {_stance(p.stance)})"
                                    for a in diff.assertions for p in a.dropped_papers])
    add("Stance changes", [f"{a.assertion_id}: arXiv:{s.arxiv_id} “{s.title}”: {_stance(s.before)} → {_stance(s.after)}"
                           for a in diff.assertions for s in a.stance_changes])
    add("Citation statuses", [f"{c.where}: {c.arxiv_id or c.as_written}: {c.before or 'not cited'} → {c.after or 'no longer cited'}"
                              for c in diff.citations])
    if diff.simulation_before is not None:
        add("Simulation lab", [f"before: {diff.simulation_before}", f"now: {diff.simulation_after}"])
    return view

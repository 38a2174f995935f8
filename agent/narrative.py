"""The narrative around the verdicts: the bottom line and the follow-up questions.

Computed from the run's audits and simulation results; the only fixed text is sentence scaffolding
around those numbers and IDs.
"""

from __future__ import annotations

import re
from collections import Counter

from agent.assertions import Assertion
from agent.models import AssertionAudit, ClaimAudit, Evidence, FollowUpQuestion, Task
from agent.nodes.simulate import (
    band_text,
    bias_label,
    crossing_text,
    headline_boundaries,
    lab_answer,
    per_real,
    share_text,
    size_label,
)
from agent.sim_evidence import PROPOSITIONS, stated_propositions
from simulations.analysis import Boundary, SimAnalysis
from tools.embeddings import Embedder, cosine


def bottom_line(audits: list[ClaimAudit], analysis: SimAnalysis | None, skipped: str | None = None) -> str:
    """The lab's answer, quoted as it computed it (or why no simulation ran), then what the literature
    retrieved for the claims says."""
    verdicts = Counter(a.verdict.label for a in audits)
    stances = Counter(e.stance for a in audits for e in a.evidence)
    flagged = sum(c.flagged for a in audits for c in a.citations)
    listed = ", ".join(f"{n} {label.replace('_', ' ')}" for label, n in verdicts.most_common())
    literature = (
        f"Of {len(audits)} claim(s): {listed}. Papers retrieved per assertion: {stances['supports']} "
        f"support, {stances['qualifies']} qualify and {stances['contradicts']} contradict the assertion they were "
        f"graded against; {stances['background']} were on topic without taking a position and "
        f"{stances[None]} could not be decided, neither counted as evidence. {flagged} citation(s) in the claims "
        "were flagged."
    )
    if skipped is not None:
        return f"{literature} {skipped}"
    if analysis is None:
        return f"{lab_answer(analysis)} {literature}"
    return f"The simulation lab's answer: \u201c{analysis.result}\u201d {literature}"


_PROPOSE = re.compile(r"\b(propose|suggest|pose)\b.*\bquestions?\b", re.I)
_COUNT = re.compile(r"\b(propose|suggest|pose)\s+(?P<n>\d+|one|two|three|four)\b", re.I)
_NUMBER = {"one": 1, "two": 2, "three": 3, "four": 4}


def proposal_task(tasks: list[Task]) -> tuple[Task, list[Task]] | None:
    """The inquiry's task that asks for follow-up questions, with its sub-points ("3" with "3a", "3b")."""
    main = next((t for t in tasks if _PROPOSE.search(t.text)), None)
    if main is None:
        return None
    subs = [t for t in tasks if t.id != main.id and t.id.startswith(main.id) and t.id[len(main.id):].isalpha()]
    return main, subs


def follow_up_questions(
    audits: list[ClaimAudit], analysis: SimAnalysis | None, tasks: list[Task], embedder: Embedder,
) -> list[FollowUpQuestion]:
    """The inquiry's own follow-up task answered from this run: one question per sub-point it lists
    (as many as it asks for), each the sub-point's wording followed by what the run found nearest to
    it (the lab's result when the lab ran, the nearest assertion's evidence). An inquiry without such
    a task gets two questions from the run alone: the lab's boundary (or the least grounded claim),
    and the sharpest disagreement between sources."""
    asked = proposal_task(tasks)
    first = _question_from_boundaries(audits, analysis) if analysis and analysis.boundaries else None
    from_run = [first or _question_from_grounding(audits), _question_from_disagreement(audits)]
    if asked is None:
        return from_run
    main, subs = asked
    count = _COUNT.search(main.text)
    wanted = (int(count.group("n")) if count.group("n").isdigit() else _NUMBER[count.group("n").lower()]) if count else 2
    if not subs:  # the task names no sub-points: the run's own questions, as many as it asks for
        return from_run[:wanted]
    used: set[str] = set()  # lab propositions already asked about: each question brings its own result
    return [_answer_point(point, audits, analysis, embedder, used) for point in subs[:wanted]]


def _answer_point(point: Task, audits: list[ClaimAudit], analysis: SimAnalysis | None,
                  embedder: Embedder, used: set[str]) -> FollowUpQuestion:
    claim, assertion = _nearest(point.text, audits, embedder)
    positions = [f"{r}" for r in assertion.rests_on]
    on_topic = [e.arxiv_id for e in assertion.evidence if e.stance in ("background", None)][:3]
    found = (f"{assertion.id} (\u201c{assertion.text}\u201d) is rated {assertion.label.replace('_', ' ')}"
             + (f", resting on {', '.join(positions)}" if positions else
                f": no source examined takes a position on it{' (on topic without a position: ' + ', '.join(on_topic) + ')' if on_topic else ''}"))
    grounded = [f"task {point.id}", assertion.id, *[r.rsplit(" ", 1)[0] for r in assertion.rests_on], *on_topic]
    lab = _lab_on(point.text, audits, analysis, embedder, used) if analysis is not None else None
    if lab is not None:
        question, rationale, ref = lab
        grounded.append(ref)
        text = f"{_as_question(point.text)} {question}"
        why = f"Task {point.id} of the inquiry, asked of this run's results: {found}. {rationale}"
    else:
        text = (f"{_as_question(point.text)} In this run, {found}; which study design would settle it, and "
                f"{'do ' + ', '.join(on_topic) + ' bear on it' if on_topic else 'is there newer work on it'}?")
        why = f"Task {point.id} of the inquiry, asked of this run's results: the run cannot settle it offline."
    return FollowUpQuestion(question=text, rationale=why, grounded_in=list(dict.fromkeys(grounded)))


def _as_question(text: str) -> str:
    text = " ".join(text.split()).rstrip(" .:;")
    return text if text.endswith("?") else f"{text}?"


def _nearest(text: str, audits: list[ClaimAudit], embedder: Embedder) -> tuple[ClaimAudit, AssertionAudit]:
    pairs = [(c, a) for c in audits for a in c.assertions]
    similarity = cosine(embedder.encode([text]), embedder.encode([a.text for _, a in pairs]))[0]
    return pairs[int(similarity.argmax())]


def _lab_on(text: str, audits: list[ClaimAudit], analysis: SimAnalysis, embedder: Embedder,
            used: set[str]) -> tuple[str, str, str] | None:
    """The lab's result on the propositions the text states (by the registry's patterns), else on the
    one nearest to it in meaning, skipping those an earlier question used: (question, rationale, reference)."""
    probe = Assertion(id="task", text=text, start=0, end=len(text))
    stated = [p for p, _ in stated_propositions(probe) if p.key not in used]
    if not stated:
        fresh = [p for p in PROPOSITIONS if p.key not in used]
        if not fresh:
            return None
        similarity = cosine(embedder.encode([text]), embedder.encode([p.statement for p in fresh]))[0]
        stated = [fresh[int(similarity.argmax())]]
    if {"ratio", "sampler_bias"} & {p.key for p in stated} and analysis.boundaries:
        used.update({"ratio", "sampler_bias"})  # the boundary question speaks to both
        asked = _question_from_boundaries(audits, analysis)
        return asked.question, asked.rationale, asked.grounded_in[0]
    for proposition in stated:
        finding = proposition.decide(analysis)
        if finding is not None:
            used.add(proposition.key)
            return (
                f"Our simulations bear on the nearest proposition the lab tests, \u201c{proposition.statement}\u201d: "
                f"the lab's result {finding.stance} it ({finding.detail}). Does that carry over to the setting this "
                "question assumes, and what would change it?",
                "The lab's result is the run's firmest evidence near this question; whether it transfers is open.",
                f"simulations.{proposition.key}",
            )
    return None


def _question_from_boundaries(audits: list[ClaimAudit], analysis: SimAnalysis) -> FollowUpQuestion:
    """Built on the lowest collapse boundary the lab found (the most fragile setting), or on its absence."""
    rows = headline_boundaries(analysis) or analysis.boundaries
    threshold = 1 - analysis.tolerance
    crossed = [b for b in rows if b.status == "crossed" and b.ratio is not None]
    claims = [a.id for a in audits if any(x.simulation for x in a.assertions)]  # the claims the lab speaks to
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
    verb = "crossed at" if b.status == "crossed" and b.ratio is not None else "was"
    return f"{verb} {crossing_text(b)} with {size_label(b)} (band {band_text(b)})"


def _never_crossed(rows: list[Boundary]) -> list[str]:
    """Sampler settings that crossed at no size of the slice."""
    by_bias: dict[float, list[Boundary]] = {}
    for b in rows:
        by_bias.setdefault(b.diversity, []).append(b)
    return [bias_label(bs[0].diversity_control, v) for v, bs in by_bias.items() if all(b.status == "not_reached" for b in bs)]


def _question_from_disagreement(audits: list[ClaimAudit]) -> FollowUpQuestion:
    def disagreement(audit: ClaimAudit) -> tuple[int, int]:
        return (len(_against(audit)), len(_support(audit)))

    audit = max(audits, key=disagreement)
    against, support = _against(audit), _support(audit)
    if against:
        return FollowUpQuestion(
            question=(
                f"Claim {audit.id} ({audit.dated or 'undated'}) is qualified or contradicted by "
                f"{_ids(against)} yet agreed with by {_ids(support) or 'no retrieved paper'}: which experimental "
                f"condition (setting, data, model family or scale) separates these results?"
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
    return ", ".join(dict.fromkeys(e.arxiv_id for e in evidence[:4]))


def _against(audit: ClaimAudit) -> list[Evidence]:
    return [e for e in audit.evidence if e.stance in ("qualifies", "contradicts")]


def _support(audit: ClaimAudit) -> list[Evidence]:
    return [e for e in audit.evidence if e.stance == "supports"]

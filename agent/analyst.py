"""The Analyst: grades a paper's stance on a claim and turns evidence into a verdict.

Two implementations share this interface: `OfflineAnalyst` (here: explicit rules over embedding
similarity and the papers' findings, every judgement labelled heuristic) and `LLMAnalyst`
(agent/llm_analyst.py, any OpenAI-compatible endpoint).
"""

from __future__ import annotations

import re
from typing import Protocol

import numpy as np

from agent.models import STANCE_SCORE, Claim, Evidence, JudgedBy, Verdict
from tools.embeddings import Embedder, cosine
from tools.grounding import CitationCheck
from tools.papers import Paper


class Analyst(Protocol):
    judged_by: JudgedBy

    def assess(self, claim: Claim, paper: Paper, relevance: float) -> Evidence: ...

    def judge(
        self, claim: Claim, evidence: list[Evidence], citations: list[CitationCheck], simulation_note: str | None
    ) -> Verdict: ...


# Below this similarity a paper is about something else; above STRONG it restates the claim.
RELEVANT, STRONG = 0.35, 0.6

# Words that say collapse/degradation happens, and words that say it is avoided or reversed.
# A claim and a finding that point the same way agree; opposite directions disagree.
_DEGRADES = re.compile(
    r"\b(collaps\w*|degrad\w*|forget\w*|disappear\w*|vanish\w*|eros\w*|erod\w*|los[es]\w*|lost|shrink\w*|"
    r"narrow\w*|homogeni\w*|decline\w*|worsen\w*|bias\w*|irreversib\w*|fail\w*|harm\w*)\b",
    re.I,
)
_PRESERVES = re.compile(
    r"\b(avoid\w*|prevent\w*|mitigat\w*|bounded|stabili\w*|preserv\w*|improv\w*|outperform\w*|beat\w*|"
    r"escap\w*|break\w*|benefit\w*|gain\w*|help\w*|robust\w*|sustain\w*)\b",
    re.I,
)
_NEGATION = re.compile(r"\b(not|no|never|neither|nor|without|cannot|doesn't|isn't|aren't|don't|rather than)\b", re.I)


def direction(text: str) -> int:
    """+1 when the text asserts degradation, -1 when it asserts avoidance/improvement, 0 when neither.

    A degradation cue right after a negation or an avoidance word ("does not collapse", "avoids
    collapse", "without forgetting") counts as avoidance; a negation elsewhere in the sentence
    ("not simply a function of the ratio") does not.
    """
    degrade = preserve = 0
    for match in _DEGRADES.finditer(text):
        before = " ".join(text[: match.start()].split()[-3:])
        if _NEGATION.search(before) or _PRESERVES.search(before):
            preserve += 1
        else:
            degrade += 1
    preserve += len(_PRESERVES.findall(text))
    return (degrade > preserve) - (preserve > degrade)


class OfflineAnalyst:
    """Heuristic analyst: no network, no model beyond the sentence embeddings."""

    judged_by: JudgedBy = "heuristic"

    def __init__(self, embedder: Embedder):
        self.embedder = embedder

    def assess(self, claim: Claim, paper: Paper, relevance: float) -> Evidence:
        passages = [f for f in paper.findings if f.strip()] or [paper.summary or paper.title]
        sims = cosine(self.embedder.encode([claim.text]), self.embedder.encode(passages))[0]
        best = int(np.argmax(sims))
        quote, similarity = passages[best], float(sims[best])
        claim_dir, quote_dir = direction(claim.text), direction(quote)
        if similarity < RELEVANT:
            stance, why = "unrelated", f"its closest finding is only {similarity:.2f} similar to the claim"
        elif claim_dir and quote_dir and claim_dir != quote_dir:
            stance = "contradicts" if similarity >= STRONG else "qualifies"
            why = (
                f"its closest finding (similarity {similarity:.2f}) points the other way: "
                f"the claim {'asserts' if claim_dir > 0 else 'denies'} degradation, the finding "
                f"{'asserts' if quote_dir > 0 else 'denies'} it"
            )
        elif similarity >= STRONG:
            stance, why = "supports", f"its closest finding restates the claim (similarity {similarity:.2f})"
        else:
            stance, why = "consistent", f"its closest finding is on the claim's topic (similarity {similarity:.2f}) without contradicting it"
        return Evidence(
            arxiv_id=paper.id,
            title=paper.title,
            published=paper.published,
            stance=stance,
            score=round(relevance, 3),
            rationale=f"heuristic: {why}",
            quote=quote if quote in paper.text() else None,
            quote_source="paraphrase" if paper.summary_is_paraphrase else "abstract",
            judged_by=self.judged_by,
            newer_than_claim=claim.year_end is not None and paper.published.year > claim.year_end,
        )

    def judge(
        self, claim: Claim, evidence: list[Evidence], citations: list[CitationCheck], simulation_note: str | None
    ) -> Verdict:
        relevant = [e for e in evidence if e.stance != "unrelated"]
        support = [e.arxiv_id for e in relevant if STANCE_SCORE[e.stance] > 0]
        against = [e.arxiv_id for e in relevant if STANCE_SCORE[e.stance] < 0]
        strong_support = [e.arxiv_id for e in relevant if e.stance == "supports"]
        strong_against = [e.arxiv_id for e in relevant if e.stance == "contradicts"]
        net = sum(STANCE_SCORE[e.stance] * e.score for e in relevant)  # reported, so a reader can weigh it
        grounded = [c.arxiv_id for c in citations if c.status == "grounded"]
        flagged = [c.arxiv_id or c.as_written for c in citations if c.status not in ("grounded", "unverifiable", "no_id")]

        # Papers that are merely on topic ("consistent") do not establish a claim: support needs a
        # grounded citation or a paper whose finding restates it.
        if strong_against and not support:
            label = "refuted"
        elif strong_against or (against and len(against) >= len(support)):
            label = "contested"
        elif grounded or strong_support:
            label = "supported"
        else:
            label = "insufficient_evidence"

        parts = [
            f"heuristic: {len(support)} paper(s) agree ({', '.join(support[:5]) or 'none'}), "
            f"{len(against)} disagree ({', '.join(against[:5]) or 'none'}), weighted stance {net:+.2f}",
            f"cited and grounded: {', '.join(grounded) or 'none'}",
        ]
        if flagged:
            parts.append(f"citations that could not be grounded: {', '.join(flagged)}")
        if not claim.citations:
            parts.append("the claim cites no arXiv ID")
        if simulation_note:
            parts.append(f"simulation: {simulation_note}")
        return Verdict(label=label, rationale="; ".join(parts) + ".", judged_by=self.judged_by)

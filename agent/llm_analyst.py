"""The LLM analyst: a model grades stances and decides verdicts through any OpenAI-compatible endpoint.

The model's word is checked where it can be: stances and verdict labels must be values of the
report's enums (the reply schema enforces it), and a quote is kept only if it occurs in the text
we hold for the paper, so no quote in a report is invented.
"""

from __future__ import annotations

from importlib.resources import files

from pydantic import BaseModel, Field

from agent.models import Claim, Evidence, JudgedBy, Stance, Verdict, VerdictLabel
from tools.grounding import CitationCheck
from tools.llm import LLMClient
from tools.papers import Paper


class StanceReply(BaseModel):
    stance: Stance
    rationale: str = Field(description="one sentence naming the finding the stance rests on")
    quote: str | None = Field(default=None, description="copied character for character from the paper's text, or null")


class VerdictReply(BaseModel):
    label: VerdictLabel
    rationale: str = Field(description="two or three sentences naming the arXiv IDs it rests on")


_TEXT_KIND = {"paraphrase": "our paraphrase of the paper, not its abstract", "abstract": "the paper's abstract"}


class LLMAnalyst:
    judged_by: JudgedBy = "model"

    def __init__(self, client: LLMClient):
        self.client = client
        self._stance_prompt = _template("stance.md")
        self._verdict_prompt = _template("verdict.md")

    def assess(self, claim: Claim, paper: Paper, relevance: float) -> Evidence:
        system, user = self._stance_prompt
        source = "paraphrase" if paper.summary_is_paraphrase else "abstract"
        prompt = user.format(
            claim=claim.text,
            claim_date=claim.dated or "undated",
            paper_id=paper.id,
            title=paper.title,
            published=paper.published.isoformat(),
            text_kind=_TEXT_KIND[source],
            text="\n".join(t for t in [paper.summary, *paper.findings] if t.strip()) or "(no text beyond the title)",
        )
        answer = self.client.structured(system, prompt, StanceReply)
        quote = verbatim(answer.quote, paper.text()) if answer.quote else None
        rationale = answer.rationale.strip()
        if answer.quote and quote is None:
            rationale += f" (The model's quote was dropped: it does not occur in the paper's {source} text we hold.)"
        return Evidence(
            arxiv_id=paper.id,
            title=paper.title,
            published=paper.published,
            stance=answer.stance,
            score=round(relevance, 3),
            rationale=rationale,
            quote=quote,
            quote_source=source,
            judged_by=self.judged_by,
            newer_than_claim=claim.year_end is not None and paper.published.year > claim.year_end,
        )

    def judge(
        self, claim: Claim, evidence: list[Evidence], citations: list[CitationCheck], simulation_note: str | None
    ) -> Verdict:
        system, user = self._verdict_prompt
        relevant = sorted((e for e in evidence if e.stance != "unrelated"), key=lambda e: -e.score)
        unrelated = len(evidence) - len(relevant)
        papers = [_evidence_line(e) for e in relevant] or ["(no relevant paper was found)"]
        if unrelated:
            papers.append(f"({unrelated} other retrieved paper(s) were judged unrelated)")
        prompt = user.format(
            claim=claim.text,
            claim_date=claim.dated or "undated",
            citations="\n".join(f"- {c.as_written}: {c.status} ({c.reason})" for c in citations)
            or "(the claim cites no arXiv ID)",
            evidence="\n".join(papers),
            simulation=simulation_note or "(no simulation bears on this claim)",
        )
        answer = self.client.structured(system, prompt, VerdictReply)
        return Verdict(label=answer.label, rationale=answer.rationale.strip(), judged_by=self.judged_by)


def _template(name: str) -> tuple[str, str]:
    """A prompt file's system part and its user part (a str.format template), split at the '---' line."""
    system, user = files("prompts").joinpath(name).read_text(encoding="utf-8").split("\n---\n", 1)
    return system.strip(), user.strip()


def _evidence_line(e: Evidence) -> str:
    newer = ", newer than the claim" if e.newer_than_claim else ""
    line = (
        f'- arXiv:{e.arxiv_id} "{e.title}" ({e.published.isoformat()}{newer}): '
        f"{e.stance}, relevance {e.score:.2f}. {e.rationale}"
    )
    return line + (f' Quote ({e.quote_source}): "{e.quote}"' if e.quote else "")


# Typographic variants models substitute when they copy text: curly quotes, dashes, no-break space.
_PLAIN = str.maketrans(
    {
        "\u2018": "'", "\u2019": "'", "\u201a": "'", "\u201b": "'", "\u2032": "'",
        "\u201c": '"', "\u201d": '"', "\u201e": '"', "\u00ab": '"', "\u00bb": '"', "\u2033": '"',
        "\u2010": "-", "\u2011": "-", "\u2012": "-", "\u2013": "-", "\u2014": "-", "\u2212": "-",
        "\u00a0": " ",
    }
)  # fmt: skip


def verbatim(quote: str, text: str) -> str | None:
    """The span of `text` that `quote` reproduces, or None when it does not occur there.

    Whitespace runs, quote marks and dashes are compared in a normal form; everything else,
    case included, must match. The span returned is the text's own, so what a report shows
    as a quote is the source's characters, not the model's.
    """
    needle = _normalised(quote)[0].strip().strip("'\"").strip()
    if not needle:
        return None
    haystack, origin = _normalised(text)
    at = haystack.find(needle)
    if at < 0:
        return None
    return text[origin[at] : origin[at + len(needle) - 1] + 1]


def _normalised(text: str) -> tuple[str, list[int]]:
    """`text` in the comparison form, and for each of its characters the index it came from in `text`."""
    chars: list[str] = []
    origin: list[int] = []
    for i, char in enumerate(text.translate(_PLAIN)):  # translate maps one character to one, so i stays valid
        if char.isspace():
            if chars and chars[-1] == " ":
                continue
            char = " "
        chars.append(char)
        origin.append(i)
    return "".join(chars), origin

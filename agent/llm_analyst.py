"""The LLM analyst: a model grades each paper's stance toward each assertion, through any
OpenAI-compatible endpoint.

The model's word is checked where it can be: stances must be values of the report's scale (the
reply schema enforces it; "undetermined" is allowed and kept as an abstention), and a quote is kept
only if it occurs in the text we hold for the paper, so no quote in a report is invented. The model
does not decide verdicts: they follow from the stances by agent/verdicts.py, as for the offline analyst.
"""

from __future__ import annotations

from importlib.resources import files
from typing import Literal

from pydantic import BaseModel, Field

from agent.analyst import evidence
from agent.assertions import RULES, Assertion, Decomposition, SplitError, from_spans, split_claim
from agent.models import Claim, Evidence, JudgedBy
from tools.llm import LLMClient
from tools.papers import Paper


class StanceReply(BaseModel):
    stance: Literal["supports", "qualifies", "contradicts", "background", "unrelated", "undetermined"]
    confidence: float = Field(ge=0, le=1, description="how sure the stance is, 0..1")
    rationale: str = Field(description="one sentence naming the finding the stance rests on")
    quote: str | None = Field(default=None, description="copied character for character from the paper's text, or null")


class AssertionSpan(BaseModel):
    text: str = Field(description="the assertion, copied character for character from the claim")
    scope: list[str] = Field(default=[], description="conditions it holds under, each copied from the claim")


class DecompositionReply(BaseModel):
    assertions: list[AssertionSpan]


_TEXT_KIND = {"paraphrase": "our paraphrase of the paper, not its abstract", "abstract": "the paper's abstract"}


class LLMAnalyst:
    judged_by: JudgedBy = "model"

    def __init__(self, client: LLMClient):
        self.client = client
        self._stance_prompt = _template("stance.md")
        self._decompose_prompt = _template("decompose.md")

    def decompose(self, claim: Claim) -> Decomposition:
        """The model's split of the claim, if its assertions are spans of the claim that cover it;
        otherwise the rules' split, with the reason the model's was not used."""
        system, user = self._decompose_prompt
        reply = self.client.structured(
            system, user.format(claim_id=claim.id, claim_date=claim.dated or "undated", claim=claim.text),
            DecompositionReply,
        )
        try:
            spans = [(_locate(a.text, claim.text), [_condition(c, claim.text) for c in a.scope]) for a in reply.assertions]
            assertions = from_spans(claim.id, claim.text, spans)
        except SplitError as error:
            return Decomposition(assertions=split_claim(claim.id, claim.text),
                                 how=f"{RULES}; the model's split was not used: {error}")
        return Decomposition(assertions=assertions, how=f"by the model {self.client.model!r}, checked to be spans of the claim")

    def assess(self, assertion: Assertion, claim: Claim, paper: Paper, relevance: float, why: str) -> Evidence:
        system, user = self._stance_prompt
        source = "paraphrase" if paper.summary_is_paraphrase else "abstract"
        prompt = user.format(
            assertion=assertion.text,
            scope="; ".join(assertion.scope) or "(none stated)",
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
        stance = None if answer.stance == "undetermined" else answer.stance
        return evidence(assertion, claim, paper, relevance, why, stance=stance, confidence=answer.confidence,
                        rationale=rationale, quote=quote, judged_by=self.judged_by)


def _locate(span: str, claim: str) -> tuple[int, int]:
    """Where the model's span lies in the claim (quote marks, dashes and spacing may differ)."""
    found = verbatim(span, claim)
    if found is None:
        raise SplitError(f"its assertion {span!r} is not a span of the claim")
    start = claim.find(found)
    return start, start + len(found)


def _condition(span: str, claim: str) -> str:
    found = verbatim(span, claim)
    if found is None:
        raise SplitError(f"its scope condition {span!r} is not a span of the claim")
    return found


def _template(name: str) -> tuple[str, str]:
    """A prompt file's system part and its user part (a str.format template), split at the '---' line."""
    system, user = files("prompts").joinpath(name).read_text(encoding="utf-8").split("\n---\n", 1)
    return system.strip(), user.strip()


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

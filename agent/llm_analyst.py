"""The LLM analyst: a model grades each paper's stance toward each assertion, through any
OpenAI-compatible endpoint.

The model's word is checked where it can be: stances must be values of the report's scale (the
reply schema enforces it; "undetermined" is allowed and kept as an abstention); a quote is kept only
if it occurs in the text we hold for the paper, a passage quoted in the rationale likewise, and an
arXiv ID anywhere only if it is the paper's own (`_ground`), so no quote or citation in a report is
invented. The paper's text reaches the model as data between <paper_text> tags, never as
instructions. The model does not decide verdicts: they follow from the stances by agent/verdicts.py,
as for the offline analyst. When the model fails on one judgement (tools/llm.py's AnswerFailed),
that judgement is made by the fallback analyst and labelled so, and the run goes on.

Each question has its prompt file (prompts/*.md.j2, rendered by tools/prompts.py) and its stage name
for the client's usage counts: "decompose", "stance" and "citation_fit". `citation_fit` (does this
sentence describe this paper?) is asked by benchmarks/grounding_accuracy.py; the product's citation
grounding (tools/grounding.py) does not use it.
"""

from __future__ import annotations

import re
from typing import Literal

from pydantic import BaseModel, Field

from agent.analyst import Analyst, FitAnswer, evidence
from agent.assertions import RULES, Assertion, Decomposition, SplitError, from_spans, split_claim
from agent.models import Claim, Evidence, JudgedBy
from tools.arxiv_id import canonical, find_mentions
from tools.llm import AnswerFailed, LLMClient
from tools.papers import Paper
from agent.sim_evidence import PROPOSITIONS
from tools.prompts import Prompt, load_prompt


class StanceReply(BaseModel):
    stance: Literal["supports", "qualifies", "contradicts", "background", "unrelated", "undetermined"]
    confidence: float = Field(ge=0, le=1, description="how sure the stance is, 0..1")
    rationale: str = Field(description="one sentence naming the finding the stance rests on")
    quote: str | None = Field(default=None, description="copied character for character from the paper's text, or null")


class AssertionSpan(BaseModel):
    text: str = Field(description="the assertion, copied character for character from the claim")
    scope: list[str] = Field(default=[], description="conditions it holds under, each copied from the claim")


class PropositionMatch(BaseModel):
    key: str = Field(description="a proposition key from the list given")
    denies: bool = Field(default=False, description="the assertion states the proposition's negation")


class PropositionReply(BaseModel):
    matches: list[PropositionMatch] = []


class DecompositionReply(BaseModel):
    assertions: list[AssertionSpan]


class FitReply(BaseModel):
    fits: Literal["yes", "no", "undetermined"] = Field(description="does the sentence describe this paper?")
    confidence: float = Field(ge=0, le=1, description="how sure the answer is, 0..1")
    reason: str = Field(description="one sentence naming what matches or conflicts")


_TEXT_KIND = {"paraphrase": "our paraphrase of the paper, not its abstract", "abstract": "the paper's abstract"}


def configured_analyst(fallback: Analyst) -> LLMAnalyst:
    """The LLM analyst on the endpoint the settings name (OPENAI_BASE_URL / OPENAI_API_KEY /
    COLLAPSE_AUDIT_MODEL), for the benchmarks' `--llm openai`; LLMError when none is configured."""
    from agent.config import Settings

    settings = Settings()
    client = LLMClient(settings.openai_base_url, settings.openai_api_key, settings.model,
                       concurrency=settings.llm_concurrency)
    return LLMAnalyst(client, fallback=fallback)


class LLMAnalyst:
    judged_by: JudgedBy = "model"

    def __init__(self, client: LLMClient, fallback: Analyst):
        """`fallback` (the OfflineAnalyst) judges in the model's place when the model fails on one judgement."""
        self.client = client
        self.fallback = fallback
        self._prompts: dict[str, Prompt] = {}
        self._decompose_prompt = self._prompt("decompose.md.j2")
        self._stance_prompt = self._prompt("stance.md.j2")

    @property
    def concurrency(self) -> int:
        """How many judgements are worth asking at once: the client's limit on requests in flight."""
        return self.client.concurrency

    @property
    def prompts(self) -> dict[str, str]:
        """The prompt files this analyst has used, by name, with their sha256 (report.json method.prompts)."""
        return {name: p.sha256 for name, p in self._prompts.items()}

    def _prompt(self, name: str) -> Prompt:
        if name not in self._prompts:
            self._prompts[name] = load_prompt(name)
        return self._prompts[name]

    def decompose(self, claim: Claim) -> Decomposition:
        """The model's split of the claim, if its assertions are spans of the claim that cover it;
        otherwise the rules' split, with the reason the model's was not used.

        arXiv IDs the claim does not cite are removed from the model's spans before they are checked
        (the count goes into `how`); a span that is then no span of the claim fails the check."""
        system, user = self._decompose_prompt.render(claim_id=claim.id, claim_date=claim.dated or "undated",
                                                     claim=claim.text)
        try:
            reply = self.client.structured(system, user, DecompositionReply, stage="decompose")
        except AnswerFailed as failure:
            return _rules(claim, f"the model failed ({failure.reason})")
        cited, removed, spans = {canonical(c) for c in claim.citations}, 0, []
        try:
            for a in reply.assertions:
                text, n = _without_ids(a.text, cited, "")
                scope = [_without_ids(c, cited, "") for c in a.scope]
                removed += n + sum(m for _, m in scope)
                spans.append((_locate(text, claim.text), [_condition(c, claim.text) for c, _ in scope]))
            assertions = from_spans(claim.id, claim.text, spans)
        except SplitError as error:
            return _rules(claim, str(error))
        how = f"by the model {self.client.model!r}, checked to be spans of the claim"
        if removed:
            how += f"; {_count(removed, 'arXiv ID')} the claim does not cite removed from the model's split"
        return Decomposition(assertions=assertions, how=how)

    def assess(self, assertion: Assertion, claim: Claim, paper: Paper, relevance: float, why: str) -> Evidence:
        source = "paraphrase" if paper.summary_is_paraphrase else "abstract"
        system, prompt = self._stance_prompt.render(
            assertion=assertion.text,
            scope="; ".join(assertion.scope) or "(none stated)",
            claim=claim.text,
            claim_date=claim.dated or "undated",
            paper_id=paper.id,
            title=_as_data(paper.title),
            published=paper.published.isoformat(),
            text_kind=_TEXT_KIND[source],
            text=_paper_text(paper),
        )
        try:
            answer = self.client.structured(system, prompt, StanceReply, stage="stance")
        except AnswerFailed as failure:
            judged = self.fallback.assess(assertion, claim, paper, relevance, why)
            return judged.model_copy(update={"rationale": f"model failed ({failure.reason}); {judged.rationale}",
                                             "fallback": True})
        rationale, quote, removed = _ground(answer, paper, source)
        stance = None if answer.stance == "undetermined" else answer.stance
        judged = evidence(assertion, claim, paper, relevance, why, stance=stance, confidence=answer.confidence,
                          rationale=rationale, quote=quote, judged_by=self.judged_by)
        return judged.model_copy(update={"removed": removed})

    def propositions(self, assertion: Assertion) -> list[tuple[str, bool]]:
        """The lab's propositions the assertion states (key, denies), as the model reads it; keys it
        invents are dropped; when the model fails, the registry's own patterns answer."""
        system, user = self._prompt("propositions.md.j2").render(
            propositions=PROPOSITIONS, scope="; ".join(assertion.scope) or "none stated",
            assertion=_as_data(assertion.text),
        )
        try:
            reply = self.client.structured(system, user, PropositionReply, stage="propositions")
        except AnswerFailed:
            return self.fallback.propositions(assertion)
        known = {p.key for p in PROPOSITIONS}
        return list(dict.fromkeys((m.key, m.denies) for m in reply.matches if m.key in known))

    def citation_fit(self, sentence: str, paper: Paper) -> FitAnswer:
        """Does `sentence`, which cites `paper` by its ID, describe it? The model's answer, its reason
        cleared of quoted passages found in neither text and of arXiv IDs other than the paper's; when
        the model fails on it, "undetermined", marked failed (the offline check is the grounding's)."""
        source = "paraphrase" if paper.summary_is_paraphrase else "abstract"
        system, user = self._prompt("citation_fit.md.j2").render(
            paper_id=paper.id,
            sentence=_as_data(sentence),
            title=_as_data(paper.title),
            authors=_as_data(", ".join(paper.authors) + (", et al." if paper.authors_truncated else "")
                             or "(not listed)"),
            text_kind=_TEXT_KIND[source],
            text=_paper_text(paper),
        )
        try:
            answer = self.client.structured(system, user, FitReply, stage="citation_fit")
        except AnswerFailed as failure:
            return FitAnswer(fits="undetermined", confidence=0.0, reason=f"model failed ({failure.reason})",
                             judged_by=self.judged_by, failed=True)
        reason = answer.reason
        known = paper.text() + "\n" + sentence
        unfounded = [m for m in _QUOTED.finditer(reason)
                     if len(m.group().split()) >= _QUOTED_WORDS and verbatim(m.group(), known) is None]
        for m in reversed(unfounded):
            reason = reason[: m.start()] + _REMOVED + reason[m.end() :]
        named = {canonical(paper.id)} | {m.key for m in find_mentions(sentence, citing=True)}
        reason, ids = _without_ids(reason, named, _REMOVED)
        return FitAnswer(fits=answer.fits, confidence=answer.confidence, reason=reason.strip(),
                         judged_by=self.judged_by, removed=len(unfounded) + ids)


def _rules(claim: Claim, why_not_the_model: str) -> Decomposition:
    return Decomposition(assertions=split_claim(claim.id, claim.text),
                         how=f"{RULES}; the model's split was not used: {why_not_the_model}")


# Retrieved text reaches the model only between these tags; the system prompt says what is inside is data.
_DATA_TAG = re.compile(r"</?\s*(?:paper_text|citing_sentence)\b[^>]*>", re.IGNORECASE)


def _paper_text(paper: Paper) -> str:
    """What the model reads of a paper, as delimited data."""
    return _as_data("\n".join(t for t in [paper.summary, *paper.findings] if t.strip()) or "(no text beyond the title)")


def _as_data(text: str) -> str:
    """Retrieved text with any <paper_text> or <citing_sentence> tag in it defused, so it cannot close
    the data block and go on as if it were the prompt."""
    return _DATA_TAG.sub("[tag removed]", text)


# Text in double quotes, straight or curly; four or more words of it present themselves as the paper's.
_QUOTED = re.compile(r'"[^"]*"|“[^”]*”')
_QUOTED_WORDS = 4
_REMOVED = "[removed]"


def _ground(answer: StanceReply, paper: Paper, source: str) -> tuple[str, str | None, int]:
    """The model's rationale and quote less what this paper does not bear out, and how many things went.

    The quote must occur in the paper's text and name no other paper; a passage quoted in the rationale
    must occur in the text; an arXiv ID anywhere must be this paper's (one the model remembers, or that
    the text told it to cite, was not judged here). Removed passages and IDs leave `_REMOVED` in their
    place, and the rationale ends with a note saying what was removed."""
    text, own = paper.text(), {canonical(paper.id)}
    notes: list[str] = []
    quote = verbatim(answer.quote, text) if answer.quote else None
    if answer.quote and quote is None:
        notes.append(f"the model's quote was dropped: it does not occur in the paper's {source} text we hold")
    elif quote is not None and _without_ids(quote, own, "")[1]:
        quote = None
        notes.append("the model's quote was dropped: it names an arXiv ID other than this paper's")
    rationale = answer.rationale
    unfounded = [m for m in _QUOTED.finditer(rationale)
                 if len(m.group().split()) >= _QUOTED_WORDS and verbatim(m.group(), text) is None]
    for m in reversed(unfounded):
        rationale = rationale[: m.start()] + _REMOVED + rationale[m.end() :]
    if unfounded:
        notes.append(f"{_count(len(unfounded), 'quoted passage')} not in the paper's {source} text removed")
    rationale, ids = _without_ids(rationale, own, _REMOVED)
    if ids:
        notes.append(f"{_count(ids, 'arXiv ID')} other than this paper's removed")
    rationale = rationale.strip()
    if notes:
        note = "; ".join(notes)
        rationale += f" ({note[0].upper()}{note[1:]}.)"
    return rationale, quote, (bool(answer.quote) and quote is None) + len(unfounded) + ids


def _without_ids(text: str, keep: set[str], marker: str) -> tuple[str, int]:
    """`text` with every arXiv ID not in `keep` (canonical IDs) replaced by `marker`, and how many were.
    A bare ID-shaped number counts too: in a model's reply there is nothing else it could be."""
    foreign = [m for m in find_mentions(text, citing=True) if m.key not in keep]
    for m in reversed(foreign):
        text = text[: m.start] + marker + text[m.end :]
    return text, len(foreign)


def _count(n: int, thing: str) -> str:
    return f"{n} {thing}{'' if n == 1 else 's'}"


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

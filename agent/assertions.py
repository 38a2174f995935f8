"""A claim split into atomic assertions: spans of its own text, each with its scope conditions.

Offline, by rules on clause structure (no topic words):

1. Citation parentheticals ("(2023, arXiv:2305.17493)") and markup are masked, offsets kept.
2. Sentences split at sentence ends; clauses at semicolons, dashes and colons between clauses,
   and at contrastive or concurrent joints (", while", ", whereas", ", but", "; instead,").
3. A sentence that only extends what came before ("This held across ...", "It holds even when
   ...") is not an assertion of its own: it becomes scope of the previous sentence's assertions.
4. Conditions inside a clause ("even when ...", "across ...", "unless ...", "as ... ,") are listed
   as its scope; the assertion's span keeps them, so the text judged is the claim's own words.

An LLM analyst may decompose differently (agent/llm_analyst.py): its assertions must be spans of
the claim's text and cover at least `MIN_COVERAGE` of its words (`from_spans`), else the rules
split the claim and the report says why.
"""

from __future__ import annotations

import re

from pydantic import BaseModel

# A run of spaces is entered only at its start (`(?<!\s)\s++`): tried from each of its characters,
# a pattern that opens with `\s*` costs the square of the run's length when what follows is missing.
CITATION = re.compile(r"(?:(?<!\s)\s++)?\((?=[^()]*(?:arXiv|\b(?:19|20)\d\d\b))[^()]*+\)")
_MARKUP = re.compile(r"[*_`]")
_SENTENCE = re.compile(r"(?<=[.!?])\s+(?=[A-Z(])")
_CLAUSE = re.compile(
    r"(?:(?<!\s)\s++)?;\s*+|(?<!\s)\s++(?:[—–]\s+|-\s+|(?=while\b))|:\s+(?=[a-z])|,\s+(?=(?:while|whereas|but|yet)\b)"
)
_LEAD = re.compile(r"^(?:and|but|while|whereas|yet|instead|rather|so|thus|hence|moreover)\b[,\s]*", re.I)
_EXTENDS = re.compile(r"^(?:this|these|that|it|they|the same|both|all)\s+(?:\w+\s+){0,2}?"
                      r"(?:held|holds|hold|applies|apply|applied|was|were|is|are|remains|remained|extends|extended)\b",
                      re.I)
_SCOPE = re.compile(
    r"\b(?:even\s+(?:when|if|at|with|for)|only\s+(?:when|if|at|for|in)|when(?:ever)?|unless|as\s+long\s+as|"
    r"provided(?:\s+that)?|across|regardless\s+of|at\s+(?:least|most)|under)\b[^,;.]*"
    # ... continued by a short list that ends in "and"/"or": "across VAEs, GMMs, and LLMs" (at most
    # ten items, so a long comma-separated run is not rescanned from every condition word in it)
    r"(?:(?:,\s*\w[\w\s-]{0,30}?){0,10},?\s+(?:and|or)\s+\w[\w\s-]{0,30}?(?=[,;.]|$))?",
    re.I,
)
_LEADING_AS = re.compile(r"^as\s+[^,]+,", re.I)


# A model's split that leaves more than a fifth of the claim's words in no assertion or scope has
# dropped part of what the claim says; the rules' split is used instead.
MIN_COVERAGE = 0.8
RULES = "by rules on clause structure"


class SplitError(ValueError):
    """A decomposition that cannot stand for the claim; the message says why, in words."""


class Assertion(BaseModel):
    id: str  # "C2.b": claim id and letter
    text: str  # a span of the claim's text
    start: int
    end: int
    scope: list[str] = []  # conditions the assertion holds under, each a span of the claim's text


class Decomposition(BaseModel):
    """A claim's assertions and how they were obtained (shown in the report)."""

    assertions: list[Assertion]
    how: str = RULES


def _masked(text: str) -> str:
    """The text with citations and emphasis markup blanked out (same length, so offsets hold)."""
    blank = lambda m: " " * (m.end() - m.start())  # noqa: E731
    return _MARKUP.sub(blank, CITATION.sub(blank, text))


def _spans(text: str, pattern: re.Pattern, start: int, end: int) -> list[tuple[int, int]]:
    out, at = [], start
    for match in pattern.finditer(text, start, end):
        out.append((at, match.start()))
        at = match.end()
    out.append((at, end))
    return out


def _trim(masked: str, start: int, end: int) -> tuple[int, int]:
    while start < end and (masked[start].isspace() or masked[start] in ",;:—–-"):
        start += 1
    lead = _LEAD.match(masked[start:end])
    if lead:
        start += lead.end()
    while end > start and (masked[end - 1].isspace() or masked[end - 1] in ".,;:!?"):
        end -= 1
    return start, end


def split_claim(claim_id: str, text: str) -> list[Assertion]:
    """The claim's atomic assertions, in order; at least one (the whole claim) for any non-empty text."""
    masked = _masked(text)
    found: list[Assertion] = []
    previous_sentence: list[Assertion] = []
    for s_start, s_end in _spans(masked, _SENTENCE, 0, len(masked)):
        s_start, s_end = _trim(masked, s_start, s_end)
        if s_start >= s_end:
            continue
        sentence = masked[s_start:s_end]
        if previous_sentence and _EXTENDS.match(sentence):
            conditions = [text[s_start + m.start() : s_start + m.end()].strip() for m in _SCOPE.finditer(sentence)]
            for assertion in previous_sentence:
                assertion.scope.extend(conditions or [text[s_start:s_end]])
            continue
        previous_sentence = []
        for c_start, c_end in _spans(masked, _CLAUSE, s_start, s_end):
            c_start, c_end = _trim(masked, c_start, c_end)
            if len(masked[c_start:c_end].split()) < 3:
                continue
            clause = masked[c_start:c_end]
            scope = [text[c_start + m.start() : c_start + m.end()].strip() for m in _SCOPE.finditer(clause)]
            leading = _LEADING_AS.match(clause)
            if leading:
                scope.insert(0, text[c_start : c_start + leading.end() - 1].strip())
            letter = chr(ord("a") + len(found)) if len(found) < 26 else str(len(found))
            assertion = Assertion(id=f"{claim_id}.{letter}", text=text[c_start:c_end], start=c_start, end=c_end,
                                  scope=scope)
            found.append(assertion)
            previous_sentence.append(assertion)
    if not found and text.strip():
        start, end = _trim(masked, 0, len(masked))
        found.append(Assertion(id=f"{claim_id}.a", text=text[start:end] or text.strip(), start=start, end=max(end, start)))
    return found


def coverage(text: str, assertions: list[Assertion]) -> float:
    """Share of the claim's words (citations masked) that some assertion or scope span covers."""
    masked = _masked(text)
    words = [m.span() for m in re.finditer(r"\w+", masked)]
    covered = [(a.start, a.end) for a in assertions]
    for a in assertions:
        for condition in a.scope:
            at = text.find(condition)
            if at >= 0:
                covered.append((at, at + len(condition)))
    inside = sum(any(s <= w0 and w1 <= e for s, e in covered) for w0, w1 in words)
    return inside / len(words) if words else 1.0


def from_spans(claim_id: str, text: str, spans: list[tuple[tuple[int, int], list[str]]]) -> list[Assertion]:
    """Assertions from located spans ((start, end) in `text`, with scope conditions that are spans of
    `text` too), e.g. a model's decomposition. Raises SplitError when they do not stand for the claim:
    an empty split, a span of fewer than three words, or coverage below MIN_COVERAGE."""
    if not spans:
        raise SplitError("it gave no assertion")
    found = []
    for (start, end), scope in sorted(spans, key=lambda s: s[0]):
        words = len(re.findall(r"\w+", _masked(text)[start:end]))
        if words < 3:
            raise SplitError(f"its assertion {text[start:end]!r} has fewer than three words")
        letter = chr(ord("a") + len(found)) if len(found) < 26 else str(len(found))
        found.append(Assertion(id=f"{claim_id}.{letter}", text=text[start:end], start=start, end=end, scope=scope))
    covered = coverage(text, found)
    if covered < MIN_COVERAGE:
        raise SplitError(f"its assertions cover {covered:.0%} of the claim's words (at least {MIN_COVERAGE:.0%} needed)")
    return found

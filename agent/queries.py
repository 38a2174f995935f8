"""Search queries per assertion: its keyphrases, and a contradiction-seeking form of it.

A query never searches for stop words, years, identifiers or "arXiv": those match every paper (or
none) and drown the terms that say what the assertion is about. Keyphrases are the runs of content
words between stop words and punctuation, longest and rarest-looking first. The contradiction-
seeking query states the assertion's negation, so the embedding re-ranker favours passages that
deny it; each query carries the reason it was issued, which the evidence it retrieves repeats.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from agent.assertions import CITATION
from tools.terms import STOP_WORDS

_TOKEN = re.compile(r"[A-Za-z][A-Za-z0-9'-]*|\d[\w.]*|[^\sA-Za-z0-9]")
# Generic verbs and adjectives of cause and change, with their opposites (each pair read both ways):
# swapping one turns an assertion into the statement a contradicting paper would make.
_OPPOSITE_PAIRS = """
cause prevent causes prevents caused prevented causing preventing enable prevent enables prevents
increase decrease increases decreases increased decreased increasing decreasing
improve worsen improves worsens improved worsened improving worsening
reduce raise reduces raises reduced raised reducing raising
erode preserve erodes preserves eroded preserved eroding preserving
vanish persist vanishes persists vanished persisted vanishing persisting
degrade improve degrades improves degraded improved degrading improving
lose keep loses keeps lost kept losing keeping
grow shrink grows shrinks growing shrinking amplify dampen amplifies dampens amplifying dampening
accelerate slow accelerates slows outperform underperform outperforms underperforms
irreversible reversible inevitable avoidable inevitably avoidably always rarely
""".split()
_OPPOSITE: dict[str, str] = {}
for _a, _b in zip(_OPPOSITE_PAIRS[::2], _OPPOSITE_PAIRS[1::2], strict=True):
    _OPPOSITE.setdefault(_a, _b)
    _OPPOSITE.setdefault(_b, _a)
_CHANGE_WORD = re.compile(r"\b(" + "|".join(sorted(_OPPOSITE, key=len, reverse=True)) + r")\b", re.I)
_NEGATION = re.compile(r"\b(not|NOT|never|no)\b\s*")
_AUXILIARY = re.compile(r"\b(is|are|was|were|can|could|does|do|did|will|would|has|have|had|should|must|may|might)\b",
                        re.I)


@dataclass(frozen=True)
class Query:
    text: str  # what is sent to the sources (keyphrases)
    why: str  # why it was issued, carried into the evidence it retrieves
    rank_by: str  # the statement the papers found are re-ranked against by embedding similarity


def keyphrases(text: str, limit: int = 5) -> list[str]:
    """Runs of content words, at most three words each, longest first; no stop words, years or IDs."""
    phrases, run = [], []
    for token in _TOKEN.findall(text):
        word = token.strip("'-")
        # a token that starts with a digit (year, identifier, count) is never a content word
        if word and word[0].isalpha() and word.lower() not in STOP_WORDS and len(word) > 2:
            run.append(word.lower())
            continue
        if run:
            phrases.append(run)
        run = []
    if run:
        phrases.append(run)
    chunks = [" ".join(p[i : i + 3]) for p in phrases for i in range(0, len(p), 3)]
    unique = list(dict.fromkeys(chunks))
    return sorted(unique, key=lambda c: (-len(c.split()), -len(c)))[:limit]


def negate(text: str) -> str:
    """The assertion's negation: drop its negation if it has one, otherwise negate its first auxiliary
    verb, otherwise swap its first word of cause or change for the opposite ("reduces" -> "raises"),
    otherwise deny it as a whole."""
    text = CITATION.sub("", text).strip().rstrip(".")
    if _NEGATION.search(text):
        return _NEGATION.sub("", text, count=1)
    auxiliary = _AUXILIARY.search(text)
    if auxiliary:
        return f"{text[: auxiliary.end()]} not{text[auxiliary.end():]}"
    change = _CHANGE_WORD.search(text)
    if change:
        return f"{text[: change.start()]}{_OPPOSITE[change.group(0).lower()]}{text[change.end():]}"
    acronym = len(text) > 1 and text[1].isupper()
    return f"No evidence that {text if acronym else text[0].lower() + text[1:]}"


def queries_for(assertion: str, claim: str = "") -> list[Query]:
    """The keyphrase query and the counter-evidence query for an assertion of `claim`.

    An assertion is often a fragment ("rare events vanish before common ones") whose topic is said
    elsewhere in its claim: the claim's own keyphrases that the assertion lacks are added as context,
    to the search and to the statement papers are ranked against."""
    phrases = keyphrases(assertion)
    own = {w for p in phrases for w in p.split()}
    context = [p for p in keyphrases(CITATION.sub("", claim), limit=3) if not own & set(p.split())][:2]
    framed = f"{assertion.strip().rstrip('.')} ({'; '.join(context)})" if context else assertion
    out = []
    if phrases:
        out.append(Query(" ".join(phrases + context), f"matches the assertion's keyphrases ({'; '.join(phrases)})", framed))
    counter = negate(assertion)
    counter_phrases = keyphrases(counter)
    out.append(Query(" ".join(counter_phrases + context) or counter,
                     "sought as possible counter-evidence (the assertion negated)",
                     f"{counter} ({'; '.join(context)})" if context else counter))
    return out

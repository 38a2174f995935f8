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

# Function words and generic research verbs: never search terms on their own.
STOP_WORDS = frozenset("""
a an the and or but nor so yet for of in on at to from by with without within into onto over under about
as than then that this these those it its they them their there here which who whom whose what when where
why how is are was were be been being am do does did done doing has have had having can could may might must
shall should will would not no never very more most less least much many few some any all each every both
either neither own same such only just also even still again further once while whereas although though if
unless until because since before after above below between through during against among per via up down out
off i we you he she our your his her one two three first second new based using use used show shows shown
showing find finds found finding paper papers work study studies result results claim claims arxiv et al
simply instead rather specifically can't cannot don't doesn't isn't aren't whether
""".split())
_TOKEN = re.compile(r"[A-Za-z][A-Za-z0-9'-]*|\d[\w.]*|[^\sA-Za-z0-9]")
_NEGATION = re.compile(r"\b(not|NOT|never|no)\b\s*")
_AUXILIARY = re.compile(r"\b(is|are|was|were|can|could|does|do|did|will|would|has|have|had|should|must|may|might)\b",
                        re.I)


@dataclass(frozen=True)
class Query:
    text: str  # what is sent to the sources (keyphrases) or embedded (the negated statement)
    why: str  # why it was issued, carried into the evidence it retrieves


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
    verb, otherwise deny it as a whole."""
    text = CITATION.sub("", text).strip().rstrip(".")
    if _NEGATION.search(text):
        return _NEGATION.sub("", text, count=1)
    auxiliary = _AUXILIARY.search(text)
    if auxiliary:
        return f"{text[: auxiliary.end()]} not{text[auxiliary.end():]}"
    acronym = len(text) > 1 and text[1].isupper()
    return f"No evidence that {text if acronym else text[0].lower() + text[1:]}"


def queries_for(assertion: str) -> list[Query]:
    phrases = keyphrases(assertion)
    out = []
    if phrases:
        out.append(Query(" ".join(phrases), f"matches the assertion's keyphrases ({'; '.join(phrases)})"))
    out.append(Query(negate(assertion), "sought as possible counter-evidence (the assertion negated)"))
    return out

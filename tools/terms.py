"""Search terms: which words of a text are worth sending to a literature search.

One list for every search the tool makes (the offline index's FTS queries, live arXiv queries, the
agent's keyphrase queries): function words, generic research verbs and citation furniture
("arXiv", "et al.") match every paper or none and drown the words that say what a text is about.
Tokens that start with a digit (years, identifiers, counts) are never search terms either.
"""

from __future__ import annotations

import re

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

_WORD = re.compile(r"[^\W_][\w'-]*", re.UNICODE)


def search_words(text: str, limit: int | None = None) -> list[str]:
    """The text's distinct search terms, lower-cased, in order: no stop words, nothing digit-led,
    no single letters ("RL" and "AI" are terms)."""
    out: list[str] = []
    for token in _WORD.findall(text.lower()):
        word = token.strip("'-")
        if len(word) > 1 and not word[0].isdigit() and word not in STOP_WORDS and word not in out:
            out.append(word)
    return out[:limit] if limit is not None else out

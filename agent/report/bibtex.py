"""report.bib: a BibTeX entry for every paper the report cites that the source confirmed exists.

Entries follow arXiv's own BibTeX export (`@misc` with `eprint`, `archivePrefix`, `primaryClass`)
so reference managers link them back to arXiv; the key is the arXiv ID, which is unique and stable.
"""

from __future__ import annotations

import re
from datetime import date
from typing import Protocol

# BibTeX's special characters, escaped so a title such as "Q&A at 10% cost" survives LaTeX.
_SPECIAL = re.compile(r"([&%$#_{}])")


class Citable(Protocol):
    id: str
    title: str
    authors: list[str]
    published: date


def bibtex(papers: list[Citable], categories: dict[str, str] | None = None) -> str:
    """One @misc entry per distinct paper, in the order given."""
    seen: dict[str, Citable] = {}
    for paper in papers:
        seen.setdefault(paper.id, paper)
    return "\n".join(_entry(p, (categories or {}).get(p.id)) for p in seen.values())


def _entry(paper: Citable, primary_class: str | None) -> str:
    fields = {
        "title": "{" + _escape(paper.title) + "}",  # double braces keep the title's capitals
        "author": " and ".join(_escape(a) for a in paper.authors) or "{Unknown}",
        "year": str(paper.published.year),
        "eprint": paper.id,
        "archivePrefix": "arXiv",
        **({"primaryClass": primary_class} if primary_class else {}),
        "url": f"https://arxiv.org/abs/{paper.id}",
    }
    body = ",\n".join(f"  {name} = {{{value}}}" for name, value in fields.items())
    return f"@misc{{{_key(paper.id)},\n{body}\n}}\n"


def _key(arxiv_id: str) -> str:
    return "arxiv:" + arxiv_id.replace("/", "_")


def _escape(text: str) -> str:
    return _SPECIAL.sub(r"\\\1", " ".join(text.split()))

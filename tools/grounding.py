"""Citation grounding: resolve each cited arXiv ID and check that the sentence fits the paper."""

from __future__ import annotations

from datetime import date
from typing import Literal

from pydantic import BaseModel

CitationStatus = Literal[
    "grounded", "wrong_paper", "year_mismatch", "nonexistent", "malformed", "not_found", "unverifiable", "no_id"
]


class PaperRef(BaseModel):
    id: str
    title: str
    published: date
    authors: list[str]


class CitationCheck(BaseModel):
    """One citation's verdict; the verify-citations JSON and report.json share this shape."""

    line: int
    as_written: str
    arxiv_id: str | None
    status: CitationStatus
    context: str
    stated_year: int | None
    paper: PaperRef | None
    reason: str
    suggested_id: str | None = None

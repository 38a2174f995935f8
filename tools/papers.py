"""The paper record every literature source returns (snapshot, live arXiv, cache)."""

from __future__ import annotations

from datetime import date
from typing import Literal

from pydantic import BaseModel, Field

SourceName = Literal["snapshot", "arxiv", "cache"]


class Paper(BaseModel):
    id: str = Field(description="arXiv ID without version, e.g. 2305.17493 or hep-th/9901001")
    title: str
    authors: list[str] = []
    authors_truncated: bool = False  # the list holds only the first authors: a name missing from it proves nothing
    published: date = Field(description="v1 submission date")
    date_precision: Literal["day", "month"] = "day"
    updated: date | None = None
    versions: int | None = Field(default=None, description="number of versions, when the source knows")
    summary: str = ""
    # True when `summary` is our own paraphrase (the offline snapshot), not the paper's abstract:
    # quotes must say so.
    summary_is_paraphrase: bool = False
    findings: list[str] = []
    topics: list[str] = []
    categories: list[str] = []
    primary_category: str | None = None
    doi: str | None = None
    journal_ref: str | None = None
    source: SourceName = "snapshot"

    @property
    def year(self) -> int:
        return self.published.year

    def text(self) -> str:
        """Everything a quote may be taken from."""
        return "\n".join([self.title, self.summary, *self.findings])

"""Claims, evidence, verdicts and the report — the report.json contract (see DESIGN.md)."""

from __future__ import annotations

from datetime import date, datetime
from typing import Any, Literal

from pydantic import BaseModel, Field

from tools.grounding import CitationCheck

Durability = Literal["durable", "perishable", "unassessed"]
JudgedBy = Literal["heuristic", "model"]

# Graded stance of a paper toward a claim, from explicit contradiction to explicit support.
Stance = Literal["contradicts", "qualifies", "unrelated", "consistent", "supports"]
STANCE_SCORE: dict[str, int] = {"contradicts": -2, "qualifies": -1, "unrelated": 0, "consistent": 1, "supports": 2}

VerdictLabel = Literal["supported", "contested", "refuted", "insufficient_evidence"]


class Anchor(BaseModel):
    """An entry of the inquiry's anchor-paper list."""

    arxiv_id: str
    year: int | None = None
    label: str


class Task(BaseModel):
    """One thing the inquiry asks the researcher to do, e.g. '1a' re-test the ratio at fixed diversity."""

    id: str
    text: str


class Claim(BaseModel):
    id: str
    text: str
    dated: str | None = Field(default=None, description="the date as written: '2023' or '2024–2025'")
    year_start: int | None = None
    year_end: int | None = None
    citations: list[str] = Field(default=[], description="arXiv IDs as cited, in order")
    tags: list[str] = []
    durability: Durability = "unassessed"
    origin: Literal["inquiry", "user"] = "inquiry"


class Inquiry(BaseModel):
    question: str = ""
    claims: list[Claim]
    anchors: list[Anchor] = []
    tasks: list[Task] = []


class Evidence(BaseModel):
    arxiv_id: str
    title: str
    published: date
    stance: Stance
    score: float = Field(description="relevance of the paper to the claim, 0..1")
    rationale: str
    quote: str | None = Field(default=None, description="verbatim from quote_source; checked to occur there")
    quote_source: Literal["abstract", "paraphrase"] | None = None
    judged_by: JudgedBy = "heuristic"
    newer_than_claim: bool = False


class Verdict(BaseModel):
    label: VerdictLabel
    rationale: str
    judged_by: JudgedBy = "heuristic"


class ClaimAudit(BaseModel):
    id: str
    text: str
    dated: str | None
    tags: list[str]
    durability: Durability
    origin: Literal["inquiry", "user"]
    citations: list[CitationCheck]
    verdict: Verdict
    evidence: list[Evidence]


class FollowUpQuestion(BaseModel):
    question: str
    rationale: str
    grounded_in: list[str] = Field(description="claim IDs, arXiv IDs and simulation keys it rests on")


class TaskFinding(BaseModel):
    task_id: str
    task: str
    found: bool
    summary: str
    evidence: list[str] = Field(default=[], description="arXiv IDs or simulation keys")


class SourceInfo(BaseModel):
    name: str
    detail: str


class Report(BaseModel):
    run_id: str
    created_at: datetime
    config: dict[str, Any]
    question: str
    bottom_line: str
    claims: list[ClaimAudit]
    citations: list[CitationCheck]  # every claim's citations, then the anchor list's
    anchor_citations: list[CitationCheck]
    simulations: dict[str, Any]
    follow_up_questions: list[FollowUpQuestion]
    tasks: list[TaskFinding]
    sources: list[SourceInfo]
    method: dict[str, Any]

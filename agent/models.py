"""Claims, evidence, verdicts and the report — the report.json contract (see DESIGN.md)."""

from __future__ import annotations

from datetime import date, datetime
from typing import Any, Literal

from pydantic import BaseModel, Field

from agent.verdicts import EVIDENCE_STANCES, Durability, Stance, VerdictLabel
from tools.grounding import CitationCheck

# report.json's layout version; `migrate_report` reads every earlier one.
SCHEMA_VERSION = 2
JudgedBy = Literal["heuristic", "model"]
__all__ = ["EVIDENCE_STANCES", "Durability", "Stance", "VerdictLabel"]


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
    title: str = Field(default="", description="the inquiry's name for itself: its first heading or what it audits")
    question: str = ""
    claims: list[Claim]
    anchors: list[Anchor] = []
    tasks: list[Task] = []


class Evidence(BaseModel):
    """One paper's stance toward one assertion (a newer paper found by search, or a cited one)."""

    arxiv_id: str
    title: str
    published: date
    assertion_id: str = ""
    stance: Stance | None = Field(description="None: the judge could not decide (undetermined offline)")
    confidence: float = Field(default=1.0, description="the judge's confidence in the stance, 0..1")
    score: float = Field(description="relevance of the paper to the assertion, 0..1")
    rationale: str
    quote: str | None = Field(default=None, description="verbatim from quote_source; checked to occur there")
    quote_source: Literal["abstract", "paraphrase"] | None = None
    judged_by: JudgedBy = "heuristic"
    newer_than_claim: bool = False
    retrieved_because: str = Field(default="", description="the query that found it, or 'cited by the claim'")

    @property
    def is_evidence(self) -> bool:
        """supports / qualifies / contradicts; background and unrelated are context, never agreement."""
        return self.stance in EVIDENCE_STANCES


class SimulationStance(BaseModel):
    """The simulation lab's result on a proposition an assertion states (agent/sim_evidence.py)."""

    key: str  # "simulations.<proposition>"
    proposition: str
    denies: bool = False  # the assertion states the proposition's negation (the stance is toward the assertion)
    stance: Stance
    detail: str  # the numbers with their intervals, and what was held fixed


class AssertionAudit(BaseModel):
    id: str  # "C2.b"
    text: str  # a span of the claim's text
    scope: list[str] = []
    label: VerdictLabel
    rests_on: list[str] = Field(description="'source stance' for every source that took a position")
    reason: str
    evidence: list[Evidence] = Field(default=[], description="newer papers found for this assertion")
    cited: list[Evidence] = Field(default=[], description="the claim's grounded citations, judged against it")
    simulation: list[SimulationStance] = []
    simulation_note: str = Field(default="", description="why the lab has (or has no) result on it")


class Verdict(BaseModel):
    label: VerdictLabel
    rationale: str
    durability: Durability = "unassessed"
    durability_reason: str = ""
    judged_by: JudgedBy = "heuristic"  # who judged the stances; the label itself follows agent/verdicts.py


class ClaimAudit(BaseModel):
    id: str
    text: str
    dated: str | None
    tags: list[str]
    durability: Durability  # as the inquiry labelled it ([durable] / [perishable]), else unassessed
    origin: Literal["inquiry", "user"]
    citations: list[CitationCheck]
    verdict: Verdict
    assertions: list[AssertionAudit] = []
    split: str = Field(default="", description="how the claim was split into its assertions")
    evidence: list[Evidence]  # every assertion's newer papers, best first
    citation_support: str = Field(default="", description="whether the cited papers support the claim, in words")


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
    schema_version: int = SCHEMA_VERSION
    run_id: str
    created_at: datetime
    title: str = ""
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


def migrate_report(data: dict[str, Any]) -> Report:
    """A report.json of any schema version, read as the current Report.

    Version 1 (no `schema_version`) graded stances on a scale with "consistent" (on topic, no
    contradiction detected), which the current scale calls `background`: context, not agreement.
    Its claims had no assertions and its verdicts no durability.
    """
    version = data.get("schema_version", 1)
    if version > SCHEMA_VERSION:
        raise ValueError(f"report.json has schema_version {version}; this collapse-audit reads up to {SCHEMA_VERSION}: upgrade it")
    if version == 1:
        data = {**data, "schema_version": SCHEMA_VERSION}
        for claim in data.get("claims", []):
            for item in claim.get("evidence", []):
                if item.get("stance") == "consistent":
                    item["stance"] = "background"
    return Report.model_validate(data)

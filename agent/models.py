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
    fallback: bool = Field(default=False, description="the model failed on this one, so judged_by judged it instead")
    removed: int = Field(default=0, description="quotes, quoted passages and arXiv IDs removed from the model's text "
                                                "as not grounded in this paper (the rationale says which)")
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


class PaperChange(BaseModel):
    """A paper listed for an assertion in one run and not in the other."""

    arxiv_id: str
    title: str = ""
    published: date | None = None
    stance: Stance | None = Field(default=None, description="its stance toward the assertion; None: undetermined")
    cited: bool = Field(default=False, description="one of the claim's own citations, judged against the assertion")


class StanceChange(BaseModel):
    """A paper judged against the same assertion in both runs, with a different stance now."""

    arxiv_id: str
    title: str = ""
    before: Stance | None
    after: Stance | None
    cited: bool = False


class EvidenceMove(BaseModel):
    """A source whose position behind an assertion's verdict changed (None: it took no position in that run)."""

    ref: str = Field(description="an arXiv ID or a simulation key")
    before: Stance | None
    after: Stance | None


class AssertionChange(BaseModel):
    claim_id: str
    assertion_id: str
    text: str
    new_papers: list[PaperChange] = Field(default=[], description="listed for it now, not in the earlier run")
    dropped_papers: list[PaperChange] = Field(default=[], description="listed in the earlier run, not now")
    stance_changes: list[StanceChange] = []
    verdict_before: VerdictLabel | None = Field(default=None, description="None: the assertion is new")
    verdict_after: VerdictLabel | None = Field(default=None, description="None: the assertion is gone")
    moved_by: list[EvidenceMove] = Field(default=[], description="the positions behind the verdict that changed")


class ClaimChange(BaseModel):
    """A claim whose verdict or durability changed, and the assertion verdicts that moved it."""

    claim_id: str
    text: str
    verdict_before: VerdictLabel
    verdict_after: VerdictLabel
    durability_before: Durability
    durability_after: Durability
    moved_by: list[str] = Field(default=[], description="'C2.a: supported → contested' per assertion whose verdict changed")


class CitationChange(BaseModel):
    where: str = Field(description="the claim's id, or 'anchors' for the anchor list")
    as_written: str
    arxiv_id: str | None
    before: str | None = Field(description="its status in the earlier run; None: not cited then")
    after: str | None = Field(description="its status now; None: no longer cited")


class ClaimRef(BaseModel):
    id: str
    text: str


class WhatChanged(BaseModel):
    """A re-check against an earlier run of the same audit (agent/changes.py), from both runs' stored records."""

    against: str = Field(description="the run id of the earlier run")
    against_date: date | None = None
    since: date | None = Field(default=None, description="this run's literature window starts here (None: no limit)")
    changed: bool
    summary: str
    claims_added: list[ClaimRef] = []
    claims_removed: list[ClaimRef] = []
    claims: list[ClaimChange] = []
    assertions: list[AssertionChange] = Field(default=[], description="per assertion: new and dropped papers "
                                              "(papers judged unrelated are left out), stance and verdict changes")
    citations: list[CitationChange] = []
    simulation_before: str | None = Field(default=None, description="set, with simulation_after, only when the "
                                          "lab's one-sentence result (or why none ran) changed")
    simulation_after: str | None = None


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
    what_changed: WhatChanged | None = Field(default=None, description="re-checks only: what changed since the run re-checked")
    bottom_line: str
    claims: list[ClaimAudit]
    citations: list[CitationCheck]  # every claim's citations, then the anchor list's
    anchor_citations: list[CitationCheck]
    simulations: dict[str, Any]
    follow_up_questions: list[FollowUpQuestion]
    tasks: list[TaskFinding]
    sources: list[SourceInfo]
    method: dict[str, Any]


def report_json_schema() -> dict[str, Any]:
    """report.json's JSON Schema (draft 2020-12), generated from `Report` (`collapse-audit schema`)."""
    schema = Report.model_json_schema(mode="serialization")
    return {"$schema": "https://json-schema.org/draft/2020-12/schema",
            "$comment": f"collapse-audit report.json, schema_version {SCHEMA_VERSION}", **schema}


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

"""The audit graph's state: typed records of our own models, not message lists."""

from __future__ import annotations

from datetime import date
from pathlib import Path
from typing import Annotated, Any, Literal, TypedDict

from pydantic import BaseModel

from agent.assertions import Assertion
from agent.models import ClaimAudit, Evidence, FollowUpQuestion, Inquiry, TaskFinding
from tools.grounding import CitationCheck
from tools.papers import Paper


class RunConfig(BaseModel):
    """Everything a run was asked to do; stored with the run so `--resume` rebuilds the same services."""

    run_id: str
    run_date: date
    inquiry_path: Path | None = None  # None: the packaged default inquiry
    claims_path: Path | None = None  # None: the registry of the inquiry's audit (agent/projects.py)
    source: Literal["auto", "snapshot", "arxiv"] = "auto"
    arxiv_url: str
    llm: Literal["none", "openai"] = "none"
    llm_choice: str | None = None  # how `llm` was chosen by `--llm auto`, e.g. "--llm auto: OPENAI_BASE_URL was set"
    model: str | None = None
    since: date | None = None
    sim_budget: Literal["none", "tiny", "small", "full"] = "small"
    device: Literal["auto", "cpu", "cuda"] = "auto"
    seed: int = 0
    out_dir: Path
    against: str | None = None  # a re-check: the earlier run it is compared with; its literature is asked afresh


class Candidate(BaseModel):
    paper: Paper
    relevance: float
    why: str  # the query that found it (agent/queries.py)


def merge_dicts(left: dict, right: dict) -> dict:
    """Reducer for fan-out branches: each branch contributes its own keys."""
    return {**(left or {}), **(right or {})}


class AuditState(TypedDict, total=False):
    run: RunConfig
    inquiry: Inquiry
    assertions: dict[str, list[Assertion]]  # claim id -> its assertions
    splits: dict[str, str]  # claim id -> how it was split into assertions (rules, or which model)
    propositions: dict[str, list[list]]  # assertion id -> [proposition key, denies] the lab tests that it states
    citations: dict[str, list[CitationCheck]]  # claim id (or "anchors") -> checks
    candidates: Annotated[dict[str, list[Candidate]], merge_dicts]  # assertion id -> newer papers, best first
    evidence: dict[str, list[Evidence]]  # assertion id -> newer papers' graded stances
    cited: dict[str, list[Evidence]]  # assertion id -> the claim's grounded citations' graded stances
    simulation: dict[str, Any]  # the lab's result (JSON form), its plan and figure paths
    audits: list[ClaimAudit]
    follow_ups: list[FollowUpQuestion]
    tasks: list[TaskFinding]
    bottom_line: str
    report_files: list[str]
    baseline: dict[str, Any]  # a re-check's earlier run as stored (agent/changes.py Baseline, JSON form)


class ClaimPayload(TypedDict):
    """What one literature branch receives through `Send`."""

    run: RunConfig
    claim_id: str
    claim_text: str
    assertions: list[Assertion]
    since: date | None
    exclude: list[str]

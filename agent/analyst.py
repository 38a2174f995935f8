"""The Analyst: grades one paper's stance toward one assertion of a claim.

Two implementations share this interface: `OfflineAnalyst` (here: the heuristic judge of
agent/stance_judge.py, which abstains when its signals cannot separate stances, every judgement
labelled heuristic with its confidence) and `LLMAnalyst` (agent/llm_analyst.py, any
OpenAI-compatible endpoint). Neither decides a verdict: verdicts follow from the stances by the
calculus in agent/verdicts.py.

They also answer whether a sentence that cites a paper describes it (`citation_fit`): the LLM
analyst asks its model; the offline analyst abstains, since offline that question is the citation
grounding's (tools/grounding.py), which needs the whole citation and the literature source. In a run
with a model the answer combines with the grounding's check by tools/grounding.py `with_model_fit`
(agent/nodes/grounding.py); benchmarks/grounding_accuracy.py --llm openai measures it side by side.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Literal, Protocol, TypeVar

from pydantic import BaseModel

from agent.assertions import CITATION, Assertion, Decomposition, split_claim
from agent.models import Claim, Evidence, JudgedBy
from agent.sim_evidence import stated_propositions
from agent.stance_judge import OfflineStanceJudge
from tools.embeddings import Embedder
from tools.papers import Paper


class FitAnswer(BaseModel):
    """Whether a sentence that cites a paper describes that paper."""

    fits: Literal["yes", "no", "undetermined"]
    confidence: float = 0.0
    reason: str
    judged_by: JudgedBy
    failed: bool = False  # the model failed on this answer, so it is an abstention
    removed: int = 0  # quoted passages and arXiv IDs removed from the model's reason as unfounded


class Analyst(Protocol):
    judged_by: JudgedBy

    def decompose(self, claim: Claim) -> Decomposition: ...

    def assess(self, assertion: Assertion, claim: Claim, paper: Paper, relevance: float, why: str) -> Evidence: ...

    def propositions(self, assertion: Assertion) -> list[tuple[str, bool]]: ...

    def citation_fit(self, sentence: str, paper: Paper) -> FitAnswer: ...


def evidence(
    assertion: Assertion, claim: Claim, paper: Paper, relevance: float, why: str, *, stance, confidence: float,
    rationale: str, quote: str | None, judged_by: JudgedBy,
) -> Evidence:
    """The Evidence record both analysts return: the paper, its stance and what the stance rests on.

    A "quote" that is only the paper's title is not a finding, so it is not kept as a quote."""
    if quote is not None and quote.strip().rstrip(".") == paper.title.strip().rstrip("."):
        quote = None
    return Evidence(
        arxiv_id=paper.id,
        title=paper.title,
        published=paper.published,
        assertion_id=assertion.id,
        stance=stance,
        confidence=round(confidence, 3),
        score=round(relevance, 3),
        rationale=rationale,
        quote=quote,
        quote_source="paraphrase" if paper.summary_is_paraphrase else "abstract",
        judged_by=judged_by,
        newer_than_claim=claim.year_end is not None and paper.published.year > claim.year_end,
        retrieved_because=why,
    )


A = TypeVar("A")
R = TypeVar("R")


def concurrently(analyst: Analyst, judge: Callable[[A], R], items: Sequence[A]) -> list[R]:
    """`judge` over `items`, in order; as many at once as the analyst asks (`concurrency`: the LLM
    analyst's client limit, whose semaphore bounds the requests in flight), else one after another."""
    workers = min(getattr(analyst, "concurrency", 1), len(items))
    if workers <= 1:
        return [judge(item) for item in items]
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="judge") as pool:
        return list(pool.map(judge, items))


class OfflineAnalyst:
    """Heuristic analyst: no network, no model beyond the sentence embeddings."""

    judged_by: JudgedBy = "heuristic"

    def __init__(self, embedder: Embedder):
        self.judge = OfflineStanceJudge(embedder)

    def decompose(self, claim: Claim) -> Decomposition:
        return Decomposition(assertions=split_claim(claim.id, claim.text))

    def assess(self, assertion: Assertion, claim: Claim, paper: Paper, relevance: float, why: str) -> Evidence:
        judged = self.judge.judge(assertion.text, paper, topic=CITATION.sub("", claim.text))
        quote = judged.quote if judged.quote and judged.quote in paper.text() else None
        return evidence(assertion, claim, paper, relevance, why, stance=judged.stance, confidence=judged.confidence,
                        rationale=f"heuristic: {judged.reason}", quote=quote, judged_by=self.judged_by)

    def propositions(self, assertion: Assertion) -> list[tuple[str, bool]]:
        """By the registry's term patterns (agent/sim_evidence.py)."""
        return [(p.key, denies) for p, denies in stated_propositions(assertion)]

    def citation_fit(self, sentence: str, paper: Paper) -> FitAnswer:
        return FitAnswer(fits="undetermined", reason="offline, whether a citation fits its paper is judged by the "
                         "citation grounding (tools/grounding.py), from the whole citation", judged_by=self.judged_by)

    @property
    def prompts(self) -> dict[str, str]:
        return {}  # no prompt is sent anywhere

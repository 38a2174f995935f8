"""The long-lived helpers the nodes call: literature source, embeddings, analyst.

They are rebuilt from the run's config rather than kept in graph state, so a resumed run (or
LangGraph Studio) gets the same services without checkpointing live connections.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from agent.analyst import Analyst, OfflineAnalyst
from agent.config import Settings
from agent.llm_client import llm_client_for
from agent.replay import session_for
from agent.state import RunConfig
from tools.arxiv_api import request_interval
from tools.embeddings import Embedder, get_embedder
from tools.snapshot import Snapshot
from tools.sources import PaperSource, open_source

if TYPE_CHECKING:
    from tools.llm import LLMClient


@dataclass
class Services:
    settings: Settings
    snapshot: Snapshot
    source: PaperSource
    embedder: Embedder
    analyst: Analyst
    llm: LLMClient | None = None  # the LLM analyst's client: its usage counts and response cache go in the report
    sim_cache_dir: Path | None = None  # the simulation sweeps' cache (None: the settings'; a replay: the recorded sweep)

    def __post_init__(self) -> None:
        self.sim_cache_dir = self.sim_cache_dir or self.settings.sim_cache_dir


_built: dict[str, Services] = {}


def services_for(run: RunConfig) -> Services:
    key = run.model_dump_json(include={"run_id", "source", "arxiv_url", "llm", "model", "against"})
    if key not in _built:
        # `run --record` and `replay` (agent/replay.py): the recorded snapshot copy and settings, the arXiv
        # client through the recording's transport (a replay's on a virtual clock), the lookup cache in memory
        session = session_for(run.run_id)
        settings = session.settings(Settings()) if session else Settings()
        settings.home.mkdir(parents=True, exist_ok=True)
        client = llm_client_for(run)  # first: an unusable endpoint is refused before anything loads
        snapshot = session.snapshot() if session else Snapshot.open(settings.snapshot_index_path)
        embedder = get_embedder(settings.embeddings)
        # the source carries the run's embedder, so grounding uses the one the settings chose
        source = open_source(run.source, arxiv_url=run.arxiv_url, cache_path=None if session else settings.cache_path,
                             snapshot=snapshot, embedder=embedder, min_interval=request_interval(run.arxiv_url),
                             transport=session.transport("arxiv") if session else None,
                             clock=session.clock if session else None,
                             fresh=run.against is not None)  # a re-check asks the literature afresh
        analyst = _analyst(client, embedder)
        _built[key] = Services(settings, snapshot, source, embedder, analyst, llm=client,
                               sim_cache_dir=session.sim_cache_dir if session else None)
    return _built[key]


def _analyst(client: LLMClient | None, embedder: Embedder) -> Analyst:
    if client is None:
        return OfflineAnalyst(embedder)
    from agent.llm_analyst import LLMAnalyst

    return LLMAnalyst(client, fallback=OfflineAnalyst(embedder))

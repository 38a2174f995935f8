"""The run's LLM client, made and probed once per run.

Kept apart from agent/services.py (which loads the snapshot and the embeddings): a run checks its
endpoint with this light module before it records anything, and the services reuse the same client.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from agent.config import Settings
from agent.state import RunConfig

if TYPE_CHECKING:
    from tools.llm import LLMClient


_clients: dict[str, LLMClient | None] = {}


def llm_client_for(run: RunConfig) -> LLMClient | None:
    """The run's LLM client, probed (raises LLMError when the endpoint is unusable); None offline.
    Cheap next to the rest of the services, so a run checks it before it records anything."""
    key = run.model_dump_json(include={"run_id", "llm", "model"})
    if key not in _clients:
        _clients[key] = _llm_client(run, Settings())
    return _clients[key]


def _llm_client(run: RunConfig, settings: Settings) -> LLMClient | None:
    if run.llm == "none":
        return None
    from agent.replay import session_for
    from tools.llm import LLMClient
    from tools.llm_cache import ResponseCache

    # answers are cached in the data dir, so a rerun or a re-check asks only what changed; a recorded run
    # or a replay (agent/replay.py) caches in memory only and sends through the recording's transport
    session = session_for(run.run_id)
    settings = session.settings(settings) if session else settings
    client = LLMClient(settings.openai_base_url, settings.openai_api_key, run.model or settings.model,
                       concurrency=settings.llm_concurrency,
                       cache=ResponseCache(None if session else settings.llm_cache_path),
                       http_client=session.http_client("llm") if session else None)
    client.probe()  # an unreachable endpoint or a rejected key stops the run here, before any stage
    return client



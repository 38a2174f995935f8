"""Settings shared by every command: where data lives, which sources and LLM to use.

Values come from CLI flags first, then environment variables, then these defaults.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from tools.arxiv_api import DEFAULT_ARXIV_URL


def _default_home() -> Path:
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "collapse-audit"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(extra="ignore")

    home: Path = Field(default_factory=_default_home, validation_alias="COLLAPSE_AUDIT_HOME")
    arxiv_url: str = Field(default=DEFAULT_ARXIV_URL, validation_alias="ARXIV_API_URL")
    openai_base_url: str | None = Field(default=None, validation_alias="OPENAI_BASE_URL")
    openai_api_key: str | None = Field(default=None, validation_alias="OPENAI_API_KEY")
    model: str = Field(default="gpt-4o-mini", validation_alias="COLLAPSE_AUDIT_MODEL")
    embeddings: Literal["auto", "minilm", "lexical"] = Field(default="auto", validation_alias="COLLAPSE_AUDIT_EMBEDDINGS")
    # LLM cost and load (tools/llm_costs.py): a price table file, and requests in flight at once
    llm_prices: Path | None = Field(default=None, validation_alias="COLLAPSE_AUDIT_LLM_PRICES")
    llm_concurrency: int = Field(default=4, ge=1, validation_alias="COLLAPSE_AUDIT_LLM_CONCURRENCY")

    @property
    def runs_dir(self) -> Path:
        return self.home / "runs"

    @property
    def cache_path(self) -> Path:
        """SQLite cache of arXiv lookups and searches."""
        return self.home / "cache.sqlite"

    @property
    def llm_cache_path(self) -> Path:
        """SQLite cache of the LLM's answers (tools/llm_cache.py): a rerun pays nothing for unchanged questions."""
        return self.home / "llm_cache.sqlite"

    @property
    def llm_prices_path(self) -> Path:
        """The LLM price table: COLLAPSE_AUDIT_LLM_PRICES, else llm_prices.toml/.json here, else the packaged one."""
        from tools.llm_costs import prices_path

        return prices_path(self.home, self.llm_prices)

    @property
    def snapshot_index_path(self) -> Path:
        return self.home / "snapshot.sqlite"

    @property
    def audits_dir(self) -> Path:
        """Claims registries of audits that are not projects, one directory per inquiry (agent/projects.py)."""
        return self.home / "audits"

    @property
    def legacy_claims_path(self) -> Path:
        """The one claims registry of versions before audits; moved to the default audit on first use."""
        return self.home / "claims.jsonl"

    @property
    def sim_cache_dir(self) -> Path:
        return self.home / "simulations"

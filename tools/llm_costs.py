"""What the LLM was asked and what it cost: token counts per stage and model, priced from a table.

`Usage` counts, per (stage, model), the requests sent, the answers served from the response cache
(tools/llm_cache.py, which cost nothing) and the prompt and completion tokens the API reported in
each reply's `usage` (a reply without one counts as a request with unknown tokens). It is shared by
the threads of one run and safe to update from all of them.

`PriceTable` holds USD per million prompt (`input`) and completion (`output`) tokens per model,
from a TOML or JSON file:

    [models."gpt-4o-mini"]        # JSON: {"models": {"gpt-4o-mini": {"input": 0.15, "output": 0.6}}}
    input = 0.15
    output = 0.60

The table used is the file `COLLAPSE_AUDIT_LLM_PRICES` names, else `llm_prices.toml` (or `.json`) in
the data dir, else the packaged one (tools/data/llm_prices.toml: a few OpenAI models, at the prices
listed when it was written; prices change, so check them). A model the table lacks has no cost: its
tokens are still counted, and the cost is reported as not computed, never as zero. A dated snapshot
name ("gpt-4o-mini-2024-07-18") takes its model's price when the table lacks the snapshot itself.
"""

from __future__ import annotations

import json
import re
import threading
import tomllib
from dataclasses import asdict, dataclass
from importlib.resources import files
from pathlib import Path

from pydantic import BaseModel, Field, ValidationError

PRICES_FILE = "llm_prices.toml"  # in the data dir; llm_prices.json is read too
PRICES_ENV = "COLLAPSE_AUDIT_LLM_PRICES"
_SNAPSHOT = re.compile(r"-\d{4}-\d{2}-\d{2}$")


@dataclass
class Tally:
    requests: int = 0  # sent to the endpoint, re-asks included
    cache_hits: int = 0  # answered from the response cache: no request, no tokens
    prompt_tokens: int = 0
    completion_tokens: int = 0
    unreported: int = 0  # requests whose reply carried no `usage`: their tokens are unknown

    def add(self, other: Tally) -> None:
        for name, value in asdict(other).items():
            setattr(self, name, getattr(self, name) + value)


class Usage:
    """Token counts per (stage, model), from the API's `usage`, and cache hits; thread-safe."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._tallies: dict[tuple[str, str], Tally] = {}

    def request(self, stage: str, model: str, usage) -> None:
        """One request answered; `usage` is the completion's usage object (or None when it had none)."""
        with self._lock:
            tally = self._tallies.setdefault((stage, model), Tally())
            tally.requests += 1
            if usage is None:
                tally.unreported += 1
                return
            tally.prompt_tokens += int(getattr(usage, "prompt_tokens", 0) or 0)
            tally.completion_tokens += int(getattr(usage, "completion_tokens", 0) or 0)

    def cache_hit(self, stage: str, model: str) -> None:
        with self._lock:
            self._tallies.setdefault((stage, model), Tally()).cache_hits += 1

    def tallies(self) -> dict[tuple[str, str], Tally]:
        with self._lock:
            return {key: Tally(**asdict(t)) for key, t in self._tallies.items()}


class Price(BaseModel):
    input: float = Field(ge=0, description="USD per million prompt tokens")
    output: float = Field(ge=0, description="USD per million completion tokens")


class PriceTable(BaseModel):
    models: dict[str, Price] = {}
    source: str = ""  # where the table was read from, for the report

    def price(self, model: str) -> Price | None:
        return self.models.get(model) or self.models.get(_SNAPSHOT.sub("", model))

    def cost(self, model: str, tally: Tally) -> float | None:
        """USD for the tally's tokens, or None when the model has no price or some tokens are unknown."""
        price = self.price(model)
        if price is None or tally.unreported:
            return None
        return (tally.prompt_tokens * price.input + tally.completion_tokens * price.output) / 1_000_000


class PriceTableError(ValueError):
    """A price table that cannot be read; the message names the file and what is wrong, on one line."""


def packaged_prices_path() -> Path:
    return Path(str(files("tools.data").joinpath(PRICES_FILE)))


def prices_path(home: Path, configured: Path | None) -> Path:
    """The price table a run uses: the configured file, else the data dir's, else the packaged one."""
    if configured is not None:
        return configured
    for name in (PRICES_FILE, Path(PRICES_FILE).with_suffix(".json").name):
        if (home / name).is_file():
            return home / name
    return packaged_prices_path()


def load_prices(path: Path) -> PriceTable:
    """The table in `path` (TOML, or JSON when the name ends in .json); PriceTableError if unusable."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as error:
        raise PriceTableError(f"cannot read the LLM price table {path} ({error.strerror or error}); "
                              f"fix {PRICES_ENV} or remove the file") from None
    try:
        data = json.loads(text) if path.suffix.lower() == ".json" else tomllib.loads(text)
        table = PriceTable.model_validate({"models": data.get("models", {})} if isinstance(data, dict) else data)
    except (ValueError, ValidationError) as error:  # JSONDecodeError and TOMLDecodeError are ValueErrors
        problem = " ".join(str(error).split())[:200]
        raise PriceTableError(f"the LLM price table {path} is not valid ({problem}); it needs "
                              '[models."NAME"] tables with input and output in USD per million tokens') from None
    table.source = "the packaged price table" if path == packaged_prices_path() else str(path)
    return table


def usage_summary(usage: Usage, prices: PriceTable) -> dict:
    """report.json's token and cost figures: per (stage, model), per model, and in total.

    Costs are USD; None where a model has no price in the table (or its tokens are unknown)."""
    rows, models, total = [], {}, Tally()
    costs: dict[str, float | None] = {}
    for (stage, model), tally in sorted(usage.tallies().items()):
        rows.append({"stage": stage, "model": model, **asdict(tally), "cost_usd": _round(prices.cost(model, tally))})
        models.setdefault(model, Tally()).add(tally)
        total.add(tally)
    by_model = {}
    for model, tally in models.items():
        costs[model] = prices.cost(model, tally)
        by_model[model] = {**asdict(tally), "cost_usd": _round(costs[model])}
    spent = {m: t for m, t in models.items() if t.requests}
    unpriced = sorted(m for m in spent if costs[m] is None)
    total_cost = None if unpriced else sum(costs[m] or 0.0 for m in spent)
    return {
        "stages": rows,
        "models": by_model,
        "total": {**asdict(total), "cost_usd": _round(total_cost)},
        "prices": {"source": prices.source, "unpriced_models": unpriced,
                   "used": {m: prices.price(m).model_dump() for m in spent if prices.price(m) is not None}},
    }


def _round(cost: float | None) -> float | None:
    return None if cost is None else round(cost, 6)

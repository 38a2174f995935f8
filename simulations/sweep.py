"""A sweep: the grid of cells (family x regime x ratio x diversity x real amount), run batched,
aggregated over seeds, analysed, and cached by config hash.

    cfg = SweepConfig.budget("small")
    result = run_sweep(cfg, cache_dir=Path("cache"))
    result.model_dump(mode="json")  # {"config": ..., "cells": [...], "analysis": {...}}

Each family runs as one batched call per regime (cells x seeds in one tensor program). Every
per-generation array has generations + 1 entries: entry 0 describes the truth, entry g the model
fit at generation g (generation 1: real data only). `hold` says what stays fixed while the ratio
varies: "real" keeps the real count at real_amount (the synthetic count grows with rho); "total"
keeps the per-generation size at the real_amounts value, so the real count is (1 - rho) of it.
"""

from __future__ import annotations

import hashlib
import importlib
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

import torch
from pydantic import BaseModel, Field, field_validator, model_validator

from simulations.analysis import analyse
from simulations.cells import Cell, DiversityControl, Regime
from simulations.device import resolve_device
from simulations.diversity import check_control
from simulations.families.categorical import zipf
from simulations.metrics import entropy
from simulations.regimes import samples_per_generation

FAMILY_MODULES = {
    "categorical": "simulations.families.categorical",
    "markov": "simulations.families.markov",
    "gaussian": "simulations.families.gaussian",
    "gaussian_mixture": "simulations.families.gaussian_mixture",
    "linear_regression": "simulations.families.linear_regression",
    "neural_lm": "simulations.families.neural_lm",
    "vae_digits": "simulations.families.vae_digits",
}
CACHE_VERSION = "1"
Hold = Literal["real", "total"]


class SweepConfig(BaseModel):
    families: list[str] = ["categorical"]
    regimes: list[Regime] = ["replace", "fresh", "accumulate"]
    ratios: list[float] = [0.5, 0.9]
    diversity_control: DiversityControl = "matched"
    diversity: list[float] = [3.0, 4.0]
    real_amounts: list[int] = [200]
    holds: list[Hold] = ["real"]
    generations: int = Field(10, ge=1)
    seeds: int = Field(8, ge=2)
    seed: int = 0
    device: str = "auto"
    tail_tolerance: float = Field(0.05, gt=0, lt=1)  # tail mass (of the truth) a run may lose
    family_params: dict[str, dict[str, Any]] = {}

    @field_validator("families")
    @classmethod
    def _known_families(cls, families: list[str]) -> list[str]:
        unknown = [f for f in families if f not in FAMILY_MODULES]
        if unknown or not families:
            raise ValueError(f"unknown family {unknown}: use one of {', '.join(FAMILY_MODULES)}")
        return families

    @field_validator("ratios")
    @classmethod
    def _ratios_in_unit_interval(cls, ratios: list[float]) -> list[float]:
        bad = [r for r in ratios if not 0.0 <= r <= 1.0]
        if bad or not ratios:
            raise ValueError(f"ratios must lie in [0, 1], got {bad or ratios}")
        return ratios

    @model_validator(mode="after")
    def _valid_grid(self) -> SweepConfig:
        for value in self.diversity:
            check_control(self.diversity_control, value)
        if any(r < 2 for r in self.real_amounts) or not self.real_amounts:
            raise ValueError("real_amounts must be integers >= 2")
        if not self.cells():
            raise ValueError("the grid is empty: fixed_real needs a ratio < 1, and hold 'total' a ratio < 1 or replace")
        return self

    @classmethod
    def budget(cls, name: Literal["tiny", "small", "full"], seed: int = 0, device: str = "auto") -> SweepConfig:
        """The central design (categorical Zipf family, matched entropy) at three sizes.

        tiny: a few seconds on 2 CPU cores (tests of the whole pipeline); small: well under a
        minute (the default of `collapse-audit run`); full: a finer grid, every regime, more seeds,
        fixed total size as well as fixed real count, for a GPU or a patient user.
        """
        h = float(entropy(zipf(1000, 1.1, torch.device("cpu"))))  # the truth's entropy (nats)
        if name == "tiny":
            return cls(ratios=[0.5, 0.9], diversity=[round(0.7 * h, 3), round(h, 3)], real_amounts=[100, 400],
                       generations=5, seeds=4, seed=seed, device=device)
        if name == "small":
            return cls(ratios=[0.25, 0.5, 0.75, 0.9], diversity=[round(f * h, 3) for f in (0.6, 0.8, 1.0)],
                       real_amounts=[100, 300, 1000], holds=["real", "total"], generations=10, seeds=8, seed=seed,
                       device=device)
        if name == "full":
            return cls(regimes=["replace", "fresh", "accumulate", "fixed_real", "accumulate_subsample"],
                       ratios=[0.1, 0.25, 0.5, 0.75, 0.9, 0.95], diversity=[round(f * h, 3) for f in (0.5, 0.65, 0.8, 0.9, 1.0, 1.1)],
                       real_amounts=[100, 300, 1000, 3000], holds=["real", "total"], generations=20, seeds=32,
                       seed=seed, device=device)
        raise ValueError(f"unknown budget {name!r}: use tiny, small or full")

    def cells(self) -> list[tuple[Cell, Hold]]:
        """The grid in a fixed order; replace runs at ratio 1 only, fixed_real and hold 'total' need rho < 1."""
        grid: list[tuple[Cell, Hold]] = []
        for family, regime, hold in ((f, r, h) for f in self.families for r in self.regimes for h in self.holds):
            if regime == "replace" and hold != self.holds[0]:
                continue  # replace has no real data after generation 1: what is held makes no difference
            ratios = [1.0] if regime == "replace" else sorted(set(self.ratios))
            for ratio, diversity, amount in ((r, d, a) for r in ratios for d in self.diversity for a in self.real_amounts):
                if (regime == "fixed_real" or hold == "total") and ratio >= 1.0 and regime != "replace":
                    continue
                if hold == "real" or regime == "replace":
                    cell = Cell(family, regime, ratio, self.diversity_control, diversity, amount)
                else:
                    real = max(2, round((1 - ratio) * amount))
                    cell = Cell(family, regime, ratio, self.diversity_control, diversity, real, samples=amount)
                if (cell, hold) not in grid:
                    grid.append((cell, hold))
        return grid

    def digest(self) -> str:
        return hashlib.sha256((CACHE_VERSION + self.model_dump_json()).encode()).hexdigest()[:16]


class CellResult(BaseModel):
    family: str
    regime: str
    ratio: float
    diversity_control: str
    diversity: float
    real_amount: int
    samples: int  # training samples per generation after generation 1
    hold: Hold
    seeds: int
    metrics: dict[str, list[float | None]]  # name, name_se, name_median -> generations + 1 values


class SweepResult(BaseModel):
    config: SweepConfig
    cells: list[CellResult]
    analysis: dict[str, Any]


def _family(name: str):
    """Import a family module on first use (the neural families are optional and heavier)."""
    try:
        return importlib.import_module(FAMILY_MODULES[name])
    except ModuleNotFoundError as error:
        if error.name != FAMILY_MODULES[name]:
            raise
        raise ValueError(f"family {name!r} is not available in this installation") from None


def _summarise(metrics: dict[str, torch.Tensor]) -> dict[str, list[float | None]]:
    out: dict[str, list[float | None]] = {}
    clean = lambda t: [None if math.isnan(v) else float(v) for v in t.tolist()]  # noqa: E731
    for name, runs in metrics.items():
        n = (~runs.isnan()).sum(0).clamp_min(1)
        out[name] = clean(runs.nanmean(0))
        centred = torch.where(runs.isnan(), torch.zeros_like(runs), runs - runs.nanmean(0))
        se = ((centred**2).sum(0) / (n - 1).clamp_min(1)).sqrt() / n.sqrt()
        out[f"{name}_se"] = clean(se)
        out[f"{name}_median"] = clean(runs.nanmedian(0).values)
    return out


def run_sweep(
    cfg: SweepConfig,
    cache_dir: Path | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> SweepResult:
    """Run (or load from cache_dir) the sweep; progress(done_cells, total_cells) after each batch."""
    cache_file = cache_dir / f"sweep-{cfg.digest()}.json" if cache_dir else None
    if cache_file and cache_file.exists():
        return SweepResult.model_validate_json(cache_file.read_text())
    device = resolve_device(cfg.device)
    grid = cfg.cells()
    results: list[CellResult] = []
    analysed: list[dict[str, Any]] = []
    batches: dict[tuple[str, str], list[tuple[Cell, Hold]]] = {}
    for cell, hold in grid:
        batches.setdefault((cell.family, cell.regime), []).append((cell, hold))
    done = 0
    for index, ((family, _), members) in enumerate(batches.items()):
        cells = [c for c, _ in members]
        runs = _family(family).simulate(cells, cfg.generations, cfg.seeds, device, cfg.seed + 7919 * index,
                                        **cfg.family_params.get(family, {}))
        for (cell, hold), metrics in zip(members, runs):
            fields = dict(family=cell.family, regime=cell.regime, ratio=cell.ratio, diversity_control=cell.diversity_control,
                          diversity=cell.diversity, real_amount=cell.real_amount, samples=samples_per_generation(cell), hold=hold)
            results.append(CellResult(**fields, seeds=cfg.seeds, metrics=_summarise(metrics)))
            if "tail_mass_kept" in metrics:
                kept = metrics["tail_mass_kept"]
                collapse = kept[:, 1] - kept[:, -1]
                analysed.append({**fields, "final_tail_loss": collapse.tolist()})
        done += len(members)
        if progress:
            progress(done, len(grid))
    analysis = analyse(analysed, cfg.tail_tolerance, cfg.seed) if analysed else {"verdict": "No family in this sweep reports tail mass."}
    result = SweepResult(config=cfg, cells=results, analysis=analysis)
    if cache_file:
        cache_file.parent.mkdir(parents=True, exist_ok=True)
        cache_file.write_text(result.model_dump_json())
    return result

"""A sweep: the grid of cells (family x regime x ratio x diversity x real amount), run batched,
aggregated over seeds, analysed, and cached by config hash.

    cfg = SweepConfig.budget("small")
    result = run_sweep(cfg, cache_dir=Path("cache"))
    result.model_dump(mode="json")  # {"config": ..., "cells": [...], "analysis": {...}}

Each family runs as one batched call (all its cells, regimes and counterfactuals x seeds in one tensor
program, so real draws are paired across cells). Every
per-generation array has generations + 1 entries: entry 0 describes the truth, entry g the model
fit at generation g (generation 1: real data only). `hold` says what stays fixed while the ratio
varies: "real" keeps the real count at real_amount (the synthetic count grows with rho); "total"
keeps the per-generation size at the real_amounts value, so the real count is (1 - rho) of it.
"""

from __future__ import annotations

import hashlib
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, Field, ValidationError, field_validator, model_validator

from simulations.analysis import CellRuns, SimAnalysis, analyse, counterfactual_cells
from simulations.cells import Cell, DiversityControl, Hold, Regime
from simulations.diversity import UNBIASED, check_control
from simulations.executors import FAMILY_MODULES, Batch, Executor, LocalExecutor
from simulations.regimes import samples_per_generation
from simulations.files import atomic_write, set_aside

CACHE_VERSION = "2"
# Collapse metrics whose paired differences every cell carries (see metrics.py for their meaning).
PAIRED_METRICS = ("tail_mass_ratio", "tail_coverage", "forward_kl")


class GridOverride(BaseModel):
    """A family's own grid where the shared one would be too costly or meaningless for it."""

    regimes: list[Regime] | None = None
    ratios: list[float] | None = None
    diversity: list[float] | None = None
    real_amounts: list[int] | None = None


class SweepConfig(BaseModel):
    """The design: (real count R, synthetic share rho, sampler bias) per regime, and what is held fixed.

    With hold "real" the real count per generation is `real_amounts` and the synthetic count
    S = rho / (1 - rho) R grows with the share (S/R from 0 to 99 at rho = 0.99); with hold "total"
    the samples per generation are `real_amounts` and the real count is (1 - rho) of them. Ratio 0
    is the real-only cell. The control's unbiased setting (temperature 1, top-p 1, ...) is always
    added to `diversity`. Every cell's real-only counterfactuals (same real count, same total) are
    added to the grid and run on the same real draws (see analysis.py).
    """

    families: list[str] = ["categorical"]
    regimes: list[Regime] = ["replace", "fresh", "fixed_real"]
    ratios: list[float] = [0.0, 0.5, 0.9, 0.99]
    diversity_control: DiversityControl = "temperature"
    diversity: list[float] = [0.9, 1.0]
    real_amounts: list[int] = [100, 1000]
    holds: list[Hold] = ["real"]
    generations: int = Field(20, ge=1)
    seeds: int = Field(8, ge=2)
    seed: int = 0
    device: str = "auto"
    # relative_tail_mass below 1 - tolerance counts as collapse; scale tests use the same margin.
    tolerance: float = Field(0.1, gt=0, lt=1)
    family_params: dict[str, dict[str, Any]] = {}
    family_grids: dict[str, GridOverride] = {}

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
        unbiased = UNBIASED.get(self.diversity_control)
        if unbiased is not None and unbiased not in self.diversity:
            self.diversity = sorted([*self.diversity, unbiased])
        if any(r < 2 for r in self.real_amounts) or not self.real_amounts:
            raise ValueError("real_amounts must be integers >= 2")
        if not self.design():
            raise ValueError("the grid is empty: fixed_real needs a ratio < 1, and hold 'total' a ratio < 1 or replace")
        return self

    @classmethod
    def budget(cls, name: Literal["tiny", "small", "full"], seed: int = 0, device: str = "auto") -> SweepConfig:
        """The central design (categorical Zipf family, temperature bias) at three sizes.

        tiny: seconds on 2 CPU cores (tests of the whole pipeline); small: under a minute on 2 CPU
        cores (the default of `collapse-audit run`), coarse but bracketing the boundary; full: the
        whole design over five families with 32 paired seeds, for a GPU.
        """
        if name == "tiny":
            return cls(ratios=[0.0, 0.5, 0.9, 0.99], diversity=[0.9, 1.0], real_amounts=[100, 1000], generations=16,
                       seeds=8, seed=seed, device=device)
        if name == "small":
            return cls(ratios=[0.0, 0.1, 0.2, 0.3, 0.5, 0.7, 0.9, 0.99], diversity=[0.8, 0.9, 0.95, 1.0],
                       real_amounts=[100, 1000], holds=["real", "total"], generations=30, seeds=16, seed=seed,
                       device=device)
        if name == "full":
            return cls(families=["categorical", "markov", "gaussian", "gaussian_mixture", "neural_lm"],
                       regimes=["replace", "fresh", "fixed_real", "accumulate", "accumulate_subsample"],
                       ratios=[0.0, 0.02, 0.05, 0.1, 0.2, 0.3, 0.5, 0.7, 0.9, 0.95, 0.99],
                       diversity=[0.7, 0.8, 0.9, 0.95, 0.98, 1.0, 1.02, 1.05, 1.1],
                       real_amounts=[100, 1000, 10_000], holds=["real", "total"], generations=60, seeds=32,
                       seed=seed, device=device,
                       # The point-data families keep every training point (EM, SGD): their grids are coarser.
                       family_grids={
                           "gaussian_mixture": GridOverride(regimes=["replace", "fresh", "fixed_real"],
                                                            ratios=[0.0, 0.3, 0.7, 0.9], diversity=[0.8, 0.9, 1.0],
                                                            real_amounts=[100, 1000]),
                           "neural_lm": GridOverride(regimes=["replace", "fresh", "fixed_real"], ratios=[0.0, 0.5, 0.9],
                                                     diversity=[0.8, 1.0], real_amounts=[200]),
                       })
        raise ValueError(f"unknown budget {name!r}: use tiny, small or full")

    def _grid(self, family: str) -> tuple[list[str], list[float], list[float], list[int]]:
        o = self.family_grids.get(family, GridOverride())
        return (o.regimes or self.regimes, o.ratios or self.ratios, o.diversity or self.diversity,
                o.real_amounts or self.real_amounts)

    def design(self) -> list[tuple[Cell, Hold]]:
        """The grid in a fixed order. replace runs at ratio 1 only; ratio 0 is the real-only cell
        (one per regime and real count, with the unbiased sampler, held at its real count)."""
        grid: dict[tuple[Cell, Hold], None] = {}
        for family in self.families:
            regimes, ratios, diversity, amounts = self._grid(family)
            for regime, hold in ((r, h) for r in regimes for h in self.holds):
                if regime == "replace" and hold != self.holds[0]:
                    continue  # replace has no real data after generation 1: what is held makes no difference
                shares = [1.0] if regime == "replace" else sorted(set(ratios))
                for ratio, value, amount in ((r, d, a) for r in shares for d in diversity for a in amounts):
                    if ratio >= 1.0 and regime != "replace":
                        continue  # only replace trains on synthetic data alone
                    if ratio == 0.0:
                        neutral = UNBIASED.get(self.diversity_control, value)
                        grid[(Cell(family, regime, 0.0, self.diversity_control, neutral, amount), "real")] = None
                    elif hold == "real" or regime == "replace":
                        grid[(Cell(family, regime, ratio, self.diversity_control, value, amount), hold)] = None
                    else:
                        real = max(2, round((1 - ratio) * amount))
                        grid[(Cell(family, regime, ratio, self.diversity_control, value, real, samples=amount), hold)] = None
        return list(grid)

    def cells(self) -> list[tuple[Cell, Hold]]:
        """The design plus every cell's real-only counterfactuals (run in the same batch, paired), in
        a canonical order: listing regimes or values differently changes no random draw."""
        grid = dict.fromkeys(self.design())
        for cell, _ in list(grid):
            if cell.ratio > 0:
                for counterfactual in counterfactual_cells(cell, samples_per_generation(cell)):
                    grid.setdefault((counterfactual, "real"), None)
        families = {f: i for i, f in enumerate(self.families)}
        return sorted(grid, key=lambda ch: (families[ch[0].family], ch[0].regime, ch[1], ch[0].ratio, ch[0].diversity,
                                            ch[0].real_amount, ch[0].samples))

    def digest(self) -> str:
        return hashlib.sha256((CACHE_VERSION + self.model_dump_json()).encode()).hexdigest()[:16]


class Counterfactual(BaseModel):
    """A real-only cell paired with this one (same seeds, same real draws) and the per-generation
    differences cell - counterfactual of the collapse metrics (mean over seeds, its SE, median)."""

    regime: str
    real_amount: int
    difference: dict[str, list[float | None]]  # name, name_se, name_median -> generations + 1 values


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
    counterfactuals: dict[str, Counterfactual]  # "same_real", "same_total"; empty for real-only cells


class SweepResult(BaseModel):
    config: SweepConfig
    cells: list[CellResult]
    analysis: SimAnalysis | None  # None when no family in the sweep measures the tail


def _summarise(metrics: list[dict[str, np.ndarray]]) -> list[dict[str, list[float | None]]]:
    """Per cell and generation: mean over seeds (name), its standard error (name_se) and median
    (name_median). Cells with the same metric names are summarised together, as one array each."""
    out: list[dict[str, list[float | None]]] = [{} for _ in metrics]
    groups: dict[tuple[str, ...], list[int]] = {}
    for i, m in enumerate(metrics):
        groups.setdefault(tuple(m), []).append(i)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN generations (no synthetic batch) stay None
        for names, members in groups.items():
            for name in names:
                runs = np.stack([metrics[i][name] for i in members])  # [cells, seeds, generations + 1]
                n = np.maximum(np.isfinite(runs).sum(1), 1)
                stats = {name: np.nanmean(runs, 1), f"{name}_se": np.nanstd(runs, 1, ddof=1) / np.sqrt(n),
                         f"{name}_median": np.nanmedian(runs, 1)}
                for key, values in stats.items():
                    values = np.where(np.isfinite(values), values, np.nan).tolist()
                    for row, i in zip(values, members):
                        out[i][key] = [None if v != v else v for v in row]  # NaN -> None (JSON null)
    return out


def _counterfactual_runs(runs: CellRuns, by_cell: dict[Cell, CellRuns]) -> dict[str, tuple[Cell, dict[str, np.ndarray]]]:
    """Per kind: the counterfactual cell and the per-seed differences cell - counterfactual."""
    if runs.cell.ratio == 0.0:
        return {}
    out = {}
    for kind, cf in zip(("same_real", "same_total"), counterfactual_cells(runs.cell, samples_per_generation(runs.cell))):
        other = by_cell.get(cf)
        if other is not None:
            shared = [m for m in PAIRED_METRICS if m in runs.metrics and m in other.metrics]
            out[kind] = (cf, {m: runs.metrics[m] - other.metrics[m] for m in shared})
    return out


def run_sweep(
    cfg: SweepConfig,
    cache_dir: Path | None = None,
    progress: Callable[[int, int], None] | None = None,
    executor: Executor | None = None,
) -> SweepResult:
    """Run (or load from cache_dir) the sweep; progress(done_cells, total_cells) after each family.

    Each family runs as one batched call over all its cells and regimes (a grid batch), so real
    draws are common random numbers across every cell of the family (its counterfactuals included).
    `executor` runs the batches (executors.py: here, the default, or as Ray tasks); the numbers and
    the cache file are the same whichever runs them, and a cache hit runs nothing.
    """
    cache_file = cache_dir / f"sweep-{cfg.digest()}.json" if cache_dir else None
    if cache_file and (cached := _cached(cache_file)) is not None:
        return cached
    grid = cfg.cells()
    families = list(dict.fromkeys(cell.family for cell, _ in grid))
    members = {family: [(c, h) for c, h in grid if c.family == family] for family in families}
    batches = [Batch(family, tuple(c for c, _ in members[family]), cfg.generations, cfg.seeds, cfg.seed + 7919 * index,
                     cfg.family_params.get(family, {}))
               for index, family in enumerate(families)]
    done = 0

    def finished(batch: Batch) -> None:
        nonlocal done
        done += len(batch.cells)
        if progress:
            progress(done, len(grid))

    outputs = (executor or LocalExecutor()).run(batches, cfg.device, finished)
    runs = [CellRuns(cell, hold, metrics)
            for family, batch_outputs in zip(families, outputs)
            for (cell, hold), metrics in zip(members[family], batch_outputs)]
    by_cell = {r.cell: r for r in runs if r.hold == "real"}
    paired = [_counterfactual_runs(r, by_cell) for r in runs]
    flat = [(i, kind, cf, diffs) for i, p in enumerate(paired) for kind, (cf, diffs) in p.items()]
    summaries = _summarise([r.metrics for r in runs] + [diffs for *_, diffs in flat])
    counterfactuals: list[dict[str, Counterfactual]] = [{} for _ in runs]
    for (i, kind, cf, _), difference in zip(flat, summaries[len(runs):]):
        counterfactuals[i][kind] = Counterfactual(regime=cf.regime, real_amount=cf.real_amount, difference=difference)
    results = [
        CellResult(family=r.cell.family, regime=r.cell.regime, ratio=r.cell.ratio, diversity_control=r.cell.diversity_control,
                   diversity=r.cell.diversity, real_amount=r.cell.real_amount, samples=samples_per_generation(r.cell),
                   hold=r.hold, seeds=cfg.seeds, metrics=summary, counterfactuals=cf)
        for r, summary, cf in zip(runs, summaries, counterfactuals)
    ]
    measured = [r for r in runs if "tail_mass_ratio" in r.metrics]
    analysis = analyse(measured, cfg.generations, cfg.tolerance, cfg.seed) if measured else None
    result = SweepResult(config=cfg, cells=results, analysis=analysis)
    if cache_file:
        atomic_write(cache_file, result.model_dump_json())  # never a half-written cache file
    return result


def _cached(cache_file: Path) -> SweepResult | None:
    """The cached result, or None (a miss) when there is none or it cannot be read back: a file cut
    short or garbled is set aside as `<name>.corrupt-<timestamp>` (simulations/files.py) and the sweep runs."""
    if not cache_file.exists():
        return None
    try:
        return SweepResult.model_validate_json(cache_file.read_bytes())
    except ValidationError:  # truncated or garbled JSON, or a record this version cannot read
        set_aside(cache_file)
        return None

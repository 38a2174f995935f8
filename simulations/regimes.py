"""How each regime builds a generation's training set, as per-run sample counts every family shares.

Generation 1 is always fit on `real_amount` real samples. For generation g >= 2 with M training
samples per generation (Cell.samples, or real_amount / (1 - rho) so the real count stays fixed):

- replace:              M synthetic samples from model g-1 (the ratio is 1 by definition).
- fresh:                (1 - rho) M fresh real + rho M synthetic; the previous data is dropped.
- accumulate:           the same new data as fresh, added to everything seen so far.
- accumulate_subsample: accumulate, but train on M samples drawn uniformly from the pool.
- fixed_real:           the generation-1 real data (real_amount samples) plus M - real_amount fresh
                        synthetic samples, so rho = synthetic share (lambda = rho / (1 - rho)).

Families read a `DataPlan` per run (batched into tensors by `plan_tensors`), never the regime name,
so one tensor program covers every regime at once.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import get_args

import torch

from simulations.cells import Cell, Regime

REGIMES: tuple[str, ...] = get_args(Regime)


@dataclass(frozen=True)
class DataPlan:
    first_real: int  # real samples generation 1 is fit on
    fresh_real: int  # fresh real samples added each later generation
    synthetic: int  # synthetic samples drawn from the previous model each later generation
    keep_history: bool  # training set = all data so far (accumulate, accumulate_subsample)
    reuse_real_pool: bool  # the generation-1 real data is part of every training set (fixed_real)
    subsample: int  # train on this many samples drawn from the pool; 0 = train on all of it


def samples_per_generation(cell: Cell) -> int:
    """M: the cell's explicit size, or the size at which the real count stays `real_amount`."""
    if cell.samples > 0:
        return cell.samples
    if cell.ratio >= 1.0:
        return cell.real_amount
    return max(1, round(cell.real_amount / (1.0 - cell.ratio)))


def data_plan(cell: Cell) -> DataPlan:
    """The per-generation sample counts of one cell; ValueError for a regime/ratio that cannot exist."""
    if cell.regime not in REGIMES:
        raise ValueError(f"unknown regime {cell.regime!r}: use one of {', '.join(REGIMES)}")
    if not 0.0 <= cell.ratio <= 1.0:
        raise ValueError(f"ratio {cell.ratio} is outside [0, 1]")
    if cell.real_amount < 2:
        raise ValueError(f"real_amount {cell.real_amount} is too small: generation 1 needs >= 2 real samples")
    m = samples_per_generation(cell)
    synthetic = round(cell.ratio * m)
    if cell.regime == "replace":
        if cell.ratio != 1.0:
            raise ValueError("replace trains on synthetic data only, so its ratio is 1: use fresh for a mix")
        return DataPlan(cell.real_amount, 0, m, False, False, 0)
    if cell.regime == "fixed_real":
        if cell.ratio >= 1.0:
            raise ValueError("fixed_real needs ratio < 1: the real pool is part of every training set")
        return DataPlan(cell.real_amount, 0, max(0, m - cell.real_amount), False, True, 0)
    new = dict(first_real=cell.real_amount, fresh_real=m - synthetic, synthetic=synthetic, reuse_real_pool=False)
    if cell.regime == "fresh":
        return DataPlan(**new, keep_history=False, subsample=0)
    if cell.regime == "accumulate":
        return DataPlan(**new, keep_history=True, subsample=0)
    return DataPlan(**new, keep_history=True, subsample=m)


def plan_tensors(cells: list[Cell], seeds: int, device: torch.device) -> dict[str, torch.Tensor]:
    """Each DataPlan field as a tensor of shape [cells * seeds] (run b = cell b // seeds)."""
    plans = [data_plan(c) for c in cells]
    out: dict[str, torch.Tensor] = {}
    for field in DataPlan.__dataclass_fields__:
        values = torch.tensor([getattr(p, field) for p in plans], device=device)
        out[field] = values.repeat_interleave(seeds)
    return out

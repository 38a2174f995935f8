"""What the neural families (neural_lm, vae_digits) share: cell checks, point-data regimes, threads.

Their training sets are point data (sequences, images), not sufficient statistics, so a run's data
is a padded batch (`Pool`) that `RecursiveData` builds generation by generation from each cell's
DataPlan (simulations/regimes.py).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import torch
from torch import Tensor

from simulations.cells import Cell
from simulations.diversity import check_control
from simulations.regimes import data_plan


def check_cells(cells: list[Cell], supported: tuple[str, ...]) -> None:
    """ValueError for a cell this family cannot run: bad regime / ratio / control value, or a control
    outside `supported`."""
    for cell in cells:
        data_plan(cell)
        check_control(cell.diversity_control, cell.diversity)
        if cell.diversity_control not in supported:
            raise ValueError(
                f"diversity control {cell.diversity_control!r} is not supported by the {cell.family} family; "
                f"use one of {', '.join(supported)}"
            )


@dataclass
class Pool:
    items: Tensor  # [R, capacity, *item]; row i of run r is data only when i < counts[r]
    counts: Tensor  # [R] long


def pack(parts: list[Tensor]) -> Pool:
    """Per-run item tensors of different lengths -> one padded batch."""
    counts = torch.tensor([len(p) for p in parts], device=parts[0].device)
    items = parts[0].new_zeros((len(parts), int(counts.max()), *parts[0].shape[1:]))
    for r, p in enumerate(parts):
        items[r, : len(p)] = p
    return Pool(items, counts)


class RecursiveData:
    """The training set of each run, generation by generation, following its cell's DataPlan:
    new data = `synthetic` samples of the previous model + `fresh_real` real ones; the pool is the new
    data (or everything so far with keep_history); fixed_real adds the generation-1 real data back;
    `subsample` > 0 trains on that many draws (with replacement) from the pool."""

    def __init__(self, runs: list[Cell], first_real: Tensor, generator: torch.Generator):
        self.plans = [data_plan(c) for c in runs]
        self.generator = generator
        self.first_real = [first_real[r, : plan.first_real] for r, plan in enumerate(self.plans)]
        self.pool = list(self.first_real)

    def first(self) -> Pool:
        return pack(self.first_real)

    def next(self, draw_real: Callable[[int], Tensor], draw_synthetic: Callable[[int], Tensor]) -> Pool:
        """draw_*(n) -> [R, n, *item] samples for every run; each run takes the counts its plan names."""
        real = self._draw(draw_real, max(p.fresh_real for p in self.plans))
        synthetic = self._draw(draw_synthetic, max(p.synthetic for p in self.plans))
        parts = []
        for r, plan in enumerate(self.plans):
            new = torch.cat([synthetic[r, : plan.synthetic], real[r, : plan.fresh_real]])
            self.pool[r] = torch.cat([self.pool[r], new]) if plan.keep_history else new
            train = torch.cat([self.pool[r], self.first_real[r]]) if plan.reuse_real_pool else self.pool[r]
            if plan.subsample:
                train = train[torch.randint(len(train), (plan.subsample,), generator=self.generator, device=train.device)]
            parts.append(train)
        return pack(parts)

    def _draw(self, draw: Callable[[int], Tensor], n: int) -> Tensor:
        if n > 0:
            return draw(n)
        empty = self.first_real[0][:0]
        return empty.expand(len(self.plans), *empty.shape)


@contextmanager
def one_cpu_thread(device: torch.device) -> Iterator[None]:
    """Run torch on one intra-op thread while simulating on CPU. These ops are too small to gain from
    splitting, and on a shared machine every op of a 2-thread pool waits for a busy core: measured 6x
    slower on 2 shared cores. Runs are parallel through batching (and a process pool for sweeps)."""
    if torch.device(device).type != "cpu":
        yield
        return
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)

"""Vectorised sweep vs a straightforward per-run loop, same grid, one process (families a-d).

The loop is how public recursive-training scripts (e.g. Collapse-or-Thrive) are written: for each
cell, for each seed, for each generation, sample one run's data with torch, refit, and log the
metrics. Families a, c and d get such a plain reference loop that computes the same metrics with the
lab's own metric functions on one run at a time (regression logs its one metric); family b (Markov)
is looped by calling the lab's own code one run at a time. Each path is warmed up, then timed
`--repeats` times; the fastest time is reported. The last line measures how much batching alone can
gain on one elementwise op of the categorical family's shape, the bound that family runs into.

    python benchmarks/sim_speed.py [--seeds 64] [--generations 10] [--repeats 3]
"""

from __future__ import annotations

import argparse
import time

import torch

from simulations.cells import Cell
from simulations.families import categorical, gaussian, linear_regression, markov
from simulations.families.gaussian import _metrics as gaussian_metrics
from simulations.metrics import batch_diversity, discrete_metrics, tail_types
from simulations.regimes import data_plan

REGIMES = (("replace", 1.0), ("fresh", 0.5), ("fresh", 0.9), ("accumulate", 0.5), ("accumulate", 1.0))


def cells_for(family: str, real: int) -> list[Cell]:
    return [Cell(family, regime, ratio, "temperature", 1.0, real) for regime, ratio in REGIMES]


def _mix(plan, pool_prev, new, first):
    pool = pool_prev + new if plan.keep_history else new
    return pool + first if plan.reuse_real_pool else pool


def categorical_loop(cell: Cell, generations: int, gen: torch.Generator, vocab=1000, beta=1.1) -> list[dict]:
    truth = torch.arange(1, vocab + 1, dtype=torch.float64) ** -beta
    truth /= truth.sum()
    plan = data_plan(cell)

    def counts(p: torch.Tensor, n: int) -> torch.Tensor:
        if n == 0:
            return torch.zeros(vocab, dtype=torch.float64)
        return torch.bincount(torch.multinomial(p, n, replacement=True, generator=gen), minlength=vocab).double()

    tail = tail_types(truth, 0.2)
    first = counts(truth, plan.first_real)
    pool = train = first
    history = []
    for g in range(1, generations + 1):
        model = train / train.sum()
        metrics = discrete_metrics(model.unsqueeze(0), truth, tail)
        synthetic = counts(model, plan.synthetic)
        metrics.update(batch_diversity(synthetic.unsqueeze(0), truth, tail))
        history.append(metrics)
        if g < generations:
            pool = _mix(plan, pool, synthetic + counts(truth, plan.fresh_real), first)
            train = pool
    return history


def gaussian_loop(cell: Cell, generations: int, gen: torch.Generator) -> list[dict]:
    plan = data_plan(cell)
    data = torch.randn(plan.first_real, generator=gen, dtype=torch.float64)
    history = []
    for g in range(1, generations + 1):
        mu, var = data.mean(), data.var(unbiased=False)
        history.append(gaussian_metrics(mu.reshape(1, 1), var.reshape(1, 1, 1), 2.0))
        if g < generations:
            synthetic = mu + var.sqrt() * torch.randn(plan.synthetic, generator=gen, dtype=torch.float64)
            new = torch.cat([synthetic, torch.randn(plan.fresh_real, generator=gen, dtype=torch.float64)])
            data = torch.cat([data, new]) if plan.keep_history else new
    return history


def regression_loop(cell: Cell, generations: int, gen: torch.Generator, dim=10) -> list[float]:
    plan = data_plan(cell)
    w_true = torch.zeros(dim, dtype=torch.float64)
    w_true[0] = 1
    randn = lambda *shape: torch.randn(*shape, generator=gen, dtype=torch.float64)  # noqa: E731
    x = randn(plan.first_real, dim)
    y = x @ w_true + randn(plan.first_real)
    errors = []
    for g in range(1, generations + 1):
        w = torch.linalg.lstsq(x, y.unsqueeze(-1)).solution.squeeze(-1)
        errors.append(float(((w - w_true) ** 2).sum()))
        if g < generations:
            xs, xr = randn(plan.synthetic, dim), randn(plan.fresh_real, dim)
            nx = torch.cat([xs, xr])
            ny = torch.cat([xs @ w + randn(plan.synthetic), xr @ w_true + randn(plan.fresh_real)])
            x, y = (torch.cat([x, nx]), torch.cat([y, ny])) if plan.keep_history else (nx, ny)
    return errors


def markov_loop(cell: Cell, generations: int, seed: int) -> float:
    (run,) = markov.simulate([cell], generations, 1, torch.device("cpu"), seed)
    return float(run["tail_mass_ratio"][0, -1])


def best_time(fn, repeats: int) -> float:
    """Fastest of `repeats` timed calls (as timeit reports): the least disturbed by other load."""
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def batching_ceiling(op, runs: int, vocab: int, repeats: int) -> float:
    """What batching alone can gain on one elementwise op: `runs` calls on [vocab] vs one on [runs, vocab].

    A per-run call pays the dispatch overhead plus its own work; the batched call pays only the work,
    so when one run's work is already a 1000-wide tensor op the gain is bounded well below 20x.
    """
    one, many = torch.rand(vocab, dtype=torch.float64), torch.rand(runs, vocab, dtype=torch.float64)
    op(one), op(many)
    return best_time(lambda: [op(one) for _ in range(runs)], repeats) / best_time(lambda: op(many), repeats)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=64)
    parser.add_argument("--generations", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=3, help="time each path this many times, report the fastest")
    args = parser.parse_args()
    g, s, cpu = args.generations, args.seeds, torch.device("cpu")
    gen = torch.Generator().manual_seed(0)
    families = {
        "categorical": (cells_for("categorical", 500), lambda cells: categorical.simulate(cells, g, s, cpu, 0),
                        lambda c, i: categorical_loop(c, g, gen)),
        "markov": (cells_for("markov", 30), lambda cells: markov.simulate(cells, g, s, cpu, 0),
                   lambda c, i: markov_loop(c, g, i)),
        "gaussian": (cells_for("gaussian", 100), lambda cells: gaussian.simulate(cells, g, s, cpu, 0),
                     lambda c, i: gaussian_loop(c, g, gen)),
        "linear_regression": (cells_for("linear_regression", 50), lambda cells: linear_regression.simulate(cells, g, s, cpu, 0),
                              lambda c, i: regression_loop(c, g, gen)),
    }
    total_vec = total_loop = 0.0
    print(f"{'family':<18} {'runs':>5} {'vectorised s':>13} {'loop s':>9} {'speed-up':>9}")
    for name, (cells, vectorised, one_run) in families.items():
        vectorised(cells[:1]), one_run(cells[0], 0)  # untimed warm-up: first-call allocations and dispatch
        vec = best_time(lambda: vectorised(cells), args.repeats)
        loop = best_time(lambda: [one_run(c, i) for c in cells for i in range(s)], args.repeats)
        total_vec, total_loop = total_vec + vec, total_loop + loop
        print(f"{name:<18} {len(cells) * s:>5} {vec:>13.3f} {loop:>9.3f} {loop / vec:>8.1f}x")
    print(f"{'all (a-d)':<18} {'':>5} {total_vec:>13.3f} {total_loop:>9.3f} {total_loop / total_vec:>8.1f}x")
    runs = len(REGIMES) * s
    ceilings = {name: batching_ceiling(op, runs, 1000, args.repeats) for name, op in (("log", torch.log), ("multiply", lambda t: t * t))}
    print(f"batching ceiling, one elementwise op on {runs} x 1000 float64 (categorical's shape): "
          + ", ".join(f"{name} {x:.1f}x" for name, x in ceilings.items()))


if __name__ == "__main__":
    main()

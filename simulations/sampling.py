"""What every family shares: the truths, exact samplers, common random numbers, and run stacking.

Families import from here, never from each other.

- `zipf`: the Zipf law used as the discrete truth.
- `sample_counts` / `draw_indices`: exact multinomial counts and inverse-CDF index draws, batched.
- `resample_counts`: redraw a training set from a pool's empirical distribution.
- `RealStream`: real data as **common random numbers**. Run b of a batch (cell b // seeds, seed
  index b % seeds) that takes n real samples at generation g gets the first n samples of one stream
  per (seed index, generation). So the real-only counterfactual of a cell, at the same real count
  or at a larger total, sees exactly the cell's real data (plus more): differences between cells
  are paired, and what remains is the effect of the synthetic data.
- `stream_points` / `model_noise`: the same pairing for point data drawn in chunks and for a
  neural model's own randomness (initial weights, minibatches).
- `stack_runs`: per-generation metric dicts -> per cell, name -> [seeds, generations + 1].
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable

import torch

Draw = Callable[[torch.Tensor, torch.Generator], tuple[torch.Tensor, ...]]


def zipf(vocab: int, beta: float, device: torch.device) -> torch.Tensor:
    """p_i proportional to i^-beta, i = 1..vocab (float64)."""
    ranks = torch.arange(1, vocab + 1, dtype=torch.float64, device=device)
    weights = ranks**-beta
    return weights / weights.sum()


def sample_counts(probs: torch.Tensor, n: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """Exact multinomial counts [..., V] of n[...] draws from probs[...]: one batched program.

    Rows with large n split the count down a binary tree over the types (a Binomial per node,
    log2 V levels), costing O(V) whatever n is; rows with small n sample indices and histogram
    them, costing O(n). Both are exact.
    """
    shape, vocab = probs.shape[:-1], probs.shape[-1]
    probs, n = probs.reshape(-1, vocab), n.reshape(-1).to(probs.dtype)
    large = n > 2 * vocab
    small = ~large & (n > 0)
    # Most calls put every row on one path; masked copies are then skipped (they cost more than the draws).
    if bool(large.all()):
        return _binomial_tree(probs, n, gen).reshape(*shape, vocab)
    if bool(small.all()):
        return _histogram_draws(probs, n, gen).reshape(*shape, vocab)
    counts = torch.zeros_like(probs)
    if large.any():
        counts[large] = _binomial_tree(probs[large], n[large], gen)
    if small.any():
        counts[small] = _histogram_draws(probs[small], n[small], gen)
    return counts.reshape(*shape, vocab)


def _histogram_draws(probs: torch.Tensor, n: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    n_max = int(n.max())
    draws = draw_indices(probs, n_max, gen)
    used = torch.arange(n_max, device=probs.device) < n.unsqueeze(-1)
    return torch.zeros_like(probs).scatter_add_(1, draws, used.to(probs.dtype))


def draw_indices(probs: torch.Tensor, draws: int, gen: torch.Generator) -> torch.Tensor:
    """`draws` independent indices [rows, draws] from each row of probs [rows, V] (rows sum > 0).

    Inverse-CDF lookup of uniforms; on CPU it costs about half of torch.multinomial per draw.
    A zero-probability type owns an empty CDF interval, so it is never drawn.
    """
    cdf = probs.cumsum(-1)
    cdf = cdf / cdf[:, -1:]  # the last entry becomes exactly 1, so every uniform in [0, 1) lands
    u = torch.rand(probs.shape[0], draws, generator=gen, dtype=probs.dtype, device=probs.device)
    return torch.searchsorted(cdf, u, right=True).clamp_max(probs.shape[-1] - 1)


def _binomial_tree(probs: torch.Tensor, n: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    rows, vocab = probs.shape
    width = 1 << max(vocab - 1, 1).bit_length()
    leaves = torch.nn.functional.pad(probs, (0, width - vocab))
    levels = [leaves]
    while levels[-1].shape[-1] > 2:
        levels.append(levels[-1].view(rows, -1, 2).sum(-1))
    counts = n.unsqueeze(-1)
    for depth in reversed(range(len(levels))):
        pairs = levels[depth].view(rows, -1, 2)
        parent = levels[depth + 1] if depth + 1 < len(levels) else pairs.sum(-1)
        left_share = torch.where(parent > 0, pairs[..., 0] / parent.clamp_min(torch.finfo(parent.dtype).tiny), 0.0)
        left = torch.binomial(counts, left_share.clamp(0, 1), generator=gen)
        counts = torch.stack([left, counts - left], dim=-1).view(rows, -1)
    return counts[:, :vocab]


def resample_counts(pool: torch.Tensor, n: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """Rows with n > 0: n draws (with replacement) from the pool's empirical distribution."""
    if not bool((n > 0).any()):
        return pool  # only accumulate_subsample redraws; the other regimes train on the pool itself
    drawn = sample_counts(pool / pool.sum(-1, keepdim=True), n, gen)
    return torch.where((n > 0).unsqueeze(-1), drawn, pool)


class RealStream:
    """Real data as common random numbers across the cells of one batch (see the module docstring).

    Additive statistics (counts, sums, Gram matrices) are drawn once per seed index and distinct
    size, as increments between consecutive sizes, and summed: the statistics of the first n
    samples of the stream. Point data take a prefix of one draw per seed index.
    """

    def __init__(self, seeds: int, seed: int, device: torch.device):
        self.seeds, self.seed, self.device = seeds, seed, device

    def generator(self, generation: int) -> torch.Generator:
        """The stream's generator at one generation: the same whatever else the batch draws."""
        digest = hashlib.sha256(f"real-stream/{self.seed}/{generation}".encode()).digest()
        return torch.Generator(self.device).manual_seed(int.from_bytes(digest[:7], "little"))

    def additive(self, generation: int, n: torch.Tensor, draw: Draw) -> tuple[torch.Tensor, ...]:
        """Per run b: the statistics of the first n[b] samples of its seed's stream at `generation`.

        draw(counts [rows], generator) returns a tuple of additive statistics, each [rows, ...],
        for `counts[r]` fresh samples in row r; rows with a count of 0 must come back as zeros.
        """
        n = n.to(torch.long)
        sizes = torch.unique(n)  # sorted
        steps = torch.diff(sizes, prepend=sizes.new_zeros(1))
        counts = steps.repeat_interleave(self.seeds)  # row (k, s): the k-th increment for seed index s
        parts = draw(counts, self.generator(generation))
        rank = torch.searchsorted(sizes, n)
        seed_index = torch.arange(len(n), device=n.device) % self.seeds
        out = []
        for part in parts:
            cumulative = part.reshape(len(sizes), self.seeds, *part.shape[1:]).cumsum(0)
            out.append(cumulative[rank, seed_index])
        return tuple(out)

    def prefix(self, generation: int, n: torch.Tensor, draw: Callable[[int, torch.Generator], torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        """Per run b: the first n[b] points of its seed's stream, as (points [B, n_max, ...], used [B, n_max]).

        draw(n_max, generator) returns [seeds, n_max, ...] points.
        """
        n_max = max(int(n.max()), 1)
        points = draw(n_max, self.generator(generation))
        seed_index = torch.arange(len(n), device=n.device) % self.seeds
        used = torch.arange(n_max, device=n.device) < n.unsqueeze(-1)
        return points[seed_index], used


def stream_points(
    stream: RealStream, generation: int, runs: int, n: int, draw: Callable[[int, torch.Generator], torch.Tensor], chunk: int
) -> torch.Tensor:
    """[runs, n, *item]: the first n real points of each run's seed-index stream at `generation`
    (RealStream.prefix; run r has seed index r % seeds). draw(k, generator) returns [seeds, k, *item]
    i.i.d. points; it is called on fixed chunks of `chunk` points one after another, so the first n
    points of a stream are the same whatever n, and whatever other runs of the batch take."""

    def chunked(n_max: int, generator: torch.Generator) -> torch.Tensor:
        return torch.cat([draw(chunk, generator) for _ in range(-(-n_max // chunk))], dim=1)[:, :n_max]

    device = stream.device
    return stream.prefix(generation, torch.full((runs,), n, device=device), chunked)[0][:, :n]


def model_noise(family: str, seed: int, generation: int, device: torch.device) -> torch.Generator:
    """The generator of one generation's model randomness (initial weights, minibatch picks, ...),
    keyed by (family, seed, generation) only. Families draw it for `seeds` rows and give run r row
    r % seeds, so runs with the same seed index start from the same weights and see the same
    optimiser noise in every cell of a batch: with the real data (stream_points), a cell and its
    real-only counterfactual fit the same generation-1 model, and later differences come from the data."""
    digest = hashlib.sha256(f"{family}/model-noise/{seed}/{generation}".encode()).digest()
    return torch.Generator(device).manual_seed(int.from_bytes(digest[:7], "little"))


def stack_runs(per_generation: list[dict[str, torch.Tensor]], n_cells: int, seeds: int) -> list[dict[str, torch.Tensor]]:
    """[generations + 1] dicts of [cells * seeds] tensors -> per cell: name -> [seeds, generations + 1]."""
    names = per_generation[0].keys()
    stacked = {n: torch.stack([m[n] for m in per_generation], dim=-1).double().cpu() for n in names}
    return [{n: t[i * seeds : (i + 1) * seeds] for n, t in stacked.items()} for i in range(n_cells)]

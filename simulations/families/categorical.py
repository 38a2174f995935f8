"""Family (a): a categorical (unigram) model over V types with a Zipf truth, refit by MLE counts.

The training set of a run is a count vector, so every regime is exact arithmetic on counts:
sampling draws n indices from a distribution and histograms them; refitting divides by the total.
Zero-count types are absorbing under pure self-consumption (Wright-Fisher), which is how the tail
disappears (validation V5, V6, V7).
"""

from __future__ import annotations

import torch

from simulations.cells import Cell
from simulations.diversity import apply_control, dedup_counts
from simulations.metrics import categorical_metrics, entropy, plug_in_and_miller_madow, tail_types
from simulations.regimes import plan_tensors


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


def simulate(
    cells: list[Cell],
    generations: int,
    seeds: int,
    device: torch.device,
    seed: int,
    *,
    vocab: int = 1000,
    beta: float = 1.1,
    tail_mass: float = 0.2,
) -> list[dict[str, torch.Tensor]]:
    truth = zipf(vocab, beta, device)
    tail = tail_types(truth, tail_mass)
    plan = plan_tensors(cells, seeds, device)
    controls = [c.diversity_control for c in cells for _ in range(seeds)]
    values = torch.tensor([c.diversity for c in cells], dtype=torch.float64, device=device).repeat_interleave(seeds)
    batch = len(cells) * seeds
    gen = torch.Generator(device).manual_seed(seed)
    truth_rows = truth.expand(batch, vocab).contiguous()

    per_generation: list[dict[str, torch.Tensor]] = []
    truth_metrics = categorical_metrics(truth_rows, truth, tail)
    truth_metrics["synthetic_entropy"] = entropy(truth_rows)
    truth_metrics["vendi"] = truth_metrics["synthetic_entropy"].exp()
    per_generation.append(truth_metrics)

    real_pool = sample_counts(truth_rows, plan["first_real"], gen)
    pool = real_pool
    train = real_pool
    no_synthetic = plan["synthetic"] == 0
    for g in range(1, generations + 1):
        model = train / train.sum(-1, keepdim=True)
        metrics = categorical_metrics(model, truth, tail)
        # The synthetic batch model g hands to generation g + 1 (also drawn at the last generation,
        # so its diversity is reported for every fitted model).
        sampling = apply_control(model, controls, values)
        synthetic = dedup_counts(sample_counts(sampling, plan["synthetic"], gen), controls, values)
        plug_in, batch_entropy = plug_in_and_miller_madow(synthetic)
        metrics["synthetic_entropy"] = torch.where(no_synthetic, torch.nan, batch_entropy)
        # Vendi score with the exact-match kernel = exp(plug-in entropy) of the batch.
        metrics["vendi"] = torch.where(no_synthetic, torch.nan, plug_in.exp())
        per_generation.append(metrics)
        if g == generations:
            break
        new = synthetic + sample_counts(truth_rows, plan["fresh_real"], gen)
        keep = plan["keep_history"].unsqueeze(-1)
        reuse = plan["reuse_real_pool"].unsqueeze(-1)
        pool = torch.where(keep, pool + new, new) + torch.where(reuse, real_pool, torch.zeros_like(real_pool))
        train = resample_counts(pool, plan["subsample"], gen)

    return stack_runs(per_generation, len(cells), seeds)


def stack_runs(per_generation: list[dict[str, torch.Tensor]], n_cells: int, seeds: int) -> list[dict[str, torch.Tensor]]:
    """[generations + 1] dicts of [cells * seeds] tensors -> per cell: name -> [seeds, generations + 1]."""
    names = per_generation[0].keys()
    stacked = {n: torch.stack([m[n] for m in per_generation], dim=-1).double().cpu() for n in names}
    return [{n: t[i * seeds : (i + 1) * seeds] for n, t in stacked.items()} for i in range(n_cells)]

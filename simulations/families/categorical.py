"""Family (a): a categorical (unigram) model over V types with a Zipf truth, refit by MLE counts.

The training set of a run is a count vector, so every regime is exact arithmetic on counts:
sampling draws n indices from a distribution and histograms them; refitting divides by the total.
Zero-count types are absorbing under pure self-consumption (Wright-Fisher), which is how the tail
disappears (validation V5, V6, V7, V11, V12). Real data come from a `RealStream`, so every cell
of a batch with the same seed index sees the same real samples (paired counterfactuals).
"""

from __future__ import annotations

import torch

from simulations.cells import Cell
from simulations.diversity import apply_control, dedup_counts
from simulations.metrics import batch_diversity, discrete_metrics, entropy, tail_types
from simulations.regimes import plan_tensors
from simulations.sampling import (
    RealStream,
    resample_counts,
    sample_counts,
    stack_runs,
    zipf,
)


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
    real = RealStream(seeds, seed, device)

    def draw_real(generation: int, n: torch.Tensor) -> torch.Tensor:
        return real.additive(generation, n, lambda k, g: (sample_counts(truth.expand(len(k), vocab), k, g),))[0]

    nan = torch.full((batch,), torch.nan, dtype=torch.float64, device=device)
    truth_rows = truth.expand(batch, vocab)
    per_generation = [{**discrete_metrics(truth_rows, truth, tail), "sampler_entropy": entropy(truth_rows),
                       "batch_tail_coverage": nan, "batch_richness": nan, "batch_entropy": nan}]
    real_pool = draw_real(1, plan["first_real"])
    pool = train = real_pool
    no_synthetic = (plan["synthetic"] == 0).unsqueeze(-1)
    for g in range(1, generations + 1):
        model = train / train.sum(-1, keepdim=True)
        metrics = discrete_metrics(model, truth, tail)
        # The synthetic batch model g hands to generation g + 1 (also drawn at the last generation,
        # so the realised diversity of every model's output is reported).
        sampling = apply_control(model, controls, values)
        synthetic = dedup_counts(sample_counts(sampling, plan["synthetic"], gen), controls, values)
        metrics["sampler_entropy"] = torch.where(no_synthetic.squeeze(-1), torch.nan, entropy(sampling))
        metrics.update(batch_diversity(synthetic, truth, tail))
        per_generation.append(metrics)
        if g == generations:
            break
        new = synthetic + draw_real(g + 1, plan["fresh_real"])
        keep = plan["keep_history"].unsqueeze(-1)
        reuse = plan["reuse_real_pool"].unsqueeze(-1)
        pool = torch.where(keep, pool + new, new) + torch.where(reuse, real_pool, torch.zeros_like(real_pool))
        train = resample_counts(pool, plan["subsample"], gen)
    return stack_runs(per_generation, len(cells), seeds)

"""Metrics against a known truth, batched over runs (leading dimension B). Definitions follow
../shared/data/validation_targets.md:

- tail_mass_kept: true mass of the tail types the model still gives probability, over the true tail
  mass; the tail is the set of rarest types that together hold `tail_mass` of the truth.
- mass_kept / types_kept: true mass on, and size of, the model's support.
- entropy (nats), gini_simpson (1 - sum p^2), kl = KL(model || truth) (finite even after types
  vanish), tv = total variation, test_loss = cross-entropy of the truth under the model smoothed
  with `SMOOTHING` of uniform mass (a real-data test loss that stays finite).
- miller_madow: bias-corrected entropy of a sample from its counts.
- distinct_n: unique n-grams / total n-grams of equal-length token sequences.
- vendi: exp(entropy of the eigenvalues of K/n), K a similarity matrix with unit diagonal.
- precision / recall / coverage: k-NN manifold estimates in sample space.
"""

from __future__ import annotations

import torch

SMOOTHING = 1e-3


def xlogy(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return torch.where(x > 0, x * y.clamp_min(torch.finfo(y.dtype).tiny).log(), torch.zeros_like(x))


def entropy(p: torch.Tensor) -> torch.Tensor:
    return -xlogy(p, p).sum(-1)


def tail_types(truth: torch.Tensor, tail_mass: float) -> torch.Tensor:
    """Boolean mask over the last dim: the rarest types whose true mass adds up to `tail_mass`."""
    sorted_p, order = truth.sort(dim=-1)  # ascending: rarest first
    in_tail_sorted = sorted_p.cumsum(-1) <= tail_mass + 1e-12
    return torch.zeros_like(in_tail_sorted).scatter(-1, order, in_tail_sorted)


def categorical_metrics(model: torch.Tensor, truth: torch.Tensor, tail: torch.Tensor) -> dict[str, torch.Tensor]:
    """Metrics of model distributions [B, V] against the truth [V] (tail: mask from `tail_types`)."""
    support = model > 0
    truth_b = truth.expand_as(model)
    tail_total = (truth * tail).sum()
    model_log_model = model * torch.where(support, model, torch.ones_like(model)).log()  # one log, 0 log 0 = 0
    smoothed = (1 - SMOOTHING) * model + SMOOTHING / model.shape[-1]
    return {
        "tail_mass_kept": (truth_b * (support & tail)).sum(-1) / tail_total,
        "mass_kept": (truth_b * support).sum(-1),
        "types_kept": support.sum(-1).to(model.dtype),
        "entropy": -model_log_model.sum(-1),
        "gini_simpson": 1 - (model**2).sum(-1),
        "kl": model_log_model.sum(-1) - model @ truth.log(),
        "tv": 0.5 * (model - truth_b).abs().sum(-1),
        "test_loss": -(smoothed.log() @ truth),
    }


def plug_in_and_miller_madow(counts: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Entropy estimates (nats) from counts [B, V]: plug-in, and plug-in + (observed types - 1) / (2 n)."""
    n = counts.sum(-1).clamp_min(1)
    plug_in = entropy(counts / n.unsqueeze(-1))
    observed = (counts > 0).sum(-1).to(counts.dtype)
    return plug_in, plug_in + (observed - 1) / (2 * n)


def miller_madow(counts: torch.Tensor) -> torch.Tensor:
    return plug_in_and_miller_madow(counts)[1]


def distinct_n(tokens: torch.Tensor, n: int, vocab: int) -> torch.Tensor:
    """Unique n-grams / total n-grams per row of tokens [B, S, L] (n-grams within each sequence)."""
    ids = torch.zeros_like(tokens[..., n - 1 :])
    for offset in range(n):
        ids = ids * vocab + tokens[..., offset : tokens.shape[-1] - n + 1 + offset]
    flat = ids.reshape(ids.shape[0], -1).sort(dim=-1).values
    unique = 1 + (flat[:, 1:] != flat[:, :-1]).sum(-1)
    return unique.to(torch.float64) / flat.shape[-1]


def vendi(similarity: torch.Tensor) -> torch.Tensor:
    """Vendi score of similarity matrices [B, n, n] with unit diagonal."""
    n = similarity.shape[-1]
    eig = torch.linalg.eigvalsh(similarity / n).clamp_min(0)
    return entropy(eig).exp()


def knn_precision_recall_coverage(
    real: torch.Tensor, fake: torch.Tensor, k: int = 5
) -> dict[str, torch.Tensor]:
    """k-NN precision, recall (Kynkäänniemi et al.) and coverage (Naeem et al.) for [B, n, d] samples."""
    d_rr = torch.cdist(real, real)
    d_ff = torch.cdist(fake, fake)
    d_rf = torch.cdist(real, fake)
    r_real = d_rr.kthvalue(k + 1, dim=-1).values  # +1: the point itself is its own nearest neighbour
    r_fake = d_ff.kthvalue(k + 1, dim=-1).values
    precision = (d_rf <= r_real.unsqueeze(-1)).any(-2).to(real.dtype).mean(-1)
    recall = (d_rf <= r_fake.unsqueeze(-2)).any(-1).to(real.dtype).mean(-1)
    coverage = (d_rf.min(-1).values <= r_real).to(real.dtype).mean(-1)
    return {"precision": precision, "recall": recall, "coverage": coverage}

"""Metrics against a known truth, batched over runs (leading dimension B). One meaning per name in
every family; each is computed at every generation (entry 0: the truth itself).

The tail is fixed by the truth, never by a model: the rarest types (per state, for conditional
models) that together hold `tail_mass` of the true probability, or, for densities, a named region
of low true density (families say which). p is the truth, q the model.

Collapse metrics (the same names in every family that has them):

- tail_mass_ratio: q(tail) / p(tail). 1 = the tail keeps its true weight; below 1 the model
  under-weights it (collapse), above 1 over-weights it. Two-sided, so also reported as
- tail_mass_abs_log_ratio: |log tail_mass_ratio| (q(tail) floored at 1e-12).
- tail_coverage: share of the true tail's mass on types / points where q >= COVERAGE_RATE * p,
  in [0, 1]: catches types that vanished and types kept at a tenth of their true rate or less.
- tail_types_lost: number of tail types (state-weighted for conditional models) with q = 0
  (discrete families only).
- forward_kl: KL(p || q), the direction that punishes a model for missing what the truth holds.
  Discrete models are first mixed with SMOOTHING of uniform mass (an add-epsilon estimate), so a
  lost type costs log(V / SMOOTHING) rather than infinity.
- tail_forward_kl: the same restricted to the tail and normalised by its mass:
  E_{x ~ p | tail}[log p(x) / q(x)], the extra log-loss on true tail samples.
- reverse_kl: KL(q || p), mode-seeking: it rewards a model that collapsed onto the head, so it is
  never used as a collapse measure; kept only under this name.
- unseen_mass: true mass of the types the model gives no probability (V7's test error E(T)).
- types_kept (size of the model's support), gini_simpson (1 - sum q^2), entropy (nats, of the model), tv (total variation), test_loss (cross-entropy of the truth under
  the smoothed model = H(p) + forward_kl for discrete families; held-out real negative
  log-likelihood for densities).

Diversity of each synthetic batch (realised, not requested), per generation:

- batch_tail_coverage: share of the true tail's mass on types present in the batch.
- batch_richness: number of distinct types in the batch (Hill number of order 0).
- batch_entropy: Miller-Madow entropy of the batch (nats).

Other sample-based measures: distinct_n, vendi, k-NN precision / recall / coverage.
"""

from __future__ import annotations

import torch

SMOOTHING = 1e-3
COVERAGE_RATE = 0.1  # a tail type counts as covered while the model gives it >= this share of its true rate
LOG_FLOOR = 1e-12

COLLAPSE_METRICS = ("tail_mass_ratio", "tail_mass_abs_log_ratio", "tail_coverage", "tail_types_lost",
                    "forward_kl", "tail_forward_kl")
BATCH_METRICS = ("batch_tail_coverage", "batch_richness", "batch_entropy")


def xlogy(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return torch.where(x > 0, x * y.clamp_min(torch.finfo(y.dtype).tiny).log(), torch.zeros_like(x))


def entropy(p: torch.Tensor) -> torch.Tensor:
    return -xlogy(p, p).sum(-1)


def tail_types(truth: torch.Tensor, tail_mass: float) -> torch.Tensor:
    """Boolean mask over the last dim: the rarest types whose true mass adds up to `tail_mass`."""
    sorted_p, order = truth.sort(dim=-1)  # ascending: rarest first
    in_tail_sorted = sorted_p.cumsum(-1) <= tail_mass + 1e-12
    return torch.zeros_like(in_tail_sorted).scatter(-1, order, in_tail_sorted)


def _ratio_metrics(model_tail: torch.Tensor, true_tail: torch.Tensor) -> dict[str, torch.Tensor]:
    ratio = model_tail / true_tail
    return {"tail_mass_ratio": ratio, "tail_mass_abs_log_ratio": ratio.clamp_min(LOG_FLOOR).log().abs()}


def discrete_metrics(
    model: torch.Tensor, truth: torch.Tensor, tail: torch.Tensor, state_weights: torch.Tensor | None = None
) -> dict[str, torch.Tensor]:
    """Model distributions [B, S, V] (or [B, V]) against the truth [S, V] (or [V]).

    Conditional models (Markov chains, language models) have S states (contexts), each with its own
    next-type distribution; every sum over states is weighted by the truth's state distribution
    `state_weights` [S] (weight 1 for one state). Sums against fixed truth vectors are einsums
    (one pass over the model per quantity): this runs on every run of every generation.
    """
    if truth.dim() == 1:  # one state: [B, V] against [V]
        model, truth, tail = model.unsqueeze(1), truth.unsqueeze(0), tail.unsqueeze(0)
    w = torch.ones(truth.shape[0], dtype=truth.dtype, device=truth.device) if state_weights is None else state_weights
    against = lambda x, v: torch.einsum("bsv,sv->b", x, v * w.unsqueeze(-1))  # noqa: E731  sum_s w_s sum_v x v
    tail_p = truth * tail
    true_tail = (tail_p.sum(-1) * w).sum()
    log_p = truth.clamp_min(torch.finfo(truth.dtype).tiny).log()
    p_log_p = xlogy(truth, truth)
    log_smoothed = ((1 - SMOOTHING) * model + SMOOTHING / model.shape[-1]).log()
    q_log_q = model * model.clamp_min(torch.finfo(model.dtype).tiny).log()  # 0 log 0 = 0
    cross = against(log_smoothed, truth)  # sum p log q~
    present = (model > 0).to(model.dtype)
    return {
        **_ratio_metrics(against(model, tail.to(model.dtype)), true_tail),
        "tail_coverage": against((model >= COVERAGE_RATE * truth).to(model.dtype), tail_p) / true_tail,
        "tail_types_lost": against(1 - present, tail.to(model.dtype)),
        "forward_kl": (p_log_p.sum(-1) * w).sum() - cross,
        "tail_forward_kl": ((p_log_p * tail).sum(-1) * w).sum() / true_tail - against(log_smoothed, tail_p) / true_tail,
        "reverse_kl": torch.einsum("bsv,s->b", q_log_q, w) - against(model, log_p),
        "unseen_mass": against(1 - present, truth),
        "types_kept": torch.einsum("bsv,s->b", present, w),
        "gini_simpson": 1 - torch.einsum("bsv,s->b", model**2, w),
        "entropy": -torch.einsum("bsv,s->b", q_log_q, w),
        "tv": 0.5 * torch.einsum("bsv,s->b", (model - truth).abs(), w),
        "test_loss": -cross,
    }


def density_metrics(log_q: torch.Tensor, log_p: torch.Tensor, tail: torch.Tensor, dx: float) -> dict[str, torch.Tensor]:
    """Model log-densities log_q [B, G] against the truth's log_p [G] on an even 1-D grid of step dx.

    `tail` [G] marks the grid points in the true tail region. Integrals are midpoint sums: put the
    points at cell midpoints with the tail's boundary on a cell edge (error O(dx^2)), and choose the
    range so both densities are negligible beyond it.
    """
    p, q = log_p.exp(), log_q.exp()
    true_tail = (p * tail).sum() * dx
    log_ratio = p * (log_p - log_q)
    return {
        **_ratio_metrics((q * tail).sum(-1) * dx, true_tail),
        "tail_coverage": (p * tail * (log_q >= log_p + torch.log(torch.tensor(COVERAGE_RATE)))).sum(-1) * dx / true_tail,
        "forward_kl": log_ratio.sum(-1) * dx,
        "tail_forward_kl": (log_ratio * tail).sum(-1) * dx / true_tail,
        "reverse_kl": (q * (log_q - log_p)).sum(-1) * dx,
        "tv": 0.5 * (q - p).abs().sum(-1) * dx,
    }


def batch_diversity(counts: torch.Tensor, truth: torch.Tensor, tail: torch.Tensor, state_weights: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
    """Realised diversity of synthetic batches given as counts [B, S, V] (or [B, V]); rows with no draws give NaN."""
    if truth.dim() == 1:
        counts, truth, tail = counts.unsqueeze(1), truth.unsqueeze(0), tail.unsqueeze(0)
    w = torch.ones(truth.shape[0], dtype=truth.dtype, device=truth.device) if state_weights is None else state_weights
    present = counts > 0
    empty = counts.sum((-1, -2)) == 0
    flat = counts.reshape(counts.shape[0], -1)
    coverage = ((truth * tail * present).sum(-1) * w).sum(-1) / ((truth * tail).sum(-1) * w).sum(-1)
    nan = torch.full_like(coverage, torch.nan)
    return {
        "batch_tail_coverage": torch.where(empty, nan, coverage),
        "batch_richness": torch.where(empty, nan, present.reshape(counts.shape[0], -1).sum(-1).to(counts.dtype)),
        "batch_entropy": torch.where(empty, nan, miller_madow(flat)),
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

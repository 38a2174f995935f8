"""Family (c'): an imbalanced 1-D Gaussian mixture refit by EM from the data; its rare component is the tail.

Truth: K components with `weights`, `means` and a common `sd`. Each generation fits a K-component
mixture to every run's training points from scratch, as a practitioner would (Shumailov et al.,
arXiv 2305.17493): `restarts` k-means++ seedings, each refined by `lloyd_steps` k-means and
`select_steps` EM iterations; the restart with the highest likelihood on its training data runs on
to `em_steps` EM iterations in all (`fit_mixture`). Neither the truth nor the previous generation's
fit is used, so optimisation error (a rare cluster merged into a neighbour, a component split in
two) is part of what the recursion propagates. The seedings' random numbers are drawn per seed
index and generation, so runs that train on the same points get the same fit.

A run keeps its data as blocks of points tagged by generation, so every regime is a mask over the
blocks: replace/fresh use the newest block, accumulate all of them, fixed_real the generation-1
real block plus the newest synthetic one, accumulate_subsample `subsample` points drawn without
replacement from all of them. Real points come from a `RealStream` (common random numbers: every
cell with the same seed index sees the same real points; the stream's generation 0 holds the
held-out test sample). The temperature control scales the component standard deviations of the
synthetic draws.

Metrics (p the true mixture, q the fitted one), by quadrature (`metrics.density_metrics`) over bins
of width `bin_width` covering every true component +- 8 sd; the two end bins extend to -+infinity
and every bin holds its exact mass (normal CDF differences), so no mass is lost or misplaced
whatever spread the model has drifted to:

- the tail is the region within 2 sd of the rare component's mean: tail_mass_ratio = q(tail) /
  p(tail) and its |log|, tail_coverage = p(tail and q >= COVERAGE_RATE p) / p(tail), tail_forward_kl
  = E_{x ~ p | tail}[log p(x) / q(x)];
- forward_kl = KL(p || q), reverse_kl = KL(q || p), tv (total variation), all of the binned densities;
- test_loss: mean negative log-likelihood (nats) of the held-out real test sample under q;
- mean and variance of q; rare_weight: the weight of q's component nearest the rare mean.
"""

from __future__ import annotations

import hashlib
import math

import torch

from simulations.cells import Cell
from simulations.metrics import density_metrics
from simulations.regimes import plan_tensors
from simulations.sampling import RealStream, draw_indices, stack_runs

SD_FLOOR = 0.01  # a component's sd stays >= this share of its training data's sd (see `_em`)


def _fit_generator(seed: int, generation: int, device: torch.device) -> torch.Generator:
    """The generator of one generation's k-means++ seedings, apart from the real-data stream's."""
    digest = hashlib.sha256(f"gaussian-mixture-fit/{seed}/{generation}".encode()).digest()
    return torch.Generator(device).manual_seed(int.from_bytes(digest[:7], "little"))


def _log_components(x: torch.Tensor, w: torch.Tensor, m: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
    """log(w_k N(x | m_k, s_k)) for x [B, N] and parameters [B, K] -> [B, K, N].

    Components lead the points so reductions over the K components run over contiguous rows
    (several times faster on CPU than over a last dimension of size K).
    """
    z = (x.unsqueeze(1) - m.unsqueeze(-1)) / s.unsqueeze(-1)
    return (w.clamp_min(1e-300).log() - s.log()).unsqueeze(-1) - 0.5 * z**2 - 0.5 * math.log(2 * math.pi)


def _log_likelihood(x: torch.Tensor, used: torch.Tensor, w: torch.Tensor, m: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
    """Sum over the used points of each row of log q(x) -> [B]."""
    return (torch.logsumexp(_log_components(x, w, m, s), dim=1) * used).sum(-1)


def _masked_sd(x: torch.Tensor, used: torch.Tensor) -> torch.Tensor:
    weight = used.to(x.dtype)
    count = weight.sum(-1).clamp_min(1)
    mean = (x * weight).sum(-1) / count
    return ((((x - mean.unsqueeze(-1)) ** 2) * weight).sum(-1) / count).sqrt()


def _kmeans_pp(x: torch.Tensor, used: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
    """k-means++ seeding from uniforms u [B, k]: the first centre uniform over the used points, each
    next one drawn with probability proportional to the squared distance to the nearest centre so
    far (inverse-CDF lookups of u) -> [B, k]."""
    weight = used.to(x.dtype)

    def pick(probs: torch.Tensor, u_col: torch.Tensor) -> torch.Tensor:
        cdf = probs.cumsum(-1)
        index = torch.searchsorted(cdf, (u_col * cdf[:, -1]).unsqueeze(-1), right=True).clamp_max(x.shape[1] - 1)
        return x.gather(1, index)

    centres = pick(weight, u[:, 0])
    for j in range(1, u.shape[1]):
        d2 = ((x.unsqueeze(1) - centres.unsqueeze(-1)) ** 2).amin(1) * weight
        # Rows whose points all sit on the centres (fewer distinct values than k) fall back to uniform.
        centres = torch.cat([centres, pick(d2 + 1e-300 * weight, u[:, j])], dim=1)
    return centres


def _nearest(x: torch.Tensor, centres: torch.Tensor) -> torch.Tensor:
    """Index [B, N] of each point's nearest centre: in 1-D, a search among the sorted centres' midpoints."""
    ordered, order = centres.sort(-1)
    rank = torch.searchsorted((ordered[:, 1:] + ordered[:, :-1]) / 2, x)
    return order.gather(1, rank)


def _cluster_sums(values: torch.Tensor, index: torch.Tensor, k: int) -> torch.Tensor:
    return torch.zeros(values.shape[0], k, dtype=values.dtype, device=values.device).scatter_add_(1, index, values)


def _lloyd(x: torch.Tensor, weight: torch.Tensor, centres: torch.Tensor, steps: int) -> torch.Tensor:
    """k-means iterations from `centres` over the points of weight 1; an empty cluster keeps its centre."""
    k = centres.shape[-1]
    for _ in range(steps):
        nearest = _nearest(x, centres)
        count = _cluster_sums(weight, nearest, k)
        centres = torch.where(count > 0, _cluster_sums(x * weight, nearest, k) / count.clamp_min(1), centres)
    return centres


def _em(x: torch.Tensor, used: torch.Tensor, w: torch.Tensor, m: torch.Tensor, s: torch.Tensor, steps: int, floor: torch.Tensor):
    """EM for a K-component 1-D mixture on the used points of each row, from (w, m, s).

    The likelihood is unbounded (a component shrinking onto one point), so each sd is kept above
    `floor` [B]. A component that loses all its responsibility keeps its mean and sd (a 1e-9
    pseudo-count of its previous values) instead of dividing by zero.
    """
    weight = used.to(x.dtype).unsqueeze(1)
    for _ in range(steps):
        resp = torch.softmax(_log_components(x, w, m, s), dim=1) * weight  # [B, K, N]
        mass = resp.sum(-1)
        w = mass / mass.sum(-1, keepdim=True)
        m = ((resp * x.unsqueeze(1)).sum(-1) + 1e-9 * m) / (mass + 1e-9)
        var = ((resp * (x.unsqueeze(1) - m.unsqueeze(-1)) ** 2).sum(-1) + 1e-9 * s**2) / (mass + 1e-9)
        s = torch.maximum(var.sqrt(), floor.unsqueeze(-1))
    return w, m, s


def fit_mixture(
    x: torch.Tensor, used: torch.Tensor, u: torch.Tensor, *, lloyd_steps: int = 5, select_steps: int = 5, em_steps: int = 30
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """A K-component mixture fit to the used points of each row of x [B, N] from the data alone.

    u [B, restarts, K] are the uniforms of `restarts` k-means++ seedings. Each seeding is refined by
    `lloyd_steps` k-means and `select_steps` EM iterations; the one with the highest training
    likelihood then runs the remaining em_steps - select_steps EM iterations (short-EM selection,
    which costs a fraction of iterating every restart to the end). The fit is a deterministic
    function of (x, used, u). Returns weights, means, sds [B, K].
    """
    batch, restarts, k = u.shape
    floor = SD_FLOOR * _masked_sd(x, used).clamp_min(1e-12)
    xr, usedr, floorr = (t.repeat_interleave(restarts, 0) for t in (x, used, floor))
    weight = usedr.to(x.dtype)
    centres = _lloyd(xr, weight, _kmeans_pp(xr, usedr, u.reshape(batch * restarts, k)), lloyd_steps)
    # EM starts from the clusters: their shares, centres and spreads.
    nearest = _nearest(xr, centres)
    count = _cluster_sums(weight, nearest, k)
    spread = (_cluster_sums((xr - centres.gather(1, nearest)) ** 2 * weight, nearest, k) / count.clamp_min(1)).sqrt()
    start = (count / count.sum(-1, keepdim=True), centres, torch.maximum(spread, floorr.unsqueeze(-1)))
    w, m, s = _em(xr, usedr, *start, select_steps, floorr)
    best = _log_likelihood(xr, usedr, w, m, s).view(batch, restarts).argmax(-1)
    rows = torch.arange(batch, device=x.device) * restarts + best
    return _em(x, used, w[rows], m[rows], s[rows], em_steps - select_steps, floor)


def _draw(w: torch.Tensor, m: torch.Tensor, s: torch.Tensor, n_max: int, gen: torch.Generator) -> torch.Tensor:
    """n_max points per row from the mixture (w, m, s) [rows, K] -> [rows, n_max]."""
    component = draw_indices(w, n_max, gen)
    z = torch.randn(w.shape[0], n_max, generator=gen, device=w.device, dtype=w.dtype)
    return m.gather(1, component) + s.gather(1, component) * z


def _log_bin_mass(edges: torch.Tensor, m: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
    """log N(m_k, s_k) mass of each bin [edges_i, edges_i+1] -> [B, K, bins], accurate far out in
    the tails: bins above the mean use the mirrored CDF, and the difference is taken in log space."""
    z = (edges - m.unsqueeze(-1)) / s.unsqueeze(-1)
    lo, hi = z[..., :-1], z[..., 1:]
    upper = lo > 0
    lo, hi = torch.where(upper, -hi, lo), torch.where(upper, -lo, hi)
    log_hi, log_lo = torch.special.log_ndtr(hi), torch.special.log_ndtr(lo)
    return log_hi + torch.log(-torch.expm1(log_lo - log_hi))


def simulate(
    cells: list[Cell],
    generations: int,
    seeds: int,
    device: torch.device,
    seed: int,
    *,
    weights: tuple[float, ...] = (0.6, 0.35, 0.05),
    means: tuple[float, ...] = (-2.0, 2.0, 7.0),
    sd: float = 1.0,
    restarts: int = 4,
    lloyd_steps: int = 5,
    select_steps: int = 5,
    em_steps: int = 30,
    test_samples: int = 2000,
    bin_width: float = 0.02,
) -> list[dict[str, torch.Tensor]]:
    for cell in cells:
        if cell.diversity_control != "temperature":
            raise ValueError("the gaussian_mixture family supports only the temperature control")
    plan = plan_tensors(cells, seeds, device)
    tau = torch.tensor([c.diversity for c in cells], dtype=torch.float64, device=device).repeat_interleave(seeds)
    batch, k = len(cells) * seeds, len(weights)
    gen = torch.Generator(device).manual_seed(seed)
    real = RealStream(seeds, seed, device)
    seed_index = torch.arange(batch, device=device) % seeds
    as_rows = lambda v, rows: torch.tensor(v, dtype=torch.float64, device=device).expand(rows, k).contiguous()
    w_true, m_true, s_true = as_rows(weights, batch), as_rows(means, batch), as_rows([sd] * k, batch)

    def draw_real(generation: int, n: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return real.prefix(generation, n, lambda n_max, g: _draw(as_rows(weights, seeds), as_rows(means, seeds), as_rows([sd] * k, seeds), n_max, g))

    # Bins: edges on a lattice through the tail region's ends (rare mean -+ 2 sd), so the tail is a
    # whole number of bins, spanning every true component +- 8 sd; the end bins are open.
    rare = int(torch.tensor(weights).argmin())
    tail_lo, tail_hi = means[rare] - 2 * sd, means[rare] + 2 * sd
    step = 4 * sd / round(4 * sd / bin_width)
    first, last = math.floor((min(means) - 8 * sd - tail_lo) / step), math.ceil((max(means) + 8 * sd - tail_lo) / step)
    edges = tail_lo + step * torch.arange(first, last + 1, dtype=torch.float64, device=device)
    edges[0], edges[-1] = -torch.inf, torch.inf
    centres = tail_lo + step * (torch.arange(first, last, dtype=torch.float64, device=device) + 0.5)
    in_tail = (centres > tail_lo) & (centres < tail_hi)

    def log_binned_density(w: torch.Tensor, m: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
        return torch.logsumexp(w.clamp_min(1e-300).log().unsqueeze(-1) + _log_bin_mass(edges, m, s), dim=1) - math.log(step)

    log_p = log_binned_density(w_true[:1], m_true[:1], s_true[:1])[0]
    test_x, _ = draw_real(0, torch.full((batch,), test_samples, device=device))
    test_used = torch.ones_like(test_x, dtype=torch.bool)

    def metrics(w: torch.Tensor, m: torch.Tensor, s: torch.Tensor) -> dict[str, torch.Tensor]:
        mean = (w * m).sum(-1)
        return {
            **density_metrics(log_binned_density(w, m, s), log_p, in_tail, step),
            "test_loss": -_log_likelihood(test_x, test_used, w, m, s) / test_samples,
            "mean": mean,
            "variance": (w * (s**2 + m**2)).sum(-1) - mean**2,
            "rare_weight": w.gather(1, (m - means[rare]).abs().argmin(-1, keepdim=True)).squeeze(-1),
        }

    per_generation = [metrics(w_true, m_true, s_true)]
    blocks = [(*draw_real(1, plan["first_real"]), 0, True)]  # (x, used, generation, real)
    for g in range(1, generations + 1):
        x = torch.cat([b[0] for b in blocks], dim=1)
        include = []
        for _, used, born, is_real in blocks:
            keep = plan["keep_history"] | torch.full_like(plan["keep_history"], born == g - 1)
            keep = keep | (plan["reuse_real_pool"] & torch.full_like(keep, is_real and born == 0))
            include.append(used & keep.unsqueeze(-1))
        mask = torch.cat(include, dim=1)
        subsample = plan["subsample"] > 0
        if g > 1 and subsample.any():
            keys = torch.rand(mask.shape, generator=gen, device=device, dtype=torch.float64)
            rank = torch.where(mask, keys, torch.full_like(keys, 2.0)).argsort(-1).argsort(-1)
            mask = torch.where(subsample.unsqueeze(-1), mask & (rank < plan["subsample"].unsqueeze(-1)), mask)
        # Pack each run's training points to the front: EM's cost follows the largest training set,
        # not every point a run has kept.
        order = (~mask).to(torch.uint8).argsort(dim=-1, stable=True)[:, : max(int(mask.sum(-1).max()), 1)]
        x, mask = x.gather(1, order), mask.gather(1, order)
        # The seedings are common random numbers too (one draw per seed index and generation), so
        # runs that train on the same points (generation 1 of every cell of a seed) get the same fit.
        u = torch.rand(seeds, restarts, k, generator=_fit_generator(seed, g, device), dtype=torch.float64, device=device)
        w, m, s = fit_mixture(x, mask, u[seed_index], lloyd_steps=lloyd_steps, select_steps=select_steps, em_steps=em_steps)
        per_generation.append(metrics(w, m, s))
        if g == generations:
            break
        # Old blocks stay only while some run still trains on them.
        history, pool = bool(plan["keep_history"].any()), bool(plan["reuse_real_pool"].any())
        blocks = [b for b in blocks if history or (pool and b[3] and b[2] == 0)]
        synthetic = _draw(w, m, s * tau.unsqueeze(-1), max(int(plan["synthetic"].max()), 1), gen)
        blocks.append((synthetic, torch.arange(synthetic.shape[1], device=device) < plan["synthetic"].unsqueeze(-1), g, False))
        blocks.append((*draw_real(g + 1, plan["fresh_real"]), g, True))
    return stack_runs(per_generation, len(cells), seeds)
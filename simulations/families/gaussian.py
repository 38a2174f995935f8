"""Family (c): a d-dimensional Gaussian with truth N(0, I), refit each generation by MLE or the
unbiased covariance estimator (validation V1-V3, V8, V10).

A run's training set is kept as sufficient statistics (count, sum, sum of outer products), which
are additive, so accumulate and fixed-pool regimes are exact; plain Gaussian draws are generated
directly as statistics (see `_block`). Real data come from a `RealStream` (common random numbers:
every cell with the same seed index sees the same real samples) as additive statistics, or, when
the batch holds an accumulate_subsample cell (which needs points to redraw from), as points for
every run so the pairing holds across the whole batch. accumulate_subsample keeps the points and
draws its fixed-size training set from them with replacement.

Diversity controls act on the standardised synthetic draws z of x = mu + Sigma^(1/2) z: temperature
scales z, top_p truncates each coordinate to its central mass p, tail_resample redraws a share
lambda of the samples from beyond |z| > tail_z, matched solves the temperature whose differential
entropy equals the target. top_k and dedup have no meaning for a continuous density and are refused.

Metrics (p = N(0, I) the truth, q = N(mu, Sigma) the model), all in closed form:

- forward_kl = KL(p || q), reverse_kl = KL(q || p), both of the full d-dimensional Gaussians.
- test_loss = E_{x ~ p}[-log q(x)] = H(p) + forward_kl: the expected held-out real NLL (nats).
- The tail is the region |x_0| > tail_z of coordinate 0, and the tail metrics compare the model's
  marginal N(mu_0, Sigma_00) with the truth's N(0, 1): tail_mass_ratio = q(tail) / p(tail) and its
  |log|; tail_coverage = p(tail and q >= COVERAGE_RATE p) / p(tail); tail_forward_kl =
  E_{x ~ p | tail}[log p(x) / q(x)]; tv = total variation between the two marginals (the whole
  model's when d = 1). These are the integrals `metrics.density_metrics` approximates on a grid
  (tests check that they agree); the closed forms need no grid, stay exact for a collapsed or
  exploded variance, and cost O(1) per run instead of O(grid).
- variance (trace(Sigma) / d), mean (mu_0), w2 (squared 2-Wasserstein distance to the truth),
  entropy (differential, nats); with knn_samples > 0 also k-NN precision / recall / coverage and
  the Vendi score of model samples.
"""

from __future__ import annotations

import math

import torch

from simulations.cells import Cell
from simulations.metrics import (
    COVERAGE_RATE,
    LOG_FLOOR,
    knn_precision_recall_coverage,
    vendi,
)
from simulations.regimes import plan_tensors
from simulations.sampling import RealStream, stack_runs

SUPPORTED_CONTROLS = ("temperature", "top_p", "tail_resample", "matched")
POINTWISE_CONTROLS = ("top_p", "tail_resample")
ESTIMATORS = ("mle", "unbiased")
VARIANCE_FLOOR = 1e-30  # the smallest variance the metrics read (see `_metrics`)


def _std_normal_cdf(z: torch.Tensor | float) -> torch.Tensor:
    z = torch.as_tensor(z, dtype=torch.float64)
    return 0.5 * torch.erfc(-z / math.sqrt(2))


def _std_normal_icdf(u: torch.Tensor) -> torch.Tensor:
    return math.sqrt(2) * torch.erfinv(2 * u - 1)


class _Stats:
    """Sufficient statistics of a masked batch of points x [B, n, d]."""

    def __init__(self, count: torch.Tensor, total: torch.Tensor, outer: torch.Tensor):
        self.count, self.total, self.outer = count, total, outer

    @classmethod
    def of(cls, x: torch.Tensor, used: torch.Tensor) -> _Stats:
        xm = x * used.unsqueeze(-1)
        return cls(used.sum(-1).to(x.dtype), xm.sum(1), xm.transpose(1, 2) @ xm)

    def __add__(self, other: _Stats) -> _Stats:
        return _Stats(self.count + other.count, self.total + other.total, self.outer + other.outer)

    def where(self, rows: torch.Tensor, other: _Stats) -> _Stats:
        pick = lambda a, b: torch.where(rows.reshape(rows.shape + (1,) * (a.dim() - 1)), a, b)
        return _Stats(pick(self.count, other.count), pick(self.total, other.total), pick(self.outer, other.outer))

    def fit(self, estimator: str) -> tuple[torch.Tensor, torch.Tensor]:
        n = self.count.clamp_min(2)
        mu = self.total / n.unsqueeze(-1)
        scatter = self.outer - n[:, None, None] * mu.unsqueeze(-1) * mu.unsqueeze(-2)
        denominator = n if estimator == "mle" else n - 1
        return mu, scatter / denominator[:, None, None]


def _sqrtm(cov: torch.Tensor) -> torch.Tensor:
    eigval, eigvec = torch.linalg.eigh(cov)
    return eigvec @ torch.diag_embed(eigval.clamp_min(0).sqrt()) @ eigvec.transpose(-1, -2)


def _draw(
    mu: torch.Tensor,
    root: torch.Tensor,
    n: torch.Tensor,
    controls: list[str],
    values: torch.Tensor,
    tail_z: float,
    gen: torch.Generator,
) -> tuple[torch.Tensor, torch.Tensor]:
    """n[b] points per row from N(mu, root root^T) under each row's control; returns (x, used)."""
    batch, dim = mu.shape
    n_max = max(int(n.max()), 1)
    u = torch.rand(batch, n_max, dim, generator=gen, device=mu.device, dtype=torch.float64)
    u = u.clamp(1e-300, 1 - 1e-16)
    rows = {c: torch.tensor([r == c for r in controls], device=mu.device) for c in set(controls)}
    if "top_p" in rows:
        central = values[:, None, None]
        u = torch.where(rows["top_p"][:, None, None], (1 - central) / 2 + central * u, u)
    if "tail_resample" in rows:
        lam = torch.where(rows["tail_resample"], values, torch.zeros_like(values))
        redraw = torch.rand(batch, n_max, 1, generator=gen, device=mu.device, dtype=torch.float64) < lam[:, None, None]
        lower = float(_std_normal_cdf(-tail_z))
        v = 2 * lower * u
        tail_u = torch.where(v < lower, v, 1 - (v - lower))
        u = torch.where(redraw, tail_u, u)
    scale = _scale(root, controls, values)
    z = _std_normal_icdf(u) * scale[:, None, None]
    x = mu.unsqueeze(1) + z @ root.transpose(-1, -2)
    used = torch.arange(n_max, device=mu.device) < n.unsqueeze(-1)
    return x, used


def _scale(root: torch.Tensor, controls: list[str], values: torch.Tensor) -> torch.Tensor:
    """Per-row factor on the standard deviation: tau for temperature, the solved tau for matched."""
    dim = root.shape[-1]
    scale = torch.ones(root.shape[0], dtype=root.dtype, device=root.device)
    temperature = torch.tensor([c == "temperature" for c in controls], device=root.device)
    scale = torch.where(temperature, values, scale)
    matched = torch.tensor([c == "matched" for c in controls], device=root.device)
    if matched.any():
        # Differential entropy of N(mu, tau^2 Sigma): 0.5 ln det(2 pi e Sigma) + d ln tau.
        logdet = 2 * torch.linalg.eigvalsh(root).clamp_min(1e-300).log().sum(-1)
        current = 0.5 * (dim * math.log(2 * math.pi * math.e) + logdet)
        scale = torch.where(matched, ((values - current) / dim).exp(), scale)
    return scale


def _normal_mass(lo: torch.Tensor, hi: torch.Tensor, mu: torch.Tensor | float, sd: torch.Tensor | float) -> torch.Tensor:
    """N(mu, sd^2) mass of [lo, hi] (0 when lo >= hi); upper-tail intervals use the mirrored CDF,
    so a small mass far above the mean keeps its relative precision."""
    a, b = (lo - mu) / sd, (hi - mu) / sd
    upper = a > 0
    a, b = torch.where(upper, -b, a), torch.where(upper, -a, b)
    return (_std_normal_cdf(b) - _std_normal_cdf(a)).clamp_min(0)


def _where_log_ratio_at_least(m: torch.Tensor, s: torch.Tensor, c: float) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """{x : log q(x) - log p(x) >= c} for q = N(m, s^2), p = N(0, 1), as two intervals [lo, hi].

    Times 2 s^2 the condition is the quadratic a x^2 + 2 m x + k >= 0 with a = s^2 - 1 and
    k = -m^2 - 2 s^2 (log s + c), whose discriminant / 4 is s^2 (m^2 + 2 a (log s + c)) (written so,
    it does not cancel for a collapsed s). The set is outside the roots when a >= 0 (everything
    without real roots) and between them when a < 0 (nothing without real roots).
    """
    a = s**2 - 1
    k = -(m**2) - 2 * s**2 * (s.log() + c)
    reduced = m**2 + 2 * a * (s.log() + c)
    # The stable quadratic formula: one root is huge when a is near 0 (s near 1), the other ~ -k / 2m.
    half = -(m + torch.where(m >= 0, 1.0, -1.0) * s * reduced.clamp_min(0).sqrt())
    r1, r2 = half / a, k / half
    lo, hi = torch.minimum(r1, r2), torch.maximum(r1, r2)
    inf, zero = torch.full_like(m, torch.inf), torch.zeros_like(m)
    real_roots, opens_up = reduced > 0, a >= 0
    # opens up: (-inf, lo] and [hi, inf), or everything; opens down: [lo, hi], or nothing. [0, 0] is empty.
    left = (torch.where(opens_up, -inf, torch.where(real_roots, lo, zero)),
            torch.where(opens_up, torch.where(real_roots, lo, inf), torch.where(real_roots, hi, zero)))
    right = (torch.where(real_roots & opens_up, hi, zero), torch.where(real_roots & opens_up, inf, zero))
    return [left, right]


def _marginal_metrics(m: torch.Tensor, s: torch.Tensor, tail_z: float) -> dict[str, torch.Tensor]:
    """Tail metrics and tv of the model marginal N(m, s^2) against N(0, 1), tail |x| > tail_z (closed form)."""
    inf = torch.full_like(m, torch.inf)
    tail = [(-inf, torch.full_like(m, -tail_z)), (torch.full_like(m, tail_z), inf)]
    true_tail = 2 * _std_normal_cdf(-tail_z)
    ratio = sum(_normal_mass(lo, hi, m, s) for lo, hi in tail) / true_tail

    def truth_mass_in_tail(intervals):
        return sum(_normal_mass(torch.maximum(lo, t_lo), torch.minimum(hi, t_hi), 0.0, 1.0)
                   for lo, hi in intervals for t_lo, t_hi in tail)

    covered = _where_log_ratio_at_least(m, s, math.log(COVERAGE_RATE))
    q_above_p = _where_log_ratio_at_least(m, s, 0.0)
    # E[x^2 | |x| > z] under N(0, 1); E[x | tail] = 0 by symmetry.
    tail_x2 = 1 + tail_z * math.exp(-0.5 * tail_z**2) / math.sqrt(2 * math.pi) / float(_std_normal_cdf(-tail_z))
    return {
        "tail_mass_ratio": ratio,
        "tail_mass_abs_log_ratio": ratio.clamp_min(LOG_FLOOR).log().abs(),
        "tail_coverage": truth_mass_in_tail(covered) / true_tail,
        "tail_forward_kl": s.log() + (tail_x2 + m**2) / (2 * s**2) - tail_x2 / 2,
        "tv": sum(_normal_mass(lo, hi, m, s) - _normal_mass(lo, hi, 0.0, 1.0) for lo, hi in q_above_p),
    }


def _metrics(mu: torch.Tensor, cov: torch.Tensor, tail_z: float) -> dict[str, torch.Tensor]:
    dim = mu.shape[-1]
    # A degenerate fit (variance 0 along some direction: fewer than d + 1 distinct training points)
    # is read at variance VARIANCE_FLOOR there, so its KLs are huge (~1e30) instead of inf or nan and
    # medians over runs stay defined; no fit that resolves its data comes near the floor.
    eig, vec = torch.linalg.eigh(cov)
    eig = eig.clamp_min(VARIANCE_FLOOR)
    logdet = eig.log().sum(-1)
    trace = eig.sum(-1)
    along = (vec.transpose(-1, -2) @ mu.unsqueeze(-1)).squeeze(-1)  # mu in the eigenbasis
    forward_kl = 0.5 * (((1 + along**2) / eig).sum(-1) - dim + logdet)
    true_entropy = 0.5 * dim * math.log(2 * math.pi * math.e)
    return {
        **_marginal_metrics(mu[:, 0], cov[:, 0, 0].clamp_min(VARIANCE_FLOOR).sqrt(), tail_z),
        "forward_kl": forward_kl,
        "reverse_kl": 0.5 * (trace + (mu**2).sum(-1) - dim - logdet),
        "test_loss": true_entropy + forward_kl,
        "variance": cov.diagonal(dim1=-2, dim2=-1).mean(-1),
        "mean": mu[:, 0],
        "w2": (mu**2).sum(-1) + trace + dim - 2 * eig.sqrt().sum(-1),
        "entropy": true_entropy + 0.5 * logdet,
    }


def simulate(
    cells: list[Cell],
    generations: int,
    seeds: int,
    device: torch.device,
    seed: int,
    *,
    dim: int = 1,
    estimator: str = "mle",
    tail_z: float = 2.0,
    knn_samples: int = 0,
) -> list[dict[str, torch.Tensor]]:
    if estimator not in ESTIMATORS:
        raise ValueError(f"unknown estimator {estimator!r}: use mle or unbiased")
    for cell in cells:
        if cell.diversity_control not in SUPPORTED_CONTROLS:
            raise ValueError(
                f"the gaussian family supports diversity controls {', '.join(SUPPORTED_CONTROLS)}, "
                f"not {cell.diversity_control!r}"
            )
    plan = plan_tensors(cells, seeds, device)
    controls = [c.diversity_control for c in cells for _ in range(seeds)]
    values = torch.tensor([c.diversity for c in cells], dtype=torch.float64, device=device).repeat_interleave(seeds)
    batch = len(cells) * seeds
    gen = torch.Generator(device).manual_seed(seed)
    real = RealStream(seeds, seed, device)
    zeros = torch.zeros(batch, dim, dtype=torch.float64, device=device)
    identity = torch.eye(dim, dtype=torch.float64, device=device).expand(batch, dim, dim).contiguous()
    plain = ["temperature"] * batch
    ones = torch.ones(batch, dtype=torch.float64, device=device)
    sub_mask = plan["subsample"] > 0
    # accumulate_subsample needs the points themselves; only its rows keep them, packed in order.
    sub_rows = sub_mask.nonzero().squeeze(-1)
    pointwise = torch.tensor([c in POINTWISE_CONTROLS for c in controls], device=device)
    no_points = (torch.zeros(0, 1, dim, dtype=torch.float64, device=device),
                 torch.zeros(0, 1, dtype=torch.bool, device=device), torch.zeros(0, dtype=torch.long, device=device))

    def truth_stats(n: torch.Tensor, g: torch.Generator) -> tuple[torch.Tensor, ...]:
        k = len(n)
        stats = _block(zeros[:k], identity[:k], n, plain[:k], ones[:k], torch.zeros_like(n, dtype=torch.bool), tail_z, g)[0]
        return stats.count, stats.total, stats.outer

    def draw_real(generation: int, n: torch.Tensor) -> tuple[_Stats, tuple[torch.Tensor, ...]]:
        """The first n[b] samples of run b's real stream at `generation`, and their points when kept."""
        if not len(sub_rows):
            return _Stats(*real.additive(generation, n, truth_stats)), no_points
        x, used = real.prefix(generation, n, lambda k, g: torch.randn(seeds, k, dim, generator=g, dtype=torch.float64, device=device))
        return _Stats.of(x, used), (x, used, torch.arange(batch, device=device))

    def with_knn(metrics, mu, root):
        if knn_samples > 0:
            n = torch.full((batch,), knn_samples, device=device)
            real_x, _ = _draw(zeros, identity, n, plain, ones, tail_z, gen)
            fake, _ = _draw(mu, root, n, plain, ones, tail_z, gen)
            metrics.update(knn_precision_recall_coverage(real_x, fake))
            # Vendi score of the model's samples under an RBF kernel of unit bandwidth.
            metrics["vendi"] = vendi(torch.exp(-0.5 * torch.cdist(fake, fake) ** 2))
        return metrics

    per_generation = [with_knn(_metrics(zeros, identity, tail_z), zeros, identity)]
    real_pool, real_points = draw_real(1, plan["first_real"])
    pool, train = real_pool, real_pool
    capacity = int((plan["first_real"] + (generations - 1) * (plan["synthetic"] + plan["fresh_real"]))[sub_rows].max()) if len(sub_rows) else 0
    packed = torch.zeros(len(sub_rows), capacity + 1, dim, dtype=torch.float64, device=device)
    filled = _append(packed, torch.zeros(len(sub_rows), dtype=torch.long, device=device), real_points, sub_rows)
    for g in range(1, generations + 1):
        mu, cov = train.fit(estimator)
        root = _sqrtm(cov)
        per_generation.append(with_knn(_metrics(mu, cov, tail_z), mu, root))
        if g == generations:
            break
        synthetic, synthetic_points = _block(mu, root, plan["synthetic"], controls, values, sub_mask | pointwise, tail_z, gen)
        fresh, fresh_points = draw_real(g + 1, plan["fresh_real"])
        new = synthetic + fresh
        pool = (pool + new).where(plan["keep_history"], new)
        pool = (pool + real_pool).where(plan["reuse_real_pool"], pool)
        train = pool
        if len(sub_rows):
            filled = _append(packed, _append(packed, filled, synthetic_points, sub_rows), fresh_points, sub_rows)
            chosen = _subsample(packed, filled, plan["subsample"][sub_rows], gen)
            train = _Stats(pool.count.clone(), pool.total.clone(), pool.outer.clone())
            train.count[sub_rows], train.total[sub_rows], train.outer[sub_rows] = chosen.count, chosen.total, chosen.outer
    return stack_runs(per_generation, len(cells), seeds)


def _block(
    mu: torch.Tensor,
    root: torch.Tensor,
    n: torch.Tensor,
    controls: list[str],
    values: torch.Tensor,
    explicit: torch.Tensor,
    tail_z: float,
    gen: torch.Generator,
) -> tuple[_Stats, tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
    """Statistics of n[b] draws per row, and the points of the `explicit` rows as (x, used, rows).

    Rows whose draws are plain (possibly rescaled) Gaussians get exact statistics without points:
    the sample mean is N(mu, Sigma / n) and the scatter Wishart(n - 1, Sigma), independent
    (Bartlett decomposition), O(d^2) per row whatever n is. Truncated or tail-resampled draws,
    points the regime keeps, and too-small samples (1 <= n <= d) are drawn point by point.
    """
    dim = mu.shape[1]
    explicit = explicit | ((n >= 1) & (n <= dim))
    scale = _scale(root, controls, values)
    stats = _wishart_stats(mu, root * scale[:, None, None], n, gen)
    rows = explicit.nonzero().squeeze(-1)
    if not len(rows):
        empty = torch.zeros(0, 1, dim, dtype=mu.dtype, device=mu.device)
        return stats, (empty, torch.zeros(0, 1, dtype=torch.bool, device=mu.device), rows)
    x, used = _draw(mu[rows], root[rows], n[rows], [controls[i] for i in rows.tolist()], values[rows], tail_z, gen)
    drawn = _Stats.of(x, used)
    stats.count[rows], stats.total[rows], stats.outer[rows] = drawn.count, drawn.total, drawn.outer
    return stats, (x, used, rows)


def _wishart_stats(mu: torch.Tensor, root: torch.Tensor, n: torch.Tensor, gen: torch.Generator) -> _Stats:
    batch, dim = mu.shape
    count = n.to(mu.dtype)
    dof = (count.unsqueeze(-1) - 1 - torch.arange(dim, device=mu.device)).clamp_min(0)
    # torch._standard_gamma is the sampler behind torch.distributions.Gamma; it takes our generator.
    chi2 = 2 * torch._standard_gamma((dof / 2).clamp_min(1e-3), generator=gen) * (dof > 0)
    a = torch.randn(batch, dim, dim, generator=gen, device=mu.device, dtype=mu.dtype).tril(-1) * (count > dim)[:, None, None]
    a = a + torch.diag_embed(chi2.sqrt())
    la = root @ a
    scatter = la @ la.transpose(1, 2)
    z = torch.randn(batch, dim, 1, generator=gen, device=mu.device, dtype=mu.dtype)
    mean = mu + (root @ z).squeeze(-1) / count.clamp_min(1).sqrt().unsqueeze(-1)
    mean = mean * (count > 0).unsqueeze(-1)
    return _Stats(count, count.unsqueeze(-1) * mean, scatter + count[:, None, None] * mean.unsqueeze(-1) * mean.unsqueeze(-2))


def _append(packed: torch.Tensor, filled: torch.Tensor, block: tuple[torch.Tensor, ...], rows: torch.Tensor) -> torch.Tensor:
    """Write the used points of block (x, used, block_rows) for `rows` after each row's filled prefix."""
    if not len(rows):
        return filled
    x, used, block_rows = block
    position = torch.searchsorted(block_rows, rows)
    x, used = x[position], used[position]
    slot = filled.unsqueeze(-1) + used.cumsum(-1) - 1
    slot = torch.where(used, slot, torch.full_like(slot, packed.shape[1] - 1))  # the last slot is scratch
    packed.scatter_(1, slot.unsqueeze(-1).expand_as(x), x)
    return filled + used.sum(-1)


def _subsample(packed: torch.Tensor, filled: torch.Tensor, size: torch.Tensor, gen: torch.Generator) -> _Stats:
    """Statistics of size[b] points drawn uniformly (with replacement) from row b's pool."""
    n_max = int(size.max())
    u = torch.rand(packed.shape[0], n_max, generator=gen, device=packed.device, dtype=torch.float64)
    index = (u * filled.unsqueeze(-1)).long().clamp_max(packed.shape[1] - 2)
    x = packed.gather(1, index.unsqueeze(-1).expand(-1, -1, packed.shape[2]))
    return _Stats.of(x, torch.arange(n_max, device=packed.device) < size.unsqueeze(-1))
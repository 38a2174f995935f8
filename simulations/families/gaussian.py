"""Family (c): a d-dimensional Gaussian with truth N(0, I), refit each generation by MLE or the
unbiased covariance estimator (validation V1-V3, V8).

A run's training set is kept as sufficient statistics (count, sum, sum of outer products), which
are additive, so accumulate and fixed-pool regimes are exact; plain Gaussian draws are generated
directly as statistics (see `_block`); accumulate_subsample keeps the points
and draws its fixed-size training set from them with replacement.
Diversity controls act on the standardised draws z of x = mu + Sigma^(1/2) z: temperature scales z,
top_p truncates each coordinate to its central mass p, tail_resample redraws a share lambda of the
samples from beyond |z| > tail_z, matched solves the temperature whose differential entropy equals
the target. top_k and dedup have no meaning for a continuous density and are refused.
"""

from __future__ import annotations

import math

import torch

from simulations.cells import Cell
from simulations.families.categorical import stack_runs
from simulations.metrics import knn_precision_recall_coverage, vendi
from simulations.regimes import plan_tensors

SUPPORTED_CONTROLS = ("temperature", "top_p", "tail_resample", "matched")
POINTWISE_CONTROLS = ("top_p", "tail_resample")
ESTIMATORS = ("mle", "unbiased")


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
        pick = lambda a, b: torch.where(rows.reshape(rows.shape + (1,) * (a.dim() - 1)), a, b)  # noqa: E731
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


def _metrics(mu: torch.Tensor, cov: torch.Tensor, tail_z: float) -> dict[str, torch.Tensor]:
    dim = mu.shape[-1]
    eig = torch.linalg.eigvalsh(cov).clamp_min(1e-300)
    logdet = eig.log().sum(-1)
    trace = eig.sum(-1)
    inv = torch.linalg.pinv(cov, hermitian=True)
    quad_inv = (mu.unsqueeze(-2) @ inv @ mu.unsqueeze(-1)).squeeze(-1).squeeze(-1)
    sd1 = cov[:, 0, 0].clamp_min(1e-300).sqrt()
    true_tail = 2 * _std_normal_cdf(-tail_z)
    model_tail = _std_normal_cdf((-tail_z - mu[:, 0]) / sd1) + _std_normal_cdf((mu[:, 0] - tail_z) / sd1)
    return {
        "variance": trace / dim,
        "mean": mu[:, 0],
        "kl": 0.5 * (trace + (mu**2).sum(-1) - dim - logdet),
        "w2": (mu**2).sum(-1) + trace + dim - 2 * eig.sqrt().sum(-1),
        "test_loss": 0.5 * (dim * math.log(2 * math.pi) + logdet + inv.diagonal(dim1=-2, dim2=-1).sum(-1) + quad_inv),
        "entropy": 0.5 * (dim * math.log(2 * math.pi * math.e) + logdet),
        "tail_mass_kept": model_tail / true_tail,
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
    zeros = torch.zeros(batch, dim, dtype=torch.float64, device=device)
    identity = torch.eye(dim, dtype=torch.float64, device=device).expand(batch, dim, dim).contiguous()
    plain = ["temperature"] * batch
    ones = torch.ones(batch, dtype=torch.float64, device=device)
    sub_mask = plan["subsample"] > 0
    pointwise = torch.tensor([c in POINTWISE_CONTROLS for c in controls], device=device)

    def block(mu, root, n, ctrl=plain, val=ones, explicit=sub_mask):
        return _block(mu, root, n, ctrl, val, explicit, tail_z, gen)

    def with_knn(metrics, mu, root):
        if knn_samples > 0:
            n = torch.full((batch,), knn_samples, device=device)
            real, _ = _draw(zeros, identity, n, plain, ones, tail_z, gen)
            fake, _ = _draw(mu, root, n, plain, ones, tail_z, gen)
            metrics.update(knn_precision_recall_coverage(real, fake))
            # Vendi score of the model's samples under an RBF kernel of unit bandwidth.
            metrics["vendi"] = vendi(torch.exp(-0.5 * torch.cdist(fake, fake) ** 2))
        return metrics

    per_generation = [with_knn(_metrics(zeros, identity, tail_z), zeros, identity)]
    real_pool, real_points = block(zeros, identity, plan["first_real"])
    pool, train = real_pool, real_pool
    # accumulate_subsample needs the points themselves; only its rows keep them, packed in order.
    sub_rows = sub_mask.nonzero().squeeze(-1)
    capacity = int((plan["first_real"] + (generations - 1) * (plan["synthetic"] + plan["fresh_real"]))[sub_rows].max()) if len(sub_rows) else 0
    packed = torch.zeros(len(sub_rows), capacity + 1, dim, dtype=torch.float64, device=device)
    filled = _append(packed, torch.zeros(len(sub_rows), dtype=torch.long, device=device), real_points, sub_rows)
    for g in range(1, generations + 1):
        mu, cov = train.fit(estimator)
        root = _sqrtm(cov)
        per_generation.append(with_knn(_metrics(mu, cov, tail_z), mu, root))
        if g == generations:
            break
        synthetic, synthetic_points = block(mu, root, plan["synthetic"], controls, values, sub_mask | pointwise)
        fresh, fresh_points = block(zeros, identity, plan["fresh_real"])
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
    batch, dim = mu.shape
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

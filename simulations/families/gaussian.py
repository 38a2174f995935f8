"""Family (c): a d-dimensional Gaussian with truth N(0, I), refit each generation by MLE or the
unbiased covariance estimator (validation V1-V3, V8).

A run's training set is kept as sufficient statistics (count, sum, sum of outer products), which
are additive, so accumulate and fixed-pool regimes are exact; accumulate_subsample keeps the points
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
from simulations.metrics import knn_precision_recall_coverage
from simulations.regimes import plan_tensors

SUPPORTED_CONTROLS = ("temperature", "top_p", "tail_resample", "matched")
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
    scale = torch.ones(batch, dtype=torch.float64, device=mu.device)
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
    if "temperature" in rows:
        scale = torch.where(rows["temperature"], values, scale)
    if "matched" in rows:
        # Differential entropy of N(mu, tau^2 Sigma): 0.5 ln det(2 pi e Sigma) + d ln tau.
        logdet = 2 * torch.linalg.eigvalsh(root).clamp_min(1e-300).log().sum(-1)
        current = 0.5 * (dim * math.log(2 * math.pi * math.e) + logdet)
        tau = ((values - current) / dim).exp()
        scale = torch.where(rows["matched"], tau, scale)
    z = _std_normal_icdf(u) * scale[:, None, None]
    x = mu.unsqueeze(1) + z @ root.transpose(-1, -2)
    used = torch.arange(n_max, device=mu.device) < n.unsqueeze(-1)
    return x, used


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

    def sample(mu, root, n, ctrl=plain, val=ones):
        return _draw(mu, root, n, ctrl, val, tail_z, gen)

    def with_knn(metrics, mu, root):
        if knn_samples > 0:
            n = torch.full((batch,), knn_samples, device=device)
            real, _ = sample(zeros, identity, n)
            fake, _ = sample(mu, root, n)
            metrics.update(knn_precision_recall_coverage(real, fake))
        return metrics

    per_generation = [with_knn(_metrics(zeros, identity, tail_z), zeros, identity)]
    real_points = sample(zeros, identity, plan["first_real"])
    real_pool = _Stats.of(*real_points)
    pool, train = real_pool, real_pool
    # accumulate_subsample needs the points themselves; only its rows keep them, packed in order.
    sub_rows = (plan["subsample"] > 0).nonzero().squeeze(-1)
    capacity = int((plan["first_real"] + (generations - 1) * (plan["synthetic"] + plan["fresh_real"]))[sub_rows].max()) if len(sub_rows) else 0
    packed = torch.zeros(len(sub_rows), capacity + 1, dim, dtype=torch.float64, device=device)
    filled = torch.zeros(len(sub_rows), dtype=torch.long, device=device)
    filled = _append(packed, filled, real_points, sub_rows)
    for g in range(1, generations + 1):
        mu, cov = train.fit(estimator)
        root = _sqrtm(cov)
        per_generation.append(with_knn(_metrics(mu, cov, tail_z), mu, root))
        if g == generations:
            break
        synthetic = sample(mu, root, plan["synthetic"], controls, values)
        fresh = sample(zeros, identity, plan["fresh_real"])
        new = _Stats.of(*synthetic) + _Stats.of(*fresh)
        pool = (pool + new).where(plan["keep_history"], new)
        pool = (pool + real_pool).where(plan["reuse_real_pool"], pool)
        train = pool
        if len(sub_rows):
            filled = _append(packed, _append(packed, filled, synthetic, sub_rows), fresh, sub_rows)
            chosen = _subsample(packed, filled, plan["subsample"][sub_rows], gen)
            train = _Stats(pool.count.clone(), pool.total.clone(), pool.outer.clone())
            train.count[sub_rows], train.total[sub_rows], train.outer[sub_rows] = chosen.count, chosen.total, chosen.outer
    return stack_runs(per_generation, len(cells), seeds)


def _append(packed: torch.Tensor, filled: torch.Tensor, block: tuple[torch.Tensor, torch.Tensor], rows: torch.Tensor) -> torch.Tensor:
    """Write the used points of block (x, used) for `rows` after each row's filled prefix."""
    x, used = block[0][rows], block[1][rows]
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

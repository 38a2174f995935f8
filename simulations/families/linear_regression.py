"""Family (d): ordinary least squares with d features, validation V4 (replace vs accumulate,
Gerstgrasser et al.) and V9 (a constant fraction of biased synthetic labels, Dohmatob et al.).

Truth: y = x . w* + sigma e, rows x ~ N(0, I_d). A synthetic row is labelled by the previous fit
(y = x . w_{g-1} + tau sigma e, tau the temperature control, 1 by default). The training set of a
run is kept as (X^T X, X^T y), which is additive, so accumulate regimes are exact OLS on the union.
With `reuse_design` every block reuses one design X per run (the setting where V4's formula is
exact); otherwise each block's statistics are drawn directly (Wishart), whatever its row count.
test_loss is the excess test error ||w_g - w*||^2.
"""

from __future__ import annotations

import torch

from simulations.cells import Cell
from simulations.families.categorical import stack_runs
from simulations.regimes import plan_tensors


def _design(batch: int, rows: int, dim: int, gen: torch.Generator, device: torch.device) -> torch.Tensor:
    return torch.randn(batch, rows, dim, generator=gen, device=device, dtype=torch.float64)


def _gram(x: torch.Tensor, y: torch.Tensor, used: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    xm = x * used.unsqueeze(-1)
    return xm.transpose(1, 2) @ xm, (xm.transpose(1, 2) @ y.unsqueeze(-1)).squeeze(-1)


def simulate(
    cells: list[Cell],
    generations: int,
    seeds: int,
    device: torch.device,
    seed: int,
    *,
    dim: int = 10,
    noise: float = 1.0,
    reuse_design: bool = False,
) -> list[dict[str, torch.Tensor]]:
    for cell in cells:
        if cell.diversity_control != "temperature":
            raise ValueError("the linear_regression family supports only the temperature control (label noise scale)")
    plan = plan_tensors(cells, seeds, device)
    tau = torch.tensor([c.diversity for c in cells], dtype=torch.float64, device=device).repeat_interleave(seeds)
    batch = len(cells) * seeds
    gen = torch.Generator(device).manual_seed(seed)
    w_true = torch.zeros(batch, dim, dtype=torch.float64, device=device)
    w_true[:, 0] = 1.0  # the error depends on w* only through ||w*||, not its direction
    n_max = int(torch.stack([plan["first_real"], plan["synthetic"], plan["fresh_real"]]).max())
    fixed_x = _design(batch, n_max, dim, gen, device) if reuse_design else None

    def block(w: torch.Tensor, n: torch.Tensor, scale: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if not reuse_design and bool(((n == 0) | (n >= dim)).all()):
            return _wishart_block(w, n, noise * scale, gen)
        x = fixed_x if reuse_design else _design(batch, n_max, dim, gen, device)
        e = torch.randn(batch, n_max, generator=gen, device=device, dtype=torch.float64)
        y = (x @ w.unsqueeze(-1)).squeeze(-1) + noise * scale.unsqueeze(-1) * e
        return _gram(x, y, torch.arange(n_max, device=device) < n.unsqueeze(-1))

    ones = torch.ones_like(tau)
    real_pool = block(w_true, plan["first_real"], ones)
    pool = train = real_pool
    per_generation = [{"test_loss": torch.zeros(batch, dtype=torch.float64, device=device)}]
    for g in range(1, generations + 1):
        w = torch.linalg.solve(train[0], train[1])
        per_generation.append({"test_loss": ((w - w_true) ** 2).sum(-1)})
        if g == generations:
            break
        synthetic, fresh = block(w, plan["synthetic"], tau), block(w_true, plan["fresh_real"], ones)
        new = (synthetic[0] + fresh[0], synthetic[1] + fresh[1])
        keep, reuse = plan["keep_history"], plan["reuse_real_pool"]
        pool = tuple(torch.where(_rows(keep, a), a + b, b) for a, b in zip(pool, new))
        pool = tuple(torch.where(_rows(reuse, a), a + r, a) for a, r in zip(pool, real_pool))
        train = pool
    return stack_runs(per_generation, len(cells), seeds)


def _wishart_block(w: torch.Tensor, n: torch.Tensor, noise: torch.Tensor, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """(X^T X, X^T y) of n[b] fresh rows without drawing them: X^T X = A A^T ~ Wishart(n, I) by the
    Bartlett decomposition and X^T e | X ~ N(0, X^T X) = A z. Exact, O(d^2) per run for any n >= d."""
    batch, dim = w.shape
    dof = (n.unsqueeze(-1) - torch.arange(dim, device=w.device)).to(w.dtype).clamp_min(1)
    # torch._standard_gamma is the sampler behind torch.distributions.Gamma; it takes our generator.
    chi2 = 2 * torch._standard_gamma(dof / 2, generator=gen)
    # float32 normals cost a quarter of float64 ones on CPU; 24 bits are far below the sampling noise.
    a = torch.randn(batch, dim, dim, generator=gen, device=w.device).to(w.dtype).tril(-1) + torch.diag_embed(chi2.sqrt())
    a = a * (n > 0).to(w.dtype)[:, None, None]
    gram = a @ a.transpose(1, 2)
    z = torch.randn(batch, dim, 1, generator=gen, device=w.device).to(w.dtype)
    moment = (gram @ w.unsqueeze(-1) + noise[:, None, None] * (a @ z)).squeeze(-1)
    return gram, moment


def _rows(mask: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    return mask.reshape(mask.shape + (1,) * (like.dim() - 1))


def biased_synthetic_error(
    n: int, dim: int, fraction: float, delta: float, noise: float, seeds: int, device: torch.device, seed: int
) -> torch.Tensor:
    """V9: ||w - w*||^2 of OLS on n rows, a share `fraction` labelled by w* + delta u; shape [seeds]."""
    gen = torch.Generator(device).manual_seed(seed)
    w_true = torch.zeros(seeds, dim, dtype=torch.float64, device=device)
    w_true[:, 0] = 1.0
    u = torch.zeros_like(w_true)
    u[:, 1] = 1.0
    synthetic_rows = round(fraction * n)
    w_rows = torch.cat([w_true.unsqueeze(1).expand(-1, n - synthetic_rows, -1),
                        (w_true + delta * u).unsqueeze(1).expand(-1, synthetic_rows, -1)], dim=1)
    x = _design(seeds, n, dim, gen, device)
    y = (x * w_rows).sum(-1) + noise * torch.randn(seeds, n, generator=gen, device=device, dtype=torch.float64)
    gram, moment = _gram(x, y, torch.ones(seeds, n, dtype=torch.bool, device=device))
    w = torch.linalg.solve(gram, moment)
    return ((w - w_true) ** 2).sum(-1).cpu()

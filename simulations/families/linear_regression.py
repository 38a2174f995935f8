"""Family (d): ordinary least squares with d features, validation V4 (replace vs accumulate,
Gerstgrasser et al.) and V9 (a constant fraction of biased synthetic labels, Dohmatob et al.).

Truth: y = x . w* + sigma e, rows x ~ N(0, I_d). A synthetic row is labelled by the previous fit
(y = x . w_{g-1} + tau sigma e, tau the temperature control, 1 by default). The training set of a
run is kept as (X^T X, X^T y), which is additive, so accumulate regimes are exact OLS on the union.
Real rows come from a `RealStream` (common random numbers: every cell with the same seed index sees
the same real rows). With `reuse_design` every block reuses one design X per seed index (the
setting where V4's formula is exact; the stream's generation 0 holds it, each generation's real
label noise comes from that generation's stream); otherwise each block's statistics are drawn
directly (Wishart), whatever its row count.

Metrics (there is no tail: a linear model has no rare types or regions):

- test_loss: the excess test error ||w_g - w*||^2 (E over x ~ N(0, I) of (x . (w_g - w*))^2).
- forward_kl: KL between the true and the model predictive distributions of y given x, both
  Gaussian with noise sd sigma, averaged over x ~ N(0, I): ||w_g - w*||^2 / (2 sigma^2). With equal
  noise the divergence is symmetric, so there is no separate reverse_kl.
"""

from __future__ import annotations

import torch

from simulations.cells import Cell
from simulations.regimes import plan_tensors
from simulations.sampling import RealStream, stack_runs


def _gram(x: torch.Tensor, y: torch.Tensor, used: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    xm = x * used.unsqueeze(-1)
    return xm.transpose(1, 2) @ xm, (xm.transpose(1, 2) @ y.unsqueeze(-1)).squeeze(-1)


def _metrics(w: torch.Tensor, w_true: torch.Tensor, noise: float) -> dict[str, torch.Tensor]:
    error = ((w - w_true) ** 2).sum(-1)
    return {"test_loss": error, "forward_kl": error / (2 * noise**2)}


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
    real = RealStream(seeds, seed, device)
    w_true = torch.zeros(batch, dim, dtype=torch.float64, device=device)
    w_true[:, 0] = 1.0  # the error depends on w* only through ||w*||, not its direction
    ones = torch.ones_like(tau)
    if reuse_design:
        rows = torch.stack([plan["first_real"], plan["synthetic"], plan["fresh_real"]]).max(0).values
        design, _ = real.prefix(0, rows, lambda n, g: torch.randn(seeds, n, dim, generator=g, dtype=torch.float64, device=device))

    def block(w: torch.Tensor, n: torch.Tensor, label_noise: torch.Tensor, e: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
        """(X^T X, X^T y) of the first n[b] rows of the reused design, labelled by w plus noise e."""
        if e is None:
            e = torch.randn(batch, design.shape[1], generator=gen, device=device, dtype=torch.float64)
        x = design[:, : e.shape[1]]
        y = (x @ w.unsqueeze(-1)).squeeze(-1) + noise * label_noise.unsqueeze(-1) * e
        return _gram(x, y, torch.arange(e.shape[1], device=device) < n.unsqueeze(-1))

    def draw_real(generation: int, n: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if reuse_design:
            e, _ = real.prefix(generation, n, lambda k, g: torch.randn(seeds, k, generator=g, dtype=torch.float64, device=device))
            return block(w_true, n, ones, e)
        return real.additive(generation, n, lambda k, g: _regression_stats(w_true[: len(k)], k, noise * ones[: len(k)], g))

    def draw_synthetic(w: torch.Tensor, n: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return block(w, n, tau, None) if reuse_design else _regression_stats(w, n, noise * tau, gen)

    real_pool = draw_real(1, plan["first_real"])
    pool = train = real_pool
    per_generation = [_metrics(w_true, w_true, noise)]
    for g in range(1, generations + 1):
        w = torch.linalg.solve(train[0], train[1])
        per_generation.append(_metrics(w, w_true, noise))
        if g == generations:
            break
        synthetic, fresh = draw_synthetic(w, plan["synthetic"]), draw_real(g + 1, plan["fresh_real"])
        new = (synthetic[0] + fresh[0], synthetic[1] + fresh[1])
        keep, reuse = plan["keep_history"], plan["reuse_real_pool"]
        pool = tuple(torch.where(_rows(keep, a), a + b, b) for a, b in zip(pool, new))
        pool = tuple(torch.where(_rows(reuse, a), a + r, a) for a, r in zip(pool, real_pool))
        train = pool
    return stack_runs(per_generation, len(cells), seeds)


def _regression_stats(w: torch.Tensor, n: torch.Tensor, noise: torch.Tensor, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """(X^T X, X^T y) of n[b] fresh rows labelled by w[b] with noise sd noise[b]: Wishart blocks for
    n >= d (any n, O(d^2)), explicit rows for 0 < n < d (where the Bartlett form does not apply)."""
    gram, moment = _wishart_block(w, n, noise, gen)
    dim = w.shape[-1]
    small = ((n > 0) & (n < dim)).nonzero().squeeze(-1)
    if len(small):
        n_max = int(n[small].max())
        x = torch.randn(len(small), n_max, dim, generator=gen, device=w.device, dtype=w.dtype)
        e = torch.randn(len(small), n_max, generator=gen, device=w.device, dtype=w.dtype)
        y = (x @ w[small].unsqueeze(-1)).squeeze(-1) + noise[small].unsqueeze(-1) * e
        gram[small], moment[small] = _gram(x, y, torch.arange(n_max, device=w.device) < n[small].unsqueeze(-1))
    return gram, moment


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
    """V9: ||w - w*||^2 of OLS on n rows, a share `fraction` labelled by w* + delta u; shape [seeds].

    The real and the biased rows are two independent blocks of exact (X^T X, X^T y) statistics, so
    the cost does not grow with n.
    """
    gen = torch.Generator(device).manual_seed(seed)
    w_true = torch.zeros(seeds, dim, dtype=torch.float64, device=device)
    w_true[:, 0] = 1.0
    w_biased = w_true.clone()
    w_biased[:, 1] = delta  # w* + delta u with u the unit vector e_1
    synthetic_rows = round(fraction * n)
    sd = torch.full((seeds,), noise, dtype=torch.float64, device=device)
    real = _regression_stats(w_true, torch.full((seeds,), n - synthetic_rows, device=device), sd, gen)
    biased = _regression_stats(w_biased, torch.full((seeds,), synthetic_rows, device=device), sd, gen)
    w = torch.linalg.solve(real[0] + biased[0], real[1] + biased[1])
    return ((w - w_true) ** 2).sum(-1).cpu()
"""Family (c'): an imbalanced 1-D Gaussian mixture refit by EM; its rare component is the tail.

Truth: K components with `weights`, `means` and a common `sd`. Each generation fits a K-component
mixture by `em_steps` EM iterations on the masked points of every run at once, starting from the
previous fit (generation 1 starts from the truth, so no run is lost to a poor local optimum and
what changes across generations is the data). A run keeps its data as
blocks tagged by generation, so every regime is a mask over the blocks: replace/fresh use the
newest block, accumulate all of them, fixed_real the generation-1 real block plus the newest
synthetic one, accumulate_subsample `subsample` points drawn without replacement from all of them.
The temperature control scales the component standard deviations of the synthetic draws.

tail_mass_kept = P_model(R) / P_truth(R) for R = the rare component's mean +- 2 sd;
test_loss = mean negative log-likelihood of a fixed real test sample.
"""

from __future__ import annotations

import math

import torch

from simulations.cells import Cell
from simulations.families.categorical import stack_runs
from simulations.regimes import plan_tensors


def _normal_cdf(z: torch.Tensor) -> torch.Tensor:
    return 0.5 * torch.erfc(-z / math.sqrt(2))


def _log_components(x: torch.Tensor, w: torch.Tensor, m: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
    """log(w_k N(x | m_k, s_k)) for x [B, N] and parameters [B, K] -> [B, N, K]."""
    z = (x.unsqueeze(-1) - m.unsqueeze(1)) / s.unsqueeze(1)
    return w.clamp_min(1e-300).log().unsqueeze(1) - 0.5 * z**2 - s.log().unsqueeze(1) - 0.5 * math.log(2 * math.pi)


def fit_em(x: torch.Tensor, used: torch.Tensor, w: torch.Tensor, m: torch.Tensor, s: torch.Tensor, steps: int):
    """EM for a K-component 1-D mixture on the used points of each row, from (w, m, s)."""
    weight = used.to(x.dtype).unsqueeze(-1)
    for _ in range(steps):
        resp = torch.softmax(_log_components(x, w, m, s), dim=-1) * weight
        mass = resp.sum(1).clamp_min(1e-12)
        w = mass / mass.sum(-1, keepdim=True)
        m = (resp * x.unsqueeze(-1)).sum(1) / mass
        s = ((resp * (x.unsqueeze(-1) - m.unsqueeze(1)) ** 2).sum(1) / mass).clamp_min(1e-8).sqrt()
    return w, m, s


def _draw(w, m, s, n, tau, gen):
    batch = w.shape[0]
    n_max = max(int(n.max()), 1)
    component = torch.multinomial(w, n_max, replacement=True, generator=gen)
    z = torch.randn(batch, n_max, generator=gen, device=w.device, dtype=w.dtype)
    x = m.gather(1, component) + s.gather(1, component) * tau.unsqueeze(-1) * z
    return x, torch.arange(n_max, device=w.device) < n.unsqueeze(-1)


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
    em_steps: int = 30,
    test_samples: int = 2000,
) -> list[dict[str, torch.Tensor]]:
    for cell in cells:
        if cell.diversity_control != "temperature":
            raise ValueError("the gaussian_mixture family supports only the temperature control")
    plan = plan_tensors(cells, seeds, device)
    tau = torch.tensor([c.diversity for c in cells], dtype=torch.float64, device=device).repeat_interleave(seeds)
    batch, k = len(cells) * seeds, len(weights)
    gen = torch.Generator(device).manual_seed(seed)
    as_rows = lambda v: torch.tensor(v, dtype=torch.float64, device=device).expand(batch, k).contiguous()  # noqa: E731
    w_true, m_true, s_true = as_rows(weights), as_rows(means), as_rows([sd] * k)
    ones = torch.ones(batch, dtype=torch.float64, device=device)
    rare = int(torch.tensor(weights).argmin())
    lo, hi = means[rare] - 2 * sd, means[rare] + 2 * sd
    test_x, _ = _draw(w_true, m_true, s_true, torch.full((batch,), test_samples, device=device), ones, gen)

    def metrics(w, m, s):
        region = ((_normal_cdf((hi - m) / s) - _normal_cdf((lo - m) / s)) * w).sum(-1)
        true_region = ((_normal_cdf((hi - m_true) / s_true) - _normal_cdf((lo - m_true) / s_true)) * w_true).sum(-1)
        mean = (w * m).sum(-1)
        return {
            "tail_mass_kept": region / true_region,
            "test_loss": -torch.logsumexp(_log_components(test_x, w, m, s), dim=-1).mean(-1),
            "mean": mean,
            "variance": (w * (s**2 + m**2)).sum(-1) - mean**2,
            "rare_weight": w.gather(1, (m - means[rare]).abs().argmin(-1, keepdim=True)).squeeze(-1),
        }

    per_generation = [metrics(w_true, m_true, s_true)]
    blocks = [(*_draw(w_true, m_true, s_true, plan["first_real"], ones, gen), 0, True)]  # (x, used, generation, real)
    w, m, s = w_true.clone(), m_true.clone(), s_true.clone()  # EM starts at the truth in generation 1
    for g in range(1, generations + 1):
        x = torch.cat([b[0] for b in blocks], dim=1)
        include = []
        for _, used, born, real in blocks:
            keep = plan["keep_history"] | torch.full_like(plan["keep_history"], born == g - 1)
            keep = keep | (plan["reuse_real_pool"] & torch.full_like(keep, real and born == 0))
            include.append(used & keep.unsqueeze(-1))
        mask = torch.cat(include, dim=1)
        subsample = plan["subsample"] > 0
        if g > 1 and subsample.any():
            keys = torch.rand(mask.shape, generator=gen, device=device, dtype=torch.float64)
            rank = torch.where(mask, keys, torch.full_like(keys, 2.0)).argsort(-1).argsort(-1)
            mask = torch.where(subsample.unsqueeze(-1), mask & (rank < plan["subsample"].unsqueeze(-1)), mask)
        w, m, s = fit_em(x, mask, w, m, s, em_steps)
        per_generation.append(metrics(w, m, s))
        if g == generations:
            break
        # Old blocks stay only while some run still trains on them.
        history, pool = bool(plan["keep_history"].any()), bool(plan["reuse_real_pool"].any())
        blocks = [b for b in blocks if history or (pool and b[3] and b[2] == 0)]
        blocks.append((*_draw(w, m, s, plan["synthetic"], tau, gen), g, False))
        blocks.append((*_draw(w_true, m_true, s_true, plan["fresh_real"], ones, gen), g, True))
    return stack_runs(per_generation, len(cells), seeds)

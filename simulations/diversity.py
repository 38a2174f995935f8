"""Diversity controls on the synthetic portion: batched transforms of sampling distributions.

Every control maps model probabilities p of shape [B, ..., V] (rows of one batch may use different
controls and values) to the distribution synthetic samples are drawn from:

- temperature (value tau):   p^(1/tau) renormalised; tau < 1 sharpens, tau > 1 flattens.
- top_p (value p):           keep the smallest set of most likely types holding mass >= p.
- top_k (value k):           keep the k most likely types.
- tail_resample (lambda):    (1 - lambda) p + lambda * uniform over the model's support: rare types
                             the model still knows are drawn more often (lost types never return).
- matched (target, nats):    temperature solved per row by bisection so the entropy of the
                             sampling distribution equals the target: the diversity of the synthetic
                             data is held fixed while the synthetic ratio varies.
- dedup (cap c):             sampling is unchanged; families cap each type's count in the synthetic
                             batch at c copies (`dedup_counts`), which shrinks the batch.

Larger values mean more diversity for every control except dedup (a smaller cap is more diverse),
see `MORE_IS_DIVERSE`.
"""

from __future__ import annotations

from typing import get_args

import torch

from simulations.cells import DiversityControl

CONTROLS: tuple[str, ...] = get_args(DiversityControl)
MORE_IS_DIVERSE: dict[str, bool] = {c: c != "dedup" for c in CONTROLS}
# The setting at which a control leaves the model's distribution unchanged: the unbiased sampler,
# which every design includes (matched entropy has none: its temperature moves with the model).
UNBIASED: dict[str, float] = {"temperature": 1.0, "top_p": 1.0, "top_k": 1e9, "tail_resample": 0.0, "dedup": 1e9}


def _expand(values: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    return values.reshape(values.shape + (1,) * (like.dim() - values.dim())).to(like.dtype)


def _normalise(p: torch.Tensor) -> torch.Tensor:
    return p / p.sum(-1, keepdim=True).clamp_min(torch.finfo(p.dtype).tiny)


def temperature(p: torch.Tensor, tau: torch.Tensor) -> torch.Tensor:
    logp = torch.where(p > 0, p.log(), torch.full_like(p, -torch.inf))
    scaled = logp / _expand(tau, p)
    return torch.softmax(scaled, dim=-1)


def top_p(p: torch.Tensor, mass: torch.Tensor) -> torch.Tensor:
    sorted_p, order = p.sort(dim=-1, descending=True)
    mass_before = sorted_p.cumsum(-1) - sorted_p
    keep_sorted = mass_before < _expand(mass, p)
    keep = torch.zeros_like(keep_sorted).scatter(-1, order, keep_sorted)
    return _normalise(torch.where(keep, p, torch.zeros_like(p)))


def top_k(p: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
    rank = p.argsort(dim=-1, descending=True).argsort(dim=-1)
    keep = rank < _expand(k, p)
    return _normalise(torch.where(keep, p, torch.zeros_like(p)))


def tail_resample(p: torch.Tensor, lam: torch.Tensor) -> torch.Tensor:
    support = (p > 0).to(p.dtype)
    uniform = _normalise(support)
    lam = _expand(lam, p)
    return (1 - lam) * p + lam * uniform


def entropy(p: torch.Tensor) -> torch.Tensor:
    """Shannon entropy in nats over the last dimension (0 log 0 = 0)."""
    return -torch.where(p > 0, p * p.log(), torch.zeros_like(p)).sum(-1)


def matched(p: torch.Tensor, target: torch.Tensor, state_weights: torch.Tensor | None = None) -> torch.Tensor:
    """Temperature per row such that the (state-weighted mean) entropy of the result hits `target`.

    Entropy rises monotonically with temperature, so 40 bisection steps on log tau in
    [1/50, 50] solve it far below sampling noise; targets beyond the reachable range are clamped
    (uniform over the support, or the single most likely type).
    """
    support = p > 0
    logp = torch.where(support, p.log(), torch.full_like(p, -torch.inf))
    lo = torch.full(p.shape[:1], -torch.log(torch.tensor(50.0)).item(), dtype=p.dtype, device=p.device)
    hi = -lo.clone()
    target = target.to(p.dtype)
    for _ in range(40):
        mid = (lo + hi) / 2
        log_q = torch.log_softmax(logp * _expand((-mid).exp(), p), dim=-1)
        h = -(log_q.exp() * torch.where(support, log_q, torch.zeros_like(log_q))).sum(-1)
        if state_weights is not None:
            h = (h * state_weights).sum(-1)
        too_diverse = h > target
        hi = torch.where(too_diverse, mid, hi)
        lo = torch.where(too_diverse, lo, mid)
    return temperature(p, ((lo + hi) / 2).exp())


def apply_control(
    p: torch.Tensor,
    controls: list[str],
    values: torch.Tensor,
    state_weights: torch.Tensor | None = None,
) -> torch.Tensor:
    """The sampling distribution per row: row b uses controls[b] with values[b].

    One transform per distinct control (at most six), each over all the rows that use it.
    """
    if len(controls) != p.shape[0]:
        raise ValueError("one control per row is required")
    out = p.clone()
    for control in sorted(set(controls)):
        rows = torch.tensor([c == control for c in controls], device=p.device)
        if control == "temperature":
            rows &= values != 1.0  # tau = 1 is plain sampling
        if not rows.any():
            continue
        sub, val = p[rows], values[rows]
        if control == "temperature":
            out[rows] = temperature(sub, val)
        elif control == "top_p":
            out[rows] = top_p(sub, val)
        elif control == "top_k":
            out[rows] = top_k(sub, val)
        elif control == "tail_resample":
            out[rows] = tail_resample(sub, val)
        elif control == "matched":
            out[rows] = matched(sub, val, None if state_weights is None else state_weights)
        elif control != "dedup":
            raise ValueError(f"unknown diversity control {control!r}: use one of {', '.join(CONTROLS)}")
    return out


def dedup_counts(counts: torch.Tensor, controls: list[str], values: torch.Tensor) -> torch.Tensor:
    """Cap each type's count in the synthetic batch at the row's dedup value (other rows unchanged)."""
    rows = torch.tensor([c == "dedup" for c in controls], device=counts.device)
    if not rows.any():
        return counts
    cap = torch.where(rows, values.to(counts.dtype), torch.full_like(values, torch.inf, dtype=counts.dtype))
    return torch.minimum(counts, _expand(cap, counts))


def check_control(control: str, value: float) -> None:
    """ValueError unless `value` is a meaningful setting of `control`."""
    valid = {
        "temperature": value > 0,
        "top_p": 0 < value <= 1,
        "top_k": value >= 1,
        "dedup": value >= 1,
        "tail_resample": 0 <= value <= 1,
        "matched": value > 0,
    }
    if control not in valid:
        raise ValueError(f"unknown diversity control {control!r}: use one of {', '.join(CONTROLS)}")
    if not valid[control]:
        raise ValueError(f"diversity value {value} is not valid for {control} (see simulations/diversity.py)")

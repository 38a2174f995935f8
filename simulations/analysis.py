"""What the sweep's grid says: variance shares, diversity thresholds, effects, and a verdict.

The response is each run's final tail loss: the true tail mass the generation-1 model (fit on real
data only) kept minus what the last generation keeps, kept_1 - kept_G, in [-1, 1] (negative when
later generations know more of the tail than the real-only fit did).
`analyse` returns a JSON-ready dict:

- response: what was measured.
- groups[]: one per (family, regime, diversity_control, hold) block of the grid, each a full
  factorial over the factors that vary in it (ratio, diversity, and real_amount, or samples, the
  per-generation size, when the total is held fixed), with its own
  effect_of_ratio / effect_of_diversity / thresholds (as below) where those vary. variance_shares maps
  each main effect, each interaction ("ratio x diversity", ...; "interactions" is their sum) and
  "seed_noise" (within-cell variance) to {"share", "ci": [2.5 %, 97.5 %]}: a balanced-ANOVA
  decomposition of the total variance of the response, CIs from resampling seeds within cells.
- primary: the group the effects and verdict are read from (the largest block in which both the
  ratio and the diversity vary; ties go to the first family and regime of the config).
- thresholds: {"tolerance", "per_ratio": [{"ratio", "real_amount" (or "samples"), "min_diversity"}]}:
  per ratio and real amount, the least diverse setting whose mean tail loss stays <= tolerance (null: none
  does). "Least diverse" follows diversity.MORE_IS_DIVERSE.
- effect_of_ratio / effect_of_diversity: mean tail loss at the lowest and highest level of the
  factor with the others held fixed, averaged over the other factors, and the change.
- verdict: plain sentences with those numbers, for the primary group, plus the ratio effect in the
  same regime with the other quantity held fixed (real count vs total size) when the grid has it.
"""

from __future__ import annotations

import itertools
from typing import Any

import numpy as np

from simulations.diversity import MORE_IS_DIVERSE

FACTORS = ("ratio", "diversity", "real_amount")
# With the total size held fixed the real count moves with the ratio; the size is the third factor.
FACTORS_AT_FIXED_TOTAL = ("ratio", "diversity", "samples")


def _factors(cells: list[dict[str, Any]]) -> tuple[str, ...]:
    return FACTORS_AT_FIXED_TOTAL if cells[0]["hold"] == "total" else FACTORS
BOOTSTRAP = 200


def _effect_sums_of_squares(y: np.ndarray, n_factors: int) -> dict[tuple[int, ...], np.ndarray]:
    """Balanced ANOVA on y [batch, L1..Lk, seeds]: SS of every non-empty subset of the factors."""
    cell_means = y.mean(-1)
    seeds = y.shape[-1]
    axes = list(range(1, n_factors + 1))

    def marginal(kept: tuple[int, ...]) -> np.ndarray:
        drop = tuple(a for a in axes if a - 1 not in kept)
        return cell_means.mean(axis=drop, keepdims=True) if drop else cell_means

    out = {}
    for size in range(1, n_factors + 1):
        for subset in itertools.combinations(range(n_factors), size):
            effect = sum(
                (-1) ** (size - len(t)) * marginal(t)
                for r in range(size + 1)
                for t in itertools.combinations(subset, r)
            )
            effect = np.broadcast_to(effect, cell_means.shape)
            out[subset] = seeds * (effect**2).reshape(y.shape[0], -1).sum(-1)
    return out


def _shares(y: np.ndarray, names: list[str]) -> dict[str, np.ndarray]:
    ss = _effect_sums_of_squares(y, len(names))
    flat = y.reshape(y.shape[0], -1)
    total = ((flat - flat.mean(-1, keepdims=True)) ** 2).sum(-1)
    noise = ((y - y.mean(-1, keepdims=True)) ** 2).reshape(y.shape[0], -1).sum(-1)
    total = np.where(total > 0, total, 1.0)
    shares = {" x ".join(names[i] for i in subset): s / total for subset, s in ss.items()}
    interactions = [s / total for subset, s in ss.items() if len(subset) > 1]
    if interactions:
        shares["interactions"] = sum(interactions)
    shares["seed_noise"] = noise / total
    return shares


def variance_shares(y: np.ndarray, names: list[str], rng: np.random.Generator) -> dict[str, dict[str, Any]]:
    """Shares with bootstrap CIs for y [L1..Lk, seeds]; seeds are resampled within each cell."""
    point = _shares(y[None], names)
    index = rng.integers(0, y.shape[-1], size=(BOOTSTRAP,) + y.shape)
    boot = _shares(np.take_along_axis(np.broadcast_to(y, index.shape), index, axis=-1), names)
    return {
        name: {"share": float(point[name][0]), "ci": [float(np.quantile(boot[name], 0.025)), float(np.quantile(boot[name], 0.975))]}
        for name in point
    }


def _group_key(cell: dict[str, Any]) -> tuple:
    return (cell["family"], cell["regime"], cell["diversity_control"], cell["hold"])


def _block(cells: list[dict[str, Any]]) -> tuple[list[str], list[list[float]], np.ndarray] | None:
    """Factors that vary, their levels, and the response array [L1..Lk, seeds]; None if not factorial."""
    factors = _factors(cells)
    levels = {f: sorted({c[f] for c in cells}) for f in factors}
    varying = [f for f in factors if len(levels[f]) > 1]
    shape = [len(levels[f]) for f in varying]
    if int(np.prod(shape)) != len(cells) or not varying:
        return None
    seeds = min(len(c["final_tail_loss"]) for c in cells)
    y = np.empty(shape + [seeds])
    for c in cells:
        y[tuple(levels[f].index(c[f]) for f in varying)] = c["final_tail_loss"][:seeds]
    return varying, [levels[f] for f in varying], y


def _effect(cells: list[dict[str, Any]], factor: str) -> dict[str, Any]:
    """Mean tail loss at the lowest and highest level of `factor`, the others held fixed and averaged."""
    levels = sorted({c[factor] for c in cells})
    others = [f for f in _factors(cells) if f != factor]
    low, high = [], []
    for key, members in itertools.groupby(sorted(cells, key=lambda c: [c[f] for f in others]), key=lambda c: [c[f] for f in others]):
        by_level = {c[factor]: float(np.mean(c["final_tail_loss"])) for c in members}
        if levels[0] in by_level and levels[-1] in by_level:
            low.append(by_level[levels[0]])
            high.append(by_level[levels[-1]])
    lo, hi = float(np.mean(low)), float(np.mean(high))
    return {"factor": factor, "low_level": levels[0], "high_level": levels[-1],
            "tail_loss_at_low": lo, "tail_loss_at_high": hi, "change": hi - lo, "comparisons": len(low)}


def _thresholds(cells: list[dict[str, Any]], tolerance: float) -> list[dict[str, Any]]:
    control = cells[0]["diversity_control"]
    ascending = sorted({c["diversity"] for c in cells}, reverse=not MORE_IS_DIVERSE[control])
    rows = []
    amount = _factors(cells)[2]
    for ratio in sorted({c["ratio"] for c in cells}):
        for size in sorted({c[amount] for c in cells}):
            loss = {c["diversity"]: float(np.mean(c["final_tail_loss"])) for c in cells if c["ratio"] == ratio and c[amount] == size}
            passing = [d for d in ascending if d in loss and loss[d] <= tolerance]
            if loss:
                rows.append({"ratio": ratio, amount: size, "min_diversity": passing[0] if passing else None})
    return rows


def _share_text(shares: dict[str, dict[str, Any]], name: str) -> str:
    if name not in shares:
        return f"{name} did not vary"
    s = shares[name]
    return f"{name} {100 * s['share']:.0f}% (95% CI {100 * s['ci'][0]:.0f}-{100 * s['ci'][1]:.0f}%)"


def analyse(cells: list[dict[str, Any]], tolerance: float, seed: int) -> dict[str, Any]:
    """cells: dicts with the cell fields, "hold" and "final_tail_loss" (one value per seed)."""
    rng = np.random.default_rng(seed)
    groups = []
    order = {k: i for i, k in enumerate(dict.fromkeys(_group_key(c) for c in cells))}
    for key in order:
        members = [c for c in cells if _group_key(c) == key]
        block = _block(members)
        entry = dict(zip(("family", "regime", "diversity_control", "hold"), key), cells=len(members))
        if block is not None:
            names, levels, y = block
            entry["factors"] = dict(zip(names, levels))
            entry["variance_shares"] = variance_shares(y, names, rng)
            for factor in ("ratio", "diversity"):
                if factor in names:
                    entry[f"effect_of_{factor}"] = _effect(members, factor)
            if "diversity" in names:
                entry["thresholds"] = _thresholds(members, tolerance)
        groups.append((entry, members))
    analysis: dict[str, Any] = {
        "response": "final tail loss: tail_mass_kept[generation 1] - tail_mass_kept[last], per run",
        "groups": [g for g, _ in groups],
    }
    candidates = [(g, m) for g, m in groups if {"ratio", "diversity"} <= set(g.get("factors", {}))]
    if not candidates:
        analysis["verdict"] = "No block of the grid varies both the synthetic ratio and the diversity, so their effects cannot be separated."
        return analysis
    primary, members = max(candidates, key=lambda gm: gm[0]["cells"])
    shares = primary["variance_shares"]
    analysis["primary"] = {k: primary[k] for k in ("family", "regime", "diversity_control", "hold")}
    analysis["thresholds"] = {"tolerance": tolerance, **analysis["primary"], "per_ratio": _thresholds(members, tolerance)}
    ratio_effect, diversity_effect = _effect(members, "ratio"), _effect(members, "diversity")
    analysis["effect_of_ratio"] = {**ratio_effect, "variance_share": shares["ratio"]}
    analysis["effect_of_diversity"] = {**diversity_effect, "variance_share": shares["diversity"]}
    labels = {"ratio": "the synthetic ratio", "diversity": "the diversity of the synthetic data", "real_amount": "the amount of real data"}
    bigger = labels[max((f for f in labels if f in shares), key=lambda f: shares[f]["share"])]
    held = "real count" if primary["hold"] == "real" else "total size"
    matched = "matched diversity" if primary["diversity_control"] == "matched" else f"a fixed {primary['diversity_control']} setting"
    other_hold = next((g for g, _ in groups if "effect_of_ratio" in g and g["hold"] != primary["hold"]
                       and all(g[k] == primary[k] for k in ("family", "regime", "diversity_control"))), None)
    contrast = ""
    if other_hold is not None:
        e = other_hold["effect_of_ratio"]
        other = "total size (the real count falls as the ratio rises)" if other_hold["hold"] == "total" else "real count (the total grows with the ratio)"
        contrast = (f" At a fixed {other} instead, raising the ratio from {e['low_level']:g} to {e['high_level']:g} moves it "
                    f"from {e['tail_loss_at_low']:.3f} to {e['tail_loss_at_high']:.3f}.")
    analysis["verdict"] = (
        f"In the {primary['family']} family under {primary['regime']} ({primary['diversity_control']} diversity, fixed {held}), "
        f"{bigger} explains the most variance in final tail loss: "
        f"{_share_text(shares, 'ratio')}, {_share_text(shares, 'diversity')}, {_share_text(shares, 'real_amount')}, "
        f"interactions {100 * shares.get('interactions', {'share': 0.0})['share']:.0f}%. "
        f"Raising the ratio from {ratio_effect['low_level']:g} to {ratio_effect['high_level']:g} at {matched} moves mean tail loss "
        f"from {ratio_effect['tail_loss_at_low']:.3f} to {ratio_effect['tail_loss_at_high']:.3f}; raising diversity from "
        f"{diversity_effect['low_level']:g} to {diversity_effect['high_level']:g} at a fixed ratio moves it from "
        f"{diversity_effect['tail_loss_at_low']:.3f} to {diversity_effect['tail_loss_at_high']:.3f}"
        + (" (negative: the last model knows more of the tail than the real-only first one)." if min(
            ratio_effect["tail_loss_at_high"], ratio_effect["tail_loss_at_low"], diversity_effect["tail_loss_at_low"],
            diversity_effect["tail_loss_at_high"]) < 0 else ".")
        + contrast
    )
    return analysis

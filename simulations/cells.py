"""One grid cell of a recursive-training sweep: the unit every model family simulates."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Regime = Literal["replace", "accumulate", "fresh", "fixed_real", "accumulate_subsample"]
DiversityControl = Literal["temperature", "top_p", "top_k", "dedup", "tail_resample", "matched"]
# What stays fixed as the share varies (sweep.py): the real count, or the samples per generation.
Hold = Literal["real", "total"]
# The model families, one module each in simulations/families/ (neural_lm and vae_digits are the neural ones).
FAMILIES = ("categorical", "markov", "gaussian", "gaussian_mixture", "linear_regression", "neural_lm", "vae_digits")


@dataclass(frozen=True)
class Cell:
    family: str
    regime: Regime
    ratio: float  # synthetic share rho of each generation's training data (regimes that mix)
    diversity_control: DiversityControl
    diversity: float  # the control's value (tau, p, k, ...) or, for "matched", the target diversity
    real_amount: int  # real samples available per generation (or in the fixed pool)
    # Training samples per generation M; 0 derives it from the real count held fixed:
    # M = real_amount / (1 - ratio) (M = real_amount when ratio is 1). See regimes.py.
    samples: int = 0

"""Closed-form predictions the simulations must reproduce (../shared/data/validation_targets.md, V1-V12)."""

from __future__ import annotations

import math

import numpy as np
from scipy.special import digamma, gammaln, polygamma


# V1: 1-D Gaussian refit on M samples per generation, replace, truth N(0, 1).
def gaussian_mle_variance_mean(m: int, g: int) -> float:
    return ((m - 1) / m) ** g


def gaussian_mle_variance_mean_se(m: int, g: int, runs: int) -> float:
    return ((m - 1) / m) ** g * math.sqrt(((1 + 2 / (m - 1)) ** g - 1) / runs)


def gaussian_log_variance_drift(m: int) -> float:
    """k_M = E[ln(s^2 / sigma^2)] per generation for the unbiased estimator."""
    return float(digamma((m - 1) / 2) + math.log(2 / (m - 1)))


def gaussian_log_variance_var(m: int, g: int) -> float:
    return g * float(polygamma(1, (m - 1) / 2))


def gaussian_mean_var(m: int, g: int) -> float:
    return g / m


def gaussian_w2_squared(m: int, g: int) -> float:
    c = math.sqrt(2 / (m - 1)) * math.exp(gammaln(m / 2) - gammaln((m - 1) / 2))
    return g / m + 2 * (1 - c**g)


# V2: a fresh real fraction a each generation, pooled refit.
def fresh_fraction_mean_var(m: int, a: float) -> float:
    """Stationary Var(mu) solved from V = (a + (1 - a) s) / (M a (2 - a)) with s = 1 + (1 - a) V."""
    # V * M a (2 - a) = a + (1 - a) (1 + (1 - a) V)  =>  V (M a (2 - a) - (1 - a)^2) = 1
    return 1 / (m * a * (2 - a) - (1 - a) ** 2)


# V4: linear regression, replace vs accumulate (Gerstgrasser et al.).
def regression_replace_error(sigma2: float, d: int, t: int, n: int) -> float:
    return sigma2 * d * n / (t - d - 1)


def regression_accumulate_error(sigma2: float, d: int, t: int, n: int) -> float:
    return sigma2 * d / (t - d - 1) * sum(1 / i**2 for i in range(1, n + 1))


# V5: categorical refit (Wright-Fisher).
def categorical_simpson(p: np.ndarray, n: int, m: int) -> float:
    s0 = float((p**2).sum())
    return 1 - (1 - 1 / n) ** m * (1 - s0)


def categorical_survivors(p: np.ndarray, n: int) -> float:
    return float((1 - (1 - p) ** n).sum())


# V7: tail model (Dohmatob et al., A Tale of Tails).
def unseen_mass(p: np.ndarray, t: float) -> float:
    """E(T) = sum_i p_i (1 - p_i)^T: the expected true mass of types never seen in T samples."""
    return float((p * np.exp(t * np.log1p(-p))).sum())


def tail_cut_plateau(p: np.ndarray, k: int) -> float:
    return float(p[k:].sum())


# V8: stability of retraining on a fixed real set plus lambda times as much synthetic data.
def stability_sufficient(lam: float, lipschitz_eps_over_alpha: float) -> bool:
    return lam * (1 + lipschitz_eps_over_alpha) < 1


# V9: a constant fraction p of biased synthetic labels.
def biased_synthetic_floor(p: float, delta: float, sigma2: float, d: int, n: int) -> float:
    return p**2 * delta**2 + sigma2 * d / (n - d - 1)


# V12: the infinite-sample fixed point of the fresh regime (categorical).
def fresh_fixed_point(truth: np.ndarray, rho: float, tau: float, tol: float = 1e-12, max_steps: int = 200_000) -> np.ndarray:
    """The stationary model of p -> (1 - rho) q + rho T_tau(p) with exact refits (no sampling noise).

    q is the truth and T_tau the temperature transform p^(1/tau) renormalised. The map contracts at
    rate rho, so iteration converges geometrically from the truth.
    """
    p = truth.copy()
    for _ in range(max_steps):
        logits = np.log(np.maximum(p, 1e-300)) / tau
        tempered = np.exp(logits - logits.max())
        nxt = (1 - rho) * truth + rho * tempered / tempered.sum()
        if np.abs(nxt - p).max() < tol:
            return nxt
        p = nxt
    return p


def fresh_fixed_point_tail_mass_ratio(truth: np.ndarray, tail: np.ndarray, rho: float, tau: float) -> float:
    """tail_mass_ratio of the V12 fixed point: its mass on the true tail over the truth's."""
    return float(fresh_fixed_point(truth, rho, tau)[tail].sum() / truth[tail].sum())


# V9 at finite n: the leading 1/n term of the biased-label error (derivation in the docstring).
def biased_synthetic_error_mean(p: float, delta: float, sigma2: float, d: int, n: int) -> float:
    """E||w - w*||^2 of OLS on n Gaussian rows, a share p labelled by w* + delta u, to order 1/n.

    w - w* = G^-1 G_s delta u + noise, with G = G_r + G_s the Gram matrices of the real and biased
    rows. E[G^-1 G_s] = p I exactly (every row contributes alike), and the fluctuation of G^-1 G_s u
    about p u has E||.||^2 = p (1 - p) (d + 1) / n + O(n^-2) (Wishart entries: variance 2 on the
    diagonal, 1 off it). So the floor p^2 delta^2 is approached from above at rate 1/n.
    """
    return biased_synthetic_floor(p, delta, sigma2, d, n) + p * (1 - p) * (d + 1) * delta**2 / n


# V10: a temperature tau on the synthetic draws of a Gaussian refit, truth N(0, 1), large M.
def fresh_biased_variance(rho: float, tau: float) -> float:
    """Stationary variance of s_{t+1} = (1 - rho) + rho tau^2 s_t (share rho synthetic, fresh real
    otherwise); infinite when rho tau^2 >= 1."""
    return (1 - rho) / (1 - rho * tau**2) if rho * tau**2 < 1 else math.inf


def fresh_biased_variance_path(rho: float, tau: float, g: int) -> float:
    """The same recursion's variance at generation g, from the real-data fit s_1 = 1."""
    s = 1.0
    for _ in range(g - 1):
        s = (1 - rho) + rho * tau**2 * s
    return s


def fixed_pool_biased_variance(lam: float, tau: float) -> float:
    """Stationary variance of s_{t+1} = (1 + lam tau^2 s_t) / (1 + lam) (a fixed real pool plus lam
    times as many synthetic samples); infinite when lam (tau^2 - 1) >= 1."""
    return 1 / (1 - lam * (tau**2 - 1)) if lam * (tau**2 - 1) < 1 else math.inf


def fixed_pool_biased_variance_path(lam: float, tau: float, g: int) -> float:
    """The same recursion's variance at generation g, from the real-data fit s_1 = 1."""
    s = 1.0
    for _ in range(g - 1):
        s = (1 + lam * tau**2 * s) / (1 + lam)
    return s

"""The continuous families against closed-form theory: validation targets V1-V4, V8-V10 (../shared/data/validation_targets.md),
at parameter values of our own choosing and R replicates sized for a few seconds each."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from simulations import theory
from simulations.cells import Cell
from simulations.families import gaussian, linear_regression

CPU = torch.device("cpu")


def gaussian_runs(cells, generations, runs, seed, **params):
    return gaussian.simulate(cells, generations, runs, CPU, seed, **params)


def cell(regime="replace", ratio=1.0, real=10, samples=0, family="gaussian", control="temperature", value=1.0):
    return Cell(family, regime, ratio, control, value, real, samples=samples)


def within(observed: float, predicted: float, se: float, k: float = 3.0) -> bool:
    return abs(observed - predicted) <= k * se


def test_v1_mle_variance_shrinks_geometrically():
    m, g, runs = 20, 15, 4000
    (run,) = gaussian_runs([cell(real=m)], g, runs, seed=1)
    observed = run["variance"][:, g].mean().item()
    assert within(observed, theory.gaussian_mle_variance_mean(m, g), theory.gaussian_mle_variance_mean_se(m, g, runs))


def test_v1_unbiased_variance_collapses_in_log_and_median_not_mean():
    # The mean of sigma^2 stays 1 while runs collapse; the log and the median show it.
    m, g, runs = 12, 40, 4000
    (run,) = gaussian_runs([cell(real=m)], g, runs, seed=2, estimator="unbiased")
    log_var = run["variance"][:, g].log()
    drift = g * theory.gaussian_log_variance_drift(m)
    sd = math.sqrt(theory.gaussian_log_variance_var(m, g))
    assert within(log_var.mean().item(), drift, sd / math.sqrt(runs))
    assert within(log_var.median().item(), drift, 1.2533 * sd / math.sqrt(runs), k=4)
    assert run["variance"][:, g].median().item() < 0.1  # collapsed, although E[sigma^2] = 1


def test_v1_mean_is_a_random_walk_and_w2_grows():
    # With the unbiased estimator E[sigma_g^2] = 1, so the mean's steps have variance 1/M.
    m, g, runs = 50, 60, 4000
    (run,) = gaussian_runs([cell(real=m)], g, runs, seed=3, estimator="unbiased")
    var_mu = run["mean"][:, g].var().item()
    assert within(var_mu, theory.gaussian_mean_var(m, g), var_mu * math.sqrt(2 / (runs - 1)))
    w2 = run["w2"][:, 10]
    assert within(w2.mean().item(), theory.gaussian_w2_squared(m, 10), w2.std().item() / math.sqrt(runs))


@pytest.mark.parametrize("fresh", [0.1, 0.3])
def test_v2_fresh_real_fraction_prevents_collapse(fresh):
    m, g, runs = 100, 100, 1000
    cells = [cell("fresh", 1 - fresh, real=round(fresh * m), samples=m), cell(real=m)]
    mixed, replace = gaussian_runs(cells, g, runs, seed=4, estimator="unbiased")
    var_mu = mixed["mean"][:, g].var().item()
    predicted = theory.fresh_fraction_mean_var(m, fresh)
    assert within(var_mu, predicted, predicted * math.sqrt(2 / (runs - 1)))
    assert mixed["variance"][:, g].median().item() > 0.9
    assert replace["variance"][:, g].median().item() < 0.5


def test_v3_accumulate_and_fixed_real_pool_do_not_collapse():
    m, g, runs = 100, 80, 600
    cells = [cell("accumulate", 1.0, real=m), cell("fixed_real", 0.5, real=m), cell(real=m)]
    accumulate, fixed_pool, replace = gaussian_runs(cells, g, runs, seed=5, estimator="unbiased")
    assert accumulate["variance"][:, g].median().item() > 0.9
    assert fixed_pool["variance"][:, g].median().item() > 0.9
    assert replace["variance"][:, g].median().item() < 0.6


def test_v4_regression_replace_linear_accumulate_bounded():
    d, t, n, runs = 8, 40, 8, 4000
    cells = [cell("replace", real=t, family="linear_regression"), cell("accumulate", real=t, family="linear_regression")]
    replace, accumulate = linear_regression.simulate(cells, n, runs, CPU, 6, dim=d, reuse_design=True)
    for run, predicted in ((replace, theory.regression_replace_error(1, d, t, n)),
                           (accumulate, theory.regression_accumulate_error(1, d, t, n))):
        err = run["test_loss"][:, n]
        se = err.std().item() / math.sqrt(runs)
        assert abs(err.mean().item() - predicted) <= max(3 * se, 0.02 * predicted)
    assert replace["test_loss"][:, n].mean() > 4 * accumulate["test_loss"][:, n].mean()
    # A fresh design per block (statistics drawn as Wishart blocks): replace is still linear in n,
    # accumulate comes out slightly below the same-design value.
    replace, accumulate = linear_regression.simulate(cells, n, runs, CPU, 16, dim=d)
    err = replace["test_loss"][:, n]
    assert within(err.mean().item(), theory.regression_replace_error(1, d, t, n), err.std().item() / math.sqrt(runs))
    err = accumulate["test_loss"][:, n]
    assert 0.8 * theory.regression_accumulate_error(1, d, t, n) < err.mean().item() < theory.regression_accumulate_error(1, d, t, n)


def test_v8_fixed_real_pool_with_synthetic_is_stable():
    # Sufficient condition lambda (1 + L eps / alpha) < 1: lambda = 0.5 is inside it. lambda = 2 is
    # outside, and a stable run there does not refute a sufficient condition.
    m, g, runs = 100, 60, 500
    cells = [cell("fixed_real", 1 / 3, real=m), cell("fixed_real", 2 / 3, real=m)]
    assert theory.stability_sufficient(0.5, 0.5) and not theory.stability_sufficient(2.0, 0.5)
    for run in gaussian_runs(cells, g, runs, seed=9, estimator="unbiased"):
        final = run["variance"][:, g]
        assert 0.85 < final.median().item() < 1.15
        assert run["kl"][:, g].median().item() < 0.05


def test_v9_biased_synthetic_fraction_leaves_an_error_floor():
    d, n, runs = 10, 5000, 40
    for fraction, delta in ((0.1, 1.0), (0.2, 0.5), (0.1, 0.0)):
        err = linear_regression.biased_synthetic_error(n, d, fraction, delta, 1.0, runs, CPU, seed=10)
        predicted = theory.biased_synthetic_floor(fraction, delta, 1.0, d, n)
        assert within(err.mean().item(), predicted, err.std().item() / math.sqrt(runs))
    # The floor does not vanish with more data.
    bigger = linear_regression.biased_synthetic_error(4 * n, d, 0.1, 1.0, 1.0, runs, CPU, seed=11)
    assert bigger.mean().item() > 0.9 * 0.1**2

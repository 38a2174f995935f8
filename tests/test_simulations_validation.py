"""The lab against closed-form theory: validation targets V1-V9 (../shared/data/validation_targets.md),
at parameter values of our own choosing and R replicates sized for a few seconds each."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from simulations import theory
from simulations.cells import Cell
from simulations.diversity import temperature, top_k, top_p
from simulations.families import categorical, gaussian, linear_regression
from simulations.metrics import entropy

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


def test_v5_categorical_wright_fisher():
    vocab, beta, n, runs = 500, 1.2, 400, 300
    (run,) = categorical.simulate([cell(real=n, family="categorical")], 15, runs, CPU, 7, vocab=vocab, beta=beta)
    p = categorical.zipf(vocab, beta, CPU).numpy()
    survivors = run["types_kept"][:, 1]
    assert within(survivors.mean().item(), theory.categorical_survivors(p, n), survivors.std().item() / math.sqrt(runs))
    simpson = 1 - run["gini_simpson"][:, 15]
    assert within(simpson.mean().item(), theory.categorical_simpson(p, n, 15), simpson.std().item() / math.sqrt(runs))
    # Zero-count types are absorbing: the support never grows under replace.
    assert bool((run["types_kept"][:, 2:] <= run["types_kept"][:, 1:-1]).all())


def test_v6_top_p_keeps_about_p_to_the_g_and_temperature_rescales_the_exponent():
    truth = categorical.zipf(10_000, 1.0, CPU)
    p = truth.unsqueeze(0)
    kept_types = []
    for _ in range(10):
        p = top_p(p, torch.tensor([0.9], dtype=torch.float64))
        kept_types.append(int((p > 0).sum()))
    assert kept_types[0] == 3758 and kept_types[9] == 17  # the listed reference values
    assert abs((truth * (p[0] > 0)).sum().item() - 0.9**10) < 0.01
    # Another truth: V = 3000, beta = 1.3, p = 0.8 over 4 rounds. Each round keeps a share in
    # [p, p + the largest type it drops], and the original mass kept is the product of the shares.
    truth = categorical.zipf(3000, 1.3, CPU)
    q = truth.unsqueeze(0)
    product = 1.0
    for _ in range(4):
        nxt = top_p(q, torch.tensor([0.8], dtype=torch.float64))
        share = (q * (nxt > 0)).sum().item()
        assert 0.8 <= share <= 0.8 + (q * (nxt == 0)).max().item()
        product *= share
        q = nxt
    assert abs((truth * (q[0] > 0)).sum().item() - product) < 1e-12
    assert product >= 0.8**4
    # Temperature tau for g rounds turns exponent beta into beta / tau^g.
    base = categorical.zipf(2000, 0.8, CPU).unsqueeze(0)
    tempered = base
    for _ in range(4):
        tempered = temperature(tempered, torch.tensor([0.85], dtype=torch.float64))
    ranks = torch.arange(1, 2001, dtype=torch.float64)
    slope = np.polyfit(ranks.log().numpy(), tempered[0].log().numpy(), 1)[0]
    assert abs(-slope - 0.8 / 0.85**4) < 1e-6
    assert abs(entropy(tempered).item() - entropy(categorical.zipf(2000, 0.8 / 0.85**4, CPU)).item()) < 1e-9


def test_v7_only_the_absolute_amount_of_real_data_reaches_the_tail():
    beta, vocab, runs = 1.5, 100_000, 12
    truth = categorical.zipf(vocab, beta, CPU)
    p = truth.numpy()
    gen = torch.Generator().manual_seed(8)
    rows = truth.expand(runs, vocab).contiguous()

    def unseen(counts):
        return (rows * (counts == 0)).sum(-1)

    for t in (1_000, 10_000):
        missing = unseen(categorical.sample_counts(rows, torch.full((runs,), t), gen))
        assert within(missing.mean().item(), theory.unseen_mass(p, t), missing.std().item() / math.sqrt(runs) + 1e-4)
    # Scaling T^-(1 - 1/beta) of the clean error, on a larger vocabulary.
    big = categorical.zipf(1_000_000, beta, CPU).numpy()
    slope = np.log(theory.unseen_mass(big, 1e5) / theory.unseen_mass(big, 1e4)) / np.log(10)
    assert abs(slope + (1 - 1 / beta)) <= 0.03
    # A tail cut at rank k: the unseen mass plateaus at the mass beyond k.
    k, t = 100, 20_000
    cut = top_k(rows, torch.full((runs,), float(k)))
    missing = unseen(categorical.sample_counts(cut, torch.full((runs,), t), gen))
    assert abs(missing.mean().item() - theory.tail_cut_plateau(p, k)) < 0.002
    # A real fraction pi of T: the unseen mass follows the real count pi T, not the ratio.
    pi = 0.05
    mixed = categorical.sample_counts(rows, torch.full((runs,), round(pi * t)), gen) + categorical.sample_counts(
        cut, torch.full((runs,), t - round(pi * t)), gen)
    missing = unseen(mixed)
    assert abs(missing.mean().item() - theory.unseen_mass(p[k:], pi * t)) < 0.01
    # ... and the total count T (of which 95 % synthetic) does not reach the tail.
    assert missing.mean().item() <= theory.unseen_mass(p, pi * t)
    assert missing.mean().item() > 1.5 * theory.unseen_mass(p, t)


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

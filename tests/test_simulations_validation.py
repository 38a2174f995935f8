"""The continuous families against closed-form theory: validation targets V1-V4, V8-V10 and a
Shumailov-style mixture refit (../shared/data/validation_targets.md), at parameter values of our own
choosing and R replicates sized for a few seconds each. Where a plausible wrong formula exists, the
test also checks that the simulation rejects it, so a test cannot pass by being vacuous."""

from __future__ import annotations

import math

import pytest
import torch

from simulations import theory
from simulations.cells import Cell
from simulations.families import gaussian, gaussian_mixture, linear_regression
from simulations.metrics import density_metrics

CPU = torch.device("cpu")


def gaussian_runs(cells, generations, runs, seed, **params):
    return gaussian.simulate(cells, generations, runs, CPU, seed, **params)


def cell(regime="replace", ratio=1.0, real=10, samples=0, family="gaussian", control="temperature", value=1.0):
    return Cell(family, regime, ratio, control, value, real, samples=samples)


def within(observed: float, predicted: float, se: float, k: float = 3.0) -> bool:
    return abs(observed - predicted) <= k * se


def median_at(run: dict[str, torch.Tensor], name: str, g: int) -> float:
    return run[name][:, g].median().item()


def test_gaussian_closed_form_metrics_are_the_density_metrics_integrals():
    # One meaning per name: the Gaussian's closed forms equal metrics.density_metrics on a fine
    # midpoint grid, for a sharp, a wide, a shifted and an almost-true marginal.
    m = torch.tensor([0.0, 0.4, -1.5, 0.1, 1e-6], dtype=torch.float64)
    s = torch.tensor([1.0, 0.45, 1.3, 2.2, 1.0 + 1e-7], dtype=torch.float64)
    closed = gaussian._metrics(m.unsqueeze(-1), (s**2)[:, None, None], 2.0)
    dx = 0.004
    x = -16 + dx * (torch.arange(8000, dtype=torch.float64) + 0.5)  # +-2 fall on cell edges
    log_normal = lambda mu, sd: -0.5 * ((x - mu) / sd) ** 2 - sd.log() - 0.5 * math.log(2 * math.pi)
    grid = density_metrics(log_normal(m.unsqueeze(-1), s.unsqueeze(-1)), log_normal(torch.tensor(0.0), torch.tensor(1.0)), x.abs() > 2, dx)
    for name, value in grid.items():
        assert torch.allclose(closed[name], value, rtol=1e-3, atol=1e-5), name
    assert closed["tail_mass_ratio"][1] < 0.2 and closed["tail_coverage"][1] < 0.2 and closed["tail_coverage"][3] > 0.99
    # d = 3: the KLs are those of the full Gaussians, the tail metrics those of coordinate 0.
    cov = torch.diag(torch.tensor([1.0, 0.25, 4.0], dtype=torch.float64)).unsqueeze(0)
    full = gaussian._metrics(torch.zeros(1, 3, dtype=torch.float64), cov, 2.0)
    assert full["forward_kl"].item() == pytest.approx(0.5 * (4 + 0.25 - 2 + math.log(0.25 * 4)))
    assert full["reverse_kl"].item() == pytest.approx(0.5 * (0.25 + 4 - 2 - math.log(0.25 * 4)))
    assert full["tail_mass_ratio"].item() == pytest.approx(1.0) and full["tv"].item() == pytest.approx(0.0, abs=1e-12)


def test_real_data_are_common_random_numbers_across_cells():
    # Cells with the same real amount train generation 1 on the same real samples, so their
    # generation-1 metrics are bit-identical per seed, whatever else the batch holds.
    gaussian_cells = [cell("fresh", 0.5, real=40), cell("fixed_real", 0.8, real=40), cell(real=40), cell("fresh", 0.3, real=70)]
    for with_points in (False, True):  # an accumulate_subsample cell switches real data to points
        cells = gaussian_cells + ([cell("accumulate_subsample", 0.5, real=40)] if with_points else [])
        runs = gaussian_runs(cells, 2, 16, seed=21, dim=2)
        for run in runs[1:3] + runs[4:]:
            for name in ("forward_kl", "tail_mass_ratio", "variance"):
                assert torch.equal(run[name][:, 1], runs[0][name][:, 1]), name
        assert runs[0]["variance"][:, 1].unique().numel() == 16  # ... and differ across seeds
        assert not torch.equal(runs[3]["variance"][:, 1], runs[0]["variance"][:, 1])  # 70 real samples
        assert not torch.equal(runs[0]["variance"][:, 2], runs[1]["variance"][:, 2])  # then the regimes differ
    for reuse_design in (False, True):
        cells = [cell("fresh", r, real=30, family="linear_regression") for r in (0.2, 0.7)] + [cell("accumulate", 1.0, real=30, family="linear_regression")]
        runs = linear_regression.simulate(cells, 2, 16, CPU, 22, dim=4, reuse_design=reuse_design)
        assert all(torch.equal(run["test_loss"][:, 1], runs[0]["test_loss"][:, 1]) for run in runs)
    cells = [cell(r, rho, real=60, family="gaussian_mixture") for r, rho in (("replace", 1.0), ("fresh", 0.6), ("fixed_real", 0.5))]
    runs = gaussian_mixture.simulate(cells, 1, 8, CPU, 23)
    for name in ("test_loss", "forward_kl", "tail_mass_ratio"):
        assert all(torch.equal(run[name][:, 1], runs[0][name][:, 1]) for run in runs), name


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
    # The collapse shows in the tail metrics (a narrow model under-weights |x| > 2) but the mean of
    # the two-sided ratio is dominated by the few runs that widened: use medians.
    assert median_at(run, "tail_mass_ratio", g) < 0.01 and median_at(run, "tail_coverage", g) < 0.05
    # The mode-seeking reverse KL barely registers the collapse that the forward KL punishes.
    assert median_at(run, "forward_kl", g) > 10 * median_at(run, "reverse_kl", g)


def test_v1_mean_is_a_random_walk_and_w2_grows():
    # With the unbiased estimator E[sigma_g^2] = 1, so the mean's steps have variance 1/M.
    m, g, runs = 50, 60, 3000
    (run,) = gaussian_runs([cell(real=m)], g, runs, seed=3, estimator="unbiased")
    mu = run["mean"][:, g]
    # mu_g is a scale mixture (its step sizes follow the random sigma_t), so its kurtosis is well
    # above 3 and the Gaussian SE of a sample variance, var sqrt(2 / (R - 1)), is 2-3x too small:
    # use the empirical SE of the squared deviations.
    squares = (mu - mu.mean()) ** 2
    assert within(mu.var().item(), theory.gaussian_mean_var(m, g), squares.std().item() / math.sqrt(runs))
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


def test_v4_regression_replace_grows_linearly_accumulate_stays_bounded():
    d, t, n, runs = 6, 30, 50, 3000
    cells = [cell("replace", real=t, family="linear_regression"), cell("accumulate", real=t, family="linear_regression")]
    replace, accumulate = linear_regression.simulate(cells, n, runs, CPU, 6, dim=d, reuse_design=True)
    base = theory.regression_replace_error(1, d, t, 1)
    bound = math.pi**2 / 6 * base
    for g in (1, 5, 20, 50):
        for run, predicted in ((replace, theory.regression_replace_error(1, d, t, g)),
                               (accumulate, theory.regression_accumulate_error(1, d, t, g))):
            err = run["test_loss"][:, g]
            assert abs(err.mean().item() - predicted) <= max(3 * err.std().item() / math.sqrt(runs), 0.02 * predicted), (g, predicted)
    means = accumulate["test_loss"].mean(0)
    assert (means[1:] <= bound * 1.04).all() and means[n].item() > 0.95 * bound
    assert means[n].item() - means[25].item() < 0.05 * bound  # bounded: the last 25 rounds add ~1/25 of the base
    # Replace's growth is linear: slope base per round, so at n = 50 it is ~50 / 1.64 times accumulate's.
    slope = (replace["test_loss"][:, n].mean() - replace["test_loss"][:, 25].mean()).item() / 25
    assert slope == pytest.approx(base, rel=0.08)
    assert replace["test_loss"][:, n].mean() > 20 * means[n]
    # A fresh design per block (statistics drawn as Wishart blocks): replace is still linear in n,
    # accumulate comes out slightly below the same-design value, and still bounded.
    replace, accumulate = linear_regression.simulate(cells, n, 1000, CPU, 16, dim=d)
    err = replace["test_loss"][:, n]
    assert within(err.mean().item(), theory.regression_replace_error(1, d, t, n), err.std().item() / math.sqrt(1000))
    assert 0.85 * bound < accumulate["test_loss"][:, n].mean().item() < bound
    # forward_kl is the predictive KL ||w - w*||^2 / (2 sigma^2).
    assert torch.allclose(accumulate["forward_kl"], accumulate["test_loss"] / 2)


def test_v8_fixed_real_pool_with_a_biased_generator():
    # Bertrand et al.'s setting with a generator error: synthetic draws at temperature tau = 1.1.
    # A fixed real pool plus lam times as much synthetic data is stable iff lam (tau^2 - 1) < 1, at
    # 1 / (1 - lam (tau^2 - 1)); at tau = 1 every lam would be stable, so tau = 1 cannot test V8.
    real, tau, runs = 1000, 1.1, 300
    lams = (0.5, 2.0, 9.0)  # lam (tau^2 - 1) = 0.105, 0.42 (stable), 1.89 (unstable)
    cells = [cell("fixed_real", lam / (1 + lam), real=real, value=tau) for lam in lams]
    g = 40  # >= 5 relaxation times 1 / (1 - lam tau^2 / (1 + lam)) (5.2 generations at lam = 2)
    stable_small, stable_large, unstable = gaussian_runs(cells, g, runs, seed=9)
    for run, lam in ((stable_small, 0.5), (stable_large, 2.0)):
        predicted = theory.fixed_pool_biased_variance(lam, tau)
        assert median_at(run, "variance", g) == pytest.approx(predicted, rel=0.03)
        assert median_at(run, "variance", g) == pytest.approx(median_at(run, "variance", g - 10), rel=0.03)  # stationary
    # The unbiased sampler's prediction (variance 1 at every lam) is rejected at both.
    assert median_at(stable_small, "variance", g) > 1.06 and median_at(stable_large, "variance", g) > 1.5
    # Past the boundary the variance grows geometrically, at the rate the recursion predicts.
    assert theory.fixed_pool_biased_variance(9.0, tau) == math.inf
    assert median_at(unstable, "variance", g) > 10 * median_at(unstable, "variance", 10)
    assert median_at(unstable, "variance", g) == pytest.approx(theory.fixed_pool_biased_variance_path(9.0, tau, g), rel=0.1)


def test_v9_biased_labels_leave_an_error_floor_across_n():
    d, runs = 12, 4000
    sizes = (1_000, 10_000, 100_000)
    for p, delta in ((0.05, 2.0), (0.01, 5.0)):
        floor = p**2 * delta**2
        errors = []
        for n in sizes:
            err = linear_regression.biased_synthetic_error(n, d, p, delta, 1.0, runs, CPU, seed=n)
            se = err.std().item() / math.sqrt(runs)
            errors.append(err.mean().item())
            # The finite-n mean (leading 1/n term included) at every n ...
            assert within(errors[-1], theory.biased_synthetic_error_mean(p, delta, 1.0, d, n), se)
            # ... and never below the floor: with more data it does not vanish.
            assert errors[-1] > floor
        limit = [theory.biased_synthetic_floor(p, delta, 1.0, d, n) for n in sizes]
        gaps = [e / lim - 1 for e, lim in zip(errors, limit)]
        # The excess over p^2 Delta^2 + sigma^2 d / (n - d - 1) shrinks like 1/n.
        assert gaps[0] > gaps[1] > gaps[2] and abs(gaps[2]) < min(0.02, 0.2 * gaps[0])
        assert errors[2] < 1.2 * floor + 1.2 * d / sizes[2]
        # A wrong floor (p Delta^2 instead of p^2 Delta^2) and no floor at all are both rejected at n = 10^5.
        assert errors[2] < 0.5 * p * delta**2 and errors[2] > 2 * d / sizes[2]
    # Unbiased synthetic labels (Delta = 0): no floor, the error keeps falling as sigma^2 d / (n - d - 1).
    clean = []
    for n in sizes:
        err = linear_regression.biased_synthetic_error(n, d, 0.05, 0.0, 1.0, runs, CPU, seed=n + 1)
        clean.append(err.mean().item())
        assert within(clean[-1], theory.biased_synthetic_floor(0.05, 0.0, 1.0, d, n), err.std().item() / math.sqrt(runs))
    assert clean[0] / clean[2] == pytest.approx(100, rel=0.1)


@pytest.mark.parametrize("rho,tau", [(0.6, 1.15), (0.5, 0.8), (0.3, 1.3)])
def test_v10a_fresh_share_with_a_biased_sampler_has_a_stationary_variance(rho, tau):
    # Share rho synthetic drawn at temperature tau, 1 - rho fresh real: the variance settles at
    # (1 - rho) / (1 - rho tau^2) after about 1 / (1 - rho tau^2) generations (4.8 at most here).
    m, runs = 1000, 300
    g = math.ceil(5 / (1 - rho * tau**2)) + 5
    (run,) = gaussian_runs([cell("fresh", rho, real=round((1 - rho) * m), samples=m, value=tau)], g, runs, seed=31)
    predicted = theory.fresh_biased_variance(rho, tau)
    observed = median_at(run, "variance", g)
    assert observed == pytest.approx(predicted, rel=0.03)
    # Wrong formulas are rejected: the unbiased sampler's 1, and rho tau in place of rho tau^2.
    assert abs(observed - 1) > 0.2 and abs(observed - (1 - rho) / (1 - rho * tau)) > 0.06 * predicted


@pytest.mark.parametrize("lam,tau", [(1.0, 1.2), (2.0, 0.8)])
def test_v10b_fixed_pool_with_a_biased_sampler_has_a_stationary_variance(lam, tau):
    real, runs = 1000, 300
    g = 30  # relaxation 1 / (1 - lam tau^2 / (1 + lam)): 3.6 and 1.7 generations
    (run,) = gaussian_runs([cell("fixed_real", lam / (1 + lam), real=real, value=tau)], g, runs, seed=32)
    predicted = theory.fixed_pool_biased_variance(lam, tau)
    observed = median_at(run, "variance", g)
    assert observed == pytest.approx(predicted, rel=0.03)
    assert abs(observed - 1) > 0.3 and abs(observed - 1 / (1 - lam * (tau - 1))) > 0.1 * predicted
    # A sharpened sampler (tau < 1) shrinks the model: it keeps under 1/2 the true mass beyond |x| > 2.
    if tau < 1:
        assert median_at(run, "tail_mass_ratio", g) < 0.5


def test_v10c_variance_diverges_past_the_boundary():
    m, real, runs, g = 1000, 1000, 200, 30
    cells = [cell("fresh", 0.75, real=round(0.25 * m), samples=m, value=1.2),  # rho tau^2 = 1.08
             cell("fresh", 0.64, real=round(0.36 * m), samples=m, value=1.25),  # rho tau^2 = 1: linear growth
             cell("fixed_real", 0.8, real=real, value=1.25)]  # lam = 4: lam (tau^2 - 1) = 2.25
    fresh_over, fresh_boundary, pool_over = gaussian_runs(cells, g, runs, seed=33)
    largest_stable = max(theory.fresh_biased_variance(0.6, 1.15), theory.fixed_pool_biased_variance(1.0, 1.2))
    paths = (theory.fresh_biased_variance_path(0.75, 1.2, g), theory.fresh_biased_variance_path(0.64, 1.25, g),
             theory.fixed_pool_biased_variance_path(4.0, 1.25, g))
    for run, path in zip((fresh_over, fresh_boundary, pool_over), paths):
        assert median_at(run, "variance", g) > 3 * largest_stable
        assert median_at(run, "variance", g) == pytest.approx(path, rel=0.1)
    # Past the boundary the growth is geometric; at rho tau^2 = 1 exactly it is linear, (1 - rho)
    # per generation.
    for run in (fresh_over, pool_over):
        assert median_at(run, "variance", g) > 3 * median_at(run, "variance", g // 2)
    growth = (median_at(fresh_boundary, "variance", g) - median_at(fresh_boundary, "variance", 10)) / (g - 10)
    assert growth == pytest.approx(0.36, rel=0.1)
    # An exploded model over-weights the tail: the two-sided ratio is far above 1 and |log| large.
    assert median_at(pool_over, "tail_mass_ratio", g) > 15 and median_at(pool_over, "tail_mass_abs_log_ratio", g) > 2.5


def test_mixture_em_starts_from_the_data_not_the_truth():
    gen = torch.Generator().manual_seed(41)
    # A mixture the family never uses: the fit sees only points, and recovers it from a large sample.
    weights, means, sd = torch.tensor([0.5, 0.3, 0.2]), torch.tensor([-4.0, 1.0, 5.0]), 0.8
    rows, n = 16, 3000
    component = torch.multinomial(weights.expand(rows, 3), n, replacement=True, generator=gen)
    x = means[component].double() + sd * torch.randn(rows, n, generator=gen, dtype=torch.float64)
    used = torch.ones_like(x, dtype=torch.bool)
    w, m, s = gaussian_mixture.fit_mixture(x, used, torch.rand(rows, 4, 3, generator=gen, dtype=torch.float64))
    order = m.argsort(-1)
    assert torch.allclose(m.gather(1, order), means.double().expand(rows, 3), atol=0.15)
    assert torch.allclose(w.gather(1, order), weights.double().expand(rows, 3), atol=0.03)
    assert torch.allclose(s, torch.full_like(s, sd), atol=0.1)
    # On small samples the data-started fit is about as good as EM started at the truth (the lab's
    # old shortcut) on held-out data, but it is a different fit: it does not see the truth.
    rows, n = 64, 150
    truth = [torch.tensor(v, dtype=torch.float64).expand(rows, 3) for v in ((0.6, 0.35, 0.05), (-2.0, 2.0, 7.0), (1.0, 1.0, 1.0))]

    def sample(size):
        component = torch.multinomial(truth[0], size, replacement=True, generator=gen)
        return truth[1].gather(1, component) + torch.randn(rows, size, generator=gen, dtype=torch.float64)

    x, test = sample(n), sample(4000)
    used, test_used = torch.ones_like(x, dtype=torch.bool), torch.ones_like(test, dtype=torch.bool)
    from_data = gaussian_mixture.fit_mixture(x, used, torch.rand(rows, 4, 3, generator=gen, dtype=torch.float64))
    floor = gaussian_mixture.SD_FLOOR * x.std(-1)
    from_truth = gaussian_mixture._em(x, used, *truth, 30, floor)
    nll = [-gaussian_mixture._log_likelihood(test, test_used, *fit) / 4000 for fit in (from_data, from_truth)]
    gap = nll[0] - nll[1]
    assert gap.median().abs().item() < 0.01 and gap.abs().max().item() > 1e-4
    assert (gap.abs() > 1e-6).float().mean().item() > 0.1


def test_mixture_refit_on_its_own_samples_loses_the_rare_component():
    # Shumailov et al. (arXiv 2305.17493): refitting a mixture by EM on a small sample of the previous
    # fit's output loses the rare component and shrinks the variance over many generations. A fixed
    # pool of real data (lam = 1) keeps both.
    g, seeds, m = 40, 24, 100
    cells = [cell("replace", real=m, family="gaussian_mixture"), cell("fixed_real", 0.5, real=m, family="gaussian_mixture")]
    replace, fixed_pool = gaussian_mixture.simulate(cells, g, seeds, CPU, 42)
    true_variance = replace["variance"][0, 0].item()
    # Generation 1 is the same real fit in both cells (100 points, ~5 of them rare).
    first = median_at(replace, "tail_mass_ratio", 1)
    assert first > 0.6 and median_at(fixed_pool, "tail_mass_ratio", 1) == first
    assert median_at(replace, "tail_mass_ratio", g) < 0.1 * first and median_at(fixed_pool, "tail_mass_ratio", g) > 0.75 * first
    assert median_at(replace, "tail_coverage", g) < 0.1 and median_at(fixed_pool, "tail_coverage", g) > 0.9
    assert median_at(replace, "variance", g) < 0.7 * true_variance < 0.85 * true_variance < median_at(fixed_pool, "variance", g)
    assert median_at(replace, "forward_kl", g) > 1 and median_at(fixed_pool, "forward_kl", g) < 0.2
    assert median_at(replace, "test_loss", g) > median_at(fixed_pool, "test_loss", g) + 0.5
    # The fixed pool keeps the tail's probability weight near 1 on average as well.
    assert fixed_pool["tail_mass_ratio"][:, g].mean().item() == pytest.approx(1.0, abs=0.25)
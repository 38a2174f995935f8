"""The discrete families against closed-form theory: validation targets V5-V7, V11, V12
(../shared/data/validation_targets.md), at parameter values of our own choosing."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from simulations import theory
from simulations.cells import Cell
from simulations.diversity import temperature, top_k, top_p
from simulations.families import categorical
from simulations.metrics import entropy, tail_types
from simulations.sampling import sample_counts, zipf

CPU = torch.device("cpu")


def cell(regime="replace", ratio=1.0, real=10, samples=0, control="temperature", value=1.0):
    return Cell("categorical", regime, ratio, control, value, real, samples=samples)


def within(observed: float, predicted: float, se: float, k: float = 3.0) -> bool:
    return abs(observed - predicted) <= k * se


def test_v5_categorical_wright_fisher():
    vocab, beta, n, runs = 500, 1.2, 400, 300
    (run,) = categorical.simulate([cell(real=n)], 15, runs, CPU, 7, vocab=vocab, beta=beta)
    p = zipf(vocab, beta, CPU).numpy()
    survivors = run["types_kept"][:, 1]
    assert within(survivors.mean().item(), theory.categorical_survivors(p, n), survivors.std().item() / math.sqrt(runs))
    simpson = 1 - run["gini_simpson"][:, 15]
    assert within(simpson.mean().item(), theory.categorical_simpson(p, n, 15), simpson.std().item() / math.sqrt(runs))
    # Zero-count types are absorbing: the support never grows under replace.
    assert bool((run["types_kept"][:, 2:] <= run["types_kept"][:, 1:-1]).all())


def test_v6_top_p_keeps_about_p_to_the_g_and_temperature_rescales_the_exponent():
    truth = zipf(10_000, 1.0, CPU)
    p = truth.unsqueeze(0)
    kept_types = []
    for _ in range(10):
        p = top_p(p, torch.tensor([0.9], dtype=torch.float64))
        kept_types.append(int((p > 0).sum()))
    assert kept_types[0] == 3758 and kept_types[9] == 17  # the listed reference values
    assert abs((truth * (p[0] > 0)).sum().item() - 0.9**10) < 0.01
    # Another truth: V = 3000, beta = 1.3, p = 0.8 over 4 rounds. Each round keeps a share in
    # [p, p + the largest type it drops], and the original mass kept is the product of the shares.
    truth = zipf(3000, 1.3, CPU)
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
    base = zipf(2000, 0.8, CPU).unsqueeze(0)
    tempered = base
    for _ in range(4):
        tempered = temperature(tempered, torch.tensor([0.85], dtype=torch.float64))
    ranks = torch.arange(1, 2001, dtype=torch.float64)
    slope = np.polyfit(ranks.log().numpy(), tempered[0].log().numpy(), 1)[0]
    assert abs(-slope - 0.8 / 0.85**4) < 1e-6
    assert abs(entropy(tempered).item() - entropy(zipf(2000, 0.8 / 0.85**4, CPU)).item()) < 1e-9


def test_v7_only_the_absolute_amount_of_real_data_reaches_the_tail():
    beta, vocab, runs = 1.5, 100_000, 12
    truth = zipf(vocab, beta, CPU)
    p = truth.numpy()
    gen = torch.Generator().manual_seed(8)
    rows = truth.expand(runs, vocab).contiguous()

    def unseen(counts):
        return (rows * (counts == 0)).sum(-1)

    for t in (1_000, 10_000):
        missing = unseen(sample_counts(rows, torch.full((runs,), t), gen))
        assert within(missing.mean().item(), theory.unseen_mass(p, t), missing.std().item() / math.sqrt(runs) + 1e-4)
    # Scaling T^-(1 - 1/beta) of the clean error, on a larger vocabulary.
    big = zipf(1_000_000, beta, CPU).numpy()
    slope = np.log(theory.unseen_mass(big, 1e5) / theory.unseen_mass(big, 1e4)) / np.log(10)
    assert abs(slope + (1 - 1 / beta)) <= 0.03
    # A tail cut at rank k: the unseen mass plateaus at the mass beyond k.
    k, t = 100, 20_000
    cut = top_k(rows, torch.full((runs,), float(k)))
    missing = unseen(sample_counts(cut, torch.full((runs,), t), gen))
    assert abs(missing.mean().item() - theory.tail_cut_plateau(p, k)) < 0.002
    # A real fraction pi of T: the unseen mass follows the real count pi T, not the ratio.
    pi = 0.05
    mixed = sample_counts(rows, torch.full((runs,), round(pi * t)), gen) + sample_counts(
        cut, torch.full((runs,), t - round(pi * t)), gen)
    missing = unseen(mixed)
    assert abs(missing.mean().item() - theory.unseen_mass(p[k:], pi * t)) < 0.01
    # ... and the total count T (of which 95 % synthetic) does not reach the tail.
    assert missing.mean().item() <= theory.unseen_mass(p, pi * t)
    assert missing.mean().item() > 1.5 * theory.unseen_mass(p, t)


def test_v7_learning_curve_plateaus_on_synthetic_data_and_recovers_with_clean_data():
    """V7 through the lab: generation 1 is fit on T0 real samples (its support cuts the tail);
    generation 2 trains on M samples, a share rho of them drawn from generation 1."""
    vocab, beta, t0, runs = 20_000, 1.3, 2_000, 6
    p = zipf(vocab, beta, CPU).numpy()
    sizes = (2_000, 20_000, 200_000, 2_000_000)
    curve = [cell("fresh", rho, t0, samples=m) for rho in (1.0, 0.9) for m in sizes]
    # The real count (1 - rho) M = 20 000 held fixed while the synthetic count grows 0 -> 99x.
    fixed_real = [cell("fresh", rho, t0, samples=round(20_000 / (1 - rho))) for rho in (0.0, 0.5, 0.9, 0.99)]
    out = categorical.simulate(curve + fixed_real, 2, runs, CPU, 1, vocab=vocab, beta=beta)
    error = [run["unseen_mass"][:, 2] for run in out]
    plateau = theory.unseen_mass(p, t0)
    synthetic_only, mixed, at_fixed_real = error[:4], error[4:8], error[8:]
    # Synthetic data alone: the error stops at the generator's unseen mass however much is drawn.
    for e in synthetic_only[1:]:
        assert abs(e.mean().item() - plateau) < 0.01 * plateau + 3 * e.std().item() / math.sqrt(runs)
    assert synthetic_only[-1].mean().item() > 20 * theory.unseen_mass(p, sizes[-1])  # clean data would be far lower
    # Mixing in 10 % clean data recovers: the error follows the real count, E(T0 + 0.1 M).
    for m, e in zip(sizes[1:], mixed[1:]):
        assert abs(e.mean().item() - theory.unseen_mass(p, t0 + 0.1 * m)) < 0.03 * theory.unseen_mass(p, t0 + 0.1 * m)
    assert mixed[-1].mean().item() < 0.2 * plateau
    # Ratio and real count separately: at a fixed real count the share of synthetic data (0 -> 0.99)
    # leaves the error where the real count puts it.
    expected = theory.unseen_mass(p, t0 + 20_000)
    for e in at_fixed_real[1:]:
        assert abs(e.mean().item() - expected) < 0.03 * expected
    assert at_fixed_real[0].mean().item() == pytest.approx(theory.unseen_mass(p, 20_000), rel=0.03)  # real-only: no T0 pool


@pytest.mark.parametrize("rho", [0.5, 0.9])
def test_v12_large_samples_approach_the_infinite_sample_fixed_point(rho):
    """V12: with 10^4 real samples the fresh regime's stationary tail mass sits at the exact fixed
    point of p -> (1 - rho) q + rho T_tau(p), for a sharpening sampler; the unbiased one stays at 1."""
    vocab, beta, tail_share, tau, runs = 600, 1.2, 0.25, 0.85, 4
    generations = int(5 / (1 - rho)) + 6  # >= 5 relaxation times of the linear part
    cells = [cell("fresh", rho, 10_000, value=tau), cell("fresh", rho, 10_000, value=1.0), cell("fresh", rho, 100, value=tau)]
    biased, unbiased, small = categorical.simulate(cells, generations, runs, CPU, 2, vocab=vocab, beta=beta, tail_mass=tail_share)
    truth = zipf(vocab, beta, CPU)
    tail = tail_types(truth, tail_share).numpy()
    predicted = theory.fresh_fixed_point_tail_mass_ratio(truth.numpy(), tail, rho, tau)
    stationary = biased["tail_mass_ratio"][:, -5:].mean().item()
    assert stationary == pytest.approx(predicted, rel=0.05)
    assert abs(stationary - 1.0) > 10 * abs(stationary - predicted)  # the test separates tau = 0.85 from tau = 1
    assert unbiased["tail_mass_ratio"][:, -5:].mean().item() == pytest.approx(1.0, abs=0.03)
    # The finite-sample lab approaches the fixed point as R grows: 100 real samples sit further off.
    assert abs(small["tail_mass_ratio"][:, -5:].mean().item() - predicted) > 2 * abs(stationary - predicted)

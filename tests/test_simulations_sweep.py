"""The sweep: design, common random numbers, paired counterfactuals, the analysis and its result."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from pydantic import ValidationError

from simulations.analysis import CellRuns, SimAnalysis, _interpolated_crossing, analyse
from simulations.cells import Cell
from simulations.device import resolve_device
from simulations.diversity import apply_control, entropy
from simulations.families import categorical, gaussian, markov
from simulations.metrics import (
    SMOOTHING,
    density_metrics,
    discrete_metrics,
    tail_types,
    xlogy,
)
from simulations.sampling import RealStream, sample_counts, zipf
from simulations.sweep import GridOverride, SweepConfig, run_sweep

CPU = torch.device("cpu")


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    cache = tmp_path_factory.mktemp("cache")
    calls = []
    result = run_sweep(SweepConfig.budget("tiny", device="cpu"), cache_dir=cache, progress=lambda d, t: calls.append((d, t)))
    return result, cache, calls


def test_tiny_sweep_has_the_documented_json_shape(tiny):
    result, _, calls = tiny
    data = json.loads(json.dumps(result.model_dump(mode="json")))
    assert set(data) == {"config", "cells", "analysis"}
    generations = data["config"]["generations"]
    for cell in data["cells"]:
        for name in ("tail_mass_ratio", "tail_coverage", "tail_types_lost", "forward_kl", "tail_forward_kl", "reverse_kl"):
            for suffix in ("", "_se", "_median"):
                assert len(cell["metrics"][name + suffix]) == generations + 1
        assert cell["metrics"]["tail_mass_ratio"][0] == pytest.approx(1.0)  # entry 0 is the truth
        assert cell["metrics"]["forward_kl"][0] == pytest.approx(0.0, abs=1e-5)  # only the add-epsilon smoothing
        assert "tail_mass_kept" not in cell["metrics"] and "kl" not in cell["metrics"]
        if cell["ratio"] > 0:
            assert set(cell["counterfactuals"]) == {"same_real", "same_total"}
            same_real = cell["counterfactuals"]["same_real"]
            assert same_real["real_amount"] == cell["real_amount"]
            # Generation 1 is fit on the same real data as its counterfactual: the paired difference is exactly 0.
            assert same_real["difference"]["forward_kl"][1] == 0.0
        else:
            assert cell["counterfactuals"] == {}
    assert calls[-1][0] == calls[-1][1] == len(data["cells"])
    SimAnalysis.model_validate(data["analysis"])


def test_the_grid_holds_every_counterfactual_and_the_unbiased_sampler():
    cfg = SweepConfig(ratios=[0.5, 0.9], diversity=[0.8], real_amounts=[50], holds=["real", "total"], seeds=2)
    assert 1.0 in cfg.diversity  # the unbiased point is always in the grid
    cells = {c for c, _ in cfg.cells()}
    for cell, _ in cfg.design():
        if cell.ratio == 0:
            continue
        total = cell.samples or round(cell.real_amount / (1 - cell.ratio)) if cell.ratio < 1 else cell.real_amount
        regime = "fixed_real" if cell.regime == "replace" else cell.regime
        assert Cell("categorical", regime, 0.0, "temperature", 1.0, cell.real_amount) in cells
        assert Cell("categorical", regime, 0.0, "temperature", 1.0, max(total, cell.real_amount)) in cells


def test_real_data_are_common_random_numbers_nested_by_size():
    stream = RealStream(seeds=3, seed=5, device=CPU)
    truth = zipf(50, 1.1, CPU)
    draw = lambda k, g: (sample_counts(truth.expand(len(k), 50), k, g),)  # noqa: E731
    n = torch.tensor([10, 10, 10, 400, 400, 400, 10, 10, 10])  # three cells x three seeds
    (counts,) = stream.additive(2, n, draw)
    assert torch.equal(counts.sum(-1), n.double())
    assert torch.equal(counts[0:3], counts[6:9])  # same size, same seed index: the same data
    assert not torch.equal(counts[0], counts[1])  # different seed indices: different data
    assert bool((counts[3:6] >= counts[0:3]).all())  # the larger sample contains the smaller one
    (again,) = RealStream(3, 5, CPU).additive(2, n, draw)
    assert torch.equal(again, counts)
    (other,) = stream.additive(3, n, draw)
    assert not torch.equal(other, counts)  # a new generation draws new real data


def test_discrete_metrics_match_their_definitions():
    gen = torch.Generator().manual_seed(0)
    p = zipf(300, 1.1, CPU)
    tail = tail_types(p, 0.2)
    model = torch.rand(40, 300, generator=gen, dtype=torch.float64) ** 4
    model[model < 0.05] = 0
    model = model / model.sum(-1, keepdim=True)
    got = discrete_metrics(model, p, tail)
    smoothed = (1 - SMOOTHING) * model + SMOOTHING / 300
    log_ratio = xlogy(p, p) - xlogy(p.expand_as(model), smoothed)
    tail_mass = (p * tail).sum()
    expected = {
        "tail_mass_ratio": (model * tail).sum(-1) / tail_mass,
        "tail_coverage": (p * tail * (model >= 0.1 * p)).sum(-1) / tail_mass,
        "tail_types_lost": (tail & (model == 0)).sum(-1).double(),
        "forward_kl": log_ratio.sum(-1),
        "tail_forward_kl": (log_ratio * tail).sum(-1) / tail_mass,
        "reverse_kl": (xlogy(model, model) - xlogy(model, p.expand_as(model))).sum(-1),
        "entropy": entropy(model),
    }
    for name, value in expected.items():
        assert torch.allclose(got[name], value, atol=1e-12), name
    assert torch.allclose(got["tail_mass_abs_log_ratio"], got["tail_mass_ratio"].log().abs())
    truth = discrete_metrics(p.unsqueeze(0), p, tail)
    assert truth["tail_mass_ratio"].item() == pytest.approx(1.0) and truth["tail_coverage"].item() == pytest.approx(1.0)


def test_density_metrics_reproduce_gaussian_closed_forms():
    dx = 0.005
    x = -15 + dx * (torch.arange(6000, dtype=torch.float64) + 0.5)  # cell midpoints: +-2 fall on cell edges
    log_normal = lambda mu, sd: -0.5 * ((x - mu) / sd) ** 2 - np.log(sd) - 0.5 * np.log(2 * np.pi)  # noqa: E731
    log_p = log_normal(0.0, 1.0)
    log_q = torch.stack([log_normal(0.0, 1.0), log_normal(0.3, 0.5), log_normal(0.0, 2.0)])
    got = density_metrics(log_q, log_p, x.abs() > 2, dx)
    kl = lambda m1, s1, m2, s2: np.log(s2 / s1) + (s1**2 + (m1 - m2) ** 2) / (2 * s2**2) - 0.5  # noqa: E731
    assert got["forward_kl"].tolist() == pytest.approx([0.0, kl(0, 1, 0.3, 0.5), kl(0, 1, 0, 2)], abs=1e-6)
    assert got["reverse_kl"].tolist() == pytest.approx([0.0, kl(0.3, 0.5, 0, 1), kl(0, 2, 0, 1)], abs=1e-6)
    from math import erfc, sqrt
    tail = erfc(2 / sqrt(2))
    narrow = 0.5 * erfc((2 - 0.3) / 0.5 / sqrt(2)) + 0.5 * erfc((2 + 0.3) / 0.5 / sqrt(2))
    assert got["tail_mass_ratio"].tolist() == pytest.approx([1.0, narrow / tail, erfc(1 / sqrt(2)) / tail], rel=1e-4)
    assert got["tail_coverage"][0].item() == pytest.approx(1.0)
    assert got["tail_coverage"][1].item() < 0.2 < 0.99 < got["tail_coverage"][2].item()


@pytest.mark.parametrize("family,real", [("categorical", 300), ("markov", 60)])
@pytest.mark.parametrize("control,value", [("top_k", 1.0), ("temperature", 0.3)])
@pytest.mark.parametrize("regime", ["fresh", "accumulate", "fixed_real"])
def test_v11_a_degenerate_sampler_registers_damage_in_every_mixing_regime(regime, control, value, family, real):
    """V11: synthetic data with no tail must show as damage against the paired real-only model."""
    cells = [Cell(family, regime, 0.9, control, value, real), Cell(family, regime, 0.0, "temperature", 1.0, real),
             Cell(family, regime, 0.9, "temperature", 1.0, real)]
    simulate = categorical.simulate if family == "categorical" else markov.simulate
    degenerate, real_only, unbiased = simulate(cells, 12, 8, CPU, 3)
    last = lambda run, name: run[name][:, -1]  # noqa: E731
    assert (last(degenerate, "tail_mass_ratio") < 0.5 * last(real_only, "tail_mass_ratio")).all()
    assert (last(degenerate, "forward_kl") > last(real_only, "forward_kl") + 0.3).all()
    assert (last(degenerate, "tail_forward_kl") > last(real_only, "tail_forward_kl")).all()
    # The unbiased sampler keeps the tail's probability mass near the real-only value.
    assert abs(last(unbiased, "tail_mass_ratio").mean() / last(real_only, "tail_mass_ratio").mean() - 1) < 0.1


def test_crossing_is_interpolated_between_tested_shares():
    ratios = np.array([0.1, 0.3, 0.5, 0.9])
    assert _interpolated_crossing(ratios, np.array([1.0, 0.95, 0.85, 0.5]), 0.9) == ("crossed", pytest.approx(0.4))
    assert _interpolated_crossing(ratios, np.array([1.0, 1.0, 0.99, 0.98]), 0.9) == ("not_reached", None)
    assert _interpolated_crossing(ratios, np.array([0.8, 0.7, 0.6, 0.5]), 0.9) == ("crossed", pytest.approx(0.05))
    assert _interpolated_crossing(np.array([0.0, 0.5]), np.array([0.5, 0.4]), 0.9) == ("below_grid", None)


def _synthetic_runs(response, sizes=(100, 1000), seeds=40, generations=8, noise=0.02, seed=0):
    """CellRuns whose tail mass ratio is response(share, bias, size), relative to real-only cells at 1."""
    rng = np.random.default_rng(seed)
    runs = []
    for size in sizes:
        for share in (0.0, 0.2, 0.5, 0.9):
            for bias in ((1.0,) if share == 0 else (0.9, 1.0)):
                level = 1.0 if share == 0 else response(share, bias, size)
                values = level + noise * rng.standard_normal((seeds, generations + 1))
                values[:, 0] = 1.0
                metrics = {"tail_mass_ratio": values, "tail_coverage": values * (0.3 if size == 100 else 0.9),
                           "forward_kl": 1 - values}
                runs.append(CellRuns(Cell("categorical", "fixed_real", share, "temperature", bias, size), "real", metrics))
    return runs


def test_analysis_finds_a_planted_boundary_and_scale_invariance():
    runs = _synthetic_runs(lambda share, bias, size: 1.0 if bias == 1.0 else 1 - 0.4 * share)
    analysis = analyse(runs, generations=8, tolerance=0.1, seed=0)
    sharp = [b for b in analysis.boundaries if b.diversity == 0.9]
    # 1 - 0.4 share crosses 0.9 at share 0.25; linear interpolation between 0.2 and 0.5 is exact here.
    assert all(b.status == "crossed" and b.ratio == pytest.approx(0.25, abs=0.02) for b in sharp)
    assert all(b.band[0] <= b.ratio <= b.band[1] and b.band[1] - b.band[0] < 0.1 for b in sharp)
    assert all(b.status == "not_reached" for b in analysis.boundaries if b.diversity == 1.0)
    scale = {t.metric: t for t in analysis.scale}
    assert scale["relative_tail_mass"].invariant == scale["relative_tail_mass"].comparisons
    assert scale["tail_coverage"].not_invariant == scale["tail_coverage"].comparisons
    assert "fixed_real" in analysis.result and "R = 100, 1000" in analysis.result
    assert "0.25" in analysis.result and "unbiased" in analysis.result


def test_analysis_registers_a_boundary_that_moves_with_scale():
    runs = _synthetic_runs(lambda share, bias, size: 1 - (0.6 if size == 1000 else 0.1) * share if bias < 1 else 1.0)
    analysis = analyse(runs, generations=8, tolerance=0.1, seed=0)
    scale = {t.metric: t for t in analysis.scale}["relative_tail_mass"]
    assert scale.not_invariant >= 2  # shares 0.5 and 0.9 at the sharpened bias differ by > 0.1 between sizes
    crossed = {b.size: b.status for b in analysis.boundaries if b.diversity == 0.9}
    assert crossed == {100: "not_reached", 1000: "crossed"}


def test_the_result_does_not_depend_on_config_order(tiny):
    result = tiny[0]
    reordered = result.config.model_copy(update={"regimes": list(reversed(result.config.regimes)),
                                                 "diversity": list(reversed(result.config.diversity))})
    again = run_sweep(SweepConfig.model_validate(reordered.model_dump()))
    assert again.analysis.result == result.analysis.result


def test_cache_reuses_the_result_for_the_same_config(tiny):
    result, cache, _ = tiny
    assert len(list(cache.glob("sweep-*.json"))) == 1
    again = run_sweep(SweepConfig.budget("tiny", device="cpu"), cache_dir=cache)
    assert again.model_dump() == result.model_dump()
    assert SweepConfig.budget("tiny", seed=1, device="cpu").digest() != result.config.digest()


def test_budgets_span_the_design():
    for name in ("tiny", "small", "full"):
        cfg = SweepConfig.budget(name)
        assert "categorical" in cfg.families and cfg.diversity_control == "temperature"
        assert {"fresh", "fixed_real"} <= set(cfg.regimes)
        assert 0.0 in cfg.ratios and max(cfg.ratios) >= 0.99  # real-only and S/R = 99
        assert 1.0 in cfg.diversity and min(cfg.diversity) < 1.0  # the unbiased point and a sharpening one
        assert len(cfg.real_amounts) >= 2  # the scale test needs two real counts
    full = SweepConfig.budget("full")
    assert {"categorical", "markov", "gaussian", "gaussian_mixture", "neural_lm"} <= set(full.families) and full.seeds >= 32


def test_matched_targets_that_cannot_be_reached_are_reported():
    cells = [Cell("categorical", "fresh", 0.9, "matched", target, 100) for target in (3.0, 6.5)]
    cells.append(Cell("categorical", "fresh", 0.0, "matched", 3.0, 100))
    runs = categorical.simulate(cells, 6, 4, CPU, 0)
    analysis = analyse([CellRuns(c, "real", {k: v.numpy() for k, v in m.items()}) for c, m in zip(cells, runs)], 6, 0.1, 0)
    missed = [n for n in analysis.notes if "matched entropy target" in n]
    assert len(missed) == 1 and "6.5" in missed[0]  # ln(1000) = 6.91, but the support of a 100-sample fit is smaller
    model = zipf(1000, 1.1, CPU).expand(3, -1)
    solved = apply_control(model, ["matched"] * 3, torch.tensor([2.0, 3.0, 5.0], dtype=torch.float64))
    assert entropy(solved).tolist() == pytest.approx([2.0, 3.0, 5.0], abs=1e-6)


def test_gaussian_refuses_controls_without_meaning():
    with pytest.raises(ValueError, match="gaussian family supports"):
        gaussian.simulate([Cell("gaussian", "replace", 1.0, "top_k", 5, 10)], 2, 2, CPU, 0)


@pytest.mark.parametrize(
    "bad",
    [dict(ratios=[1.5]), dict(families=["nope"]), dict(regimes=["sideways"]), dict(diversity_control="top_p", diversity=[2.0]),
     dict(real_amounts=[1])],
)
def test_bad_configs_are_refused(bad):
    with pytest.raises(ValidationError):
        SweepConfig(**bad)


def test_device_resolution():
    assert resolve_device("cpu") == CPU
    assert resolve_device("auto").type in {"cpu", "cuda"}
    with pytest.raises(ValueError, match="unknown device"):
        resolve_device("tpu")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="no CUDA"):
            resolve_device("cuda")


def test_markov_family_fits_the_known_language_and_collapses_under_replace():
    from simulations.families import markov

    truth = markov.language(6, 2, 1.3, 0.2, truth_seed=3, device=CPU)
    chain_step = torch.zeros(36, 36, dtype=torch.float64)
    nxt = (torch.arange(36).unsqueeze(-1) * 6 + torch.arange(6)) % 36
    chain_step.scatter_add_(1, nxt, truth.transitions)
    assert torch.allclose(truth.stationary @ chain_step, truth.stationary, atol=1e-10)
    cells = [Cell("markov", "fresh", 0.0, "temperature", 1.0, 800), Cell("markov", "replace", 1.0, "temperature", 0.7, 40),
             Cell("markov", "fresh", 0.5, "temperature", 0.7, 40)]
    big, replace, fresh = markov.simulate(cells, 8, 6, CPU, 0, vocab=6, order=2, beta=1.3)
    assert big["forward_kl"][:, -1].mean() < 0.02  # 800 real sequences per generation pin the truth down
    # Coverage, not the tail's total mass: states the collapsed chain no longer visits fall back to
    # uniform, which puts mass on the tail (the two-sided ratio reads 0.8) while its rate is lost.
    assert replace["tail_coverage"][:, -1].mean() < 0.5 * fresh["tail_coverage"][:, -1].mean()
    assert replace["distinct_2"][:, -1].mean() < replace["distinct_2"][:, 0].mean()
    assert replace["entropy"][:, -1].mean() < fresh["entropy"][:, -1].mean()


@pytest.mark.parametrize(
    "cell, message",
    [(Cell("categorical", "replace", 0.5, "temperature", 1.0, 100), "ratio is 1"),
     (Cell("categorical", "fixed_real", 1.0, "temperature", 1.0, 100), "ratio < 1"),
     (Cell("categorical", "fresh", 1.2, "temperature", 1.0, 100), "outside"),
     (Cell("categorical", "fresh", 0.5, "temperature", 1.0, 1), "too small")],
)
def test_impossible_cells_are_refused(cell, message):
    with pytest.raises(ValueError, match=message):
        categorical.simulate([cell], 2, 2, CPU, 0)


def test_regimes_build_the_documented_training_sets():
    from simulations.regimes import data_plan

    assert data_plan(Cell("c", "fresh", 0.75, "temperature", 1.0, 100)) == data_plan(
        Cell("c", "fresh", 0.75, "temperature", 1.0, 100, samples=400))
    plan = data_plan(Cell("c", "fresh", 0.75, "temperature", 1.0, 100))
    assert (plan.first_real, plan.fresh_real, plan.synthetic) == (100, 100, 300)
    plan = data_plan(Cell("c", "fixed_real", 0.5, "temperature", 1.0, 100))
    assert (plan.synthetic, plan.reuse_real_pool, plan.keep_history) == (100, True, False)
    plan = data_plan(Cell("c", "accumulate_subsample", 1.0, "temperature", 1.0, 100))
    assert (plan.synthetic, plan.fresh_real, plan.keep_history, plan.subsample) == (100, 0, True, 100)


@pytest.mark.parametrize("sizes", [[5], [40], [5, 40, 0]], ids=["inverse-cdf", "binomial-tree", "mixed-rows"])
def test_count_sampler_draws_exact_multinomial_counts(sizes):
    # 5 draws take the inverse-CDF path and 40 the binomial tree (over 2 V = 12); mixed rows take both.
    probs = torch.tensor([0.5, 0.0, 0.3, 0.15, 0.0, 0.05], dtype=torch.float64)
    runs = 30_000
    n = torch.tensor(sizes).repeat(runs // len(sizes))
    counts = sample_counts(probs.expand(len(n), -1).contiguous(), n, torch.Generator().manual_seed(3))
    assert torch.equal(counts.sum(-1), n.double())
    assert not counts[:, probs == 0].any()
    for size in sizes:
        rows = counts[n == size]
        mean, var = size * probs, size * probs * (1 - probs)
        assert ((rows.mean(0) - mean).abs() <= 4 * (var / len(rows)).sqrt() + 1e-12).all()
        assert torch.allclose(rows.var(0), var, rtol=0.05, atol=1e-12)


def test_knn_metrics_and_vendi_see_a_collapsed_sample():
    from simulations.metrics import knn_precision_recall_coverage, vendi

    gen = torch.Generator().manual_seed(0)
    real = torch.randn(2, 300, 2, generator=gen, dtype=torch.float64)
    fake = torch.randn(2, 300, 2, generator=gen, dtype=torch.float64)
    fake[1] *= 0.1  # collapsed onto the mode
    scores = knn_precision_recall_coverage(real, fake)
    assert scores["recall"][0] > 0.9 and scores["coverage"][0] > 0.9
    assert scores["recall"][1] < 0.3 and scores["coverage"][1] < 0.3 and scores["precision"][1] > 0.9
    assert vendi(torch.eye(5, dtype=torch.float64).unsqueeze(0)).item() == pytest.approx(5.0)
    assert vendi(torch.ones(1, 5, 5, dtype=torch.float64)).item() == pytest.approx(1.0)


def test_the_full_design_runs_for_every_family():
    """The GPU budget's families and regimes on a shrunken grid: every family takes the bias values,
    regimes and counterfactuals the design gives it, and reports the shared collapse metrics."""
    full = SweepConfig.budget("full", device="cpu")
    small = full.model_copy(update={"ratios": [0.0, 0.9], "diversity": [0.9, 1.0], "real_amounts": [100, 200],
                                    "holds": ["real"], "generations": 3, "seeds": 2,
                                    "family_grids": {family: GridOverride(regimes=["fresh"], ratios=[0.0, 0.9],
                                                                          diversity=[1.0], real_amounts=[100])
                                                     for family in ("gaussian_mixture", "neural_lm")}})
    result = run_sweep(SweepConfig.model_validate(small.model_dump()))
    assert {c.family for c in result.cells} == set(full.families)
    for cell in result.cells:
        for name in ("tail_mass_ratio", "tail_coverage", "forward_kl", "tail_forward_kl"):
            assert name in cell.metrics, (cell.family, name)
    assert {e.family for e in result.analysis.effects} == set(full.families)

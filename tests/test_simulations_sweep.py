"""The sweep as the lead uses it: budgets, JSON shape, cache, analysis, figures, input errors."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest
import torch
from pydantic import ValidationError

from simulations.analysis import variance_shares
from simulations.cells import Cell
from simulations.device import resolve_device
from simulations.diversity import apply_control, entropy
from simulations.families import categorical, gaussian
from simulations.plots import write_figures
from simulations.sweep import SweepConfig, run_sweep


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    cache = tmp_path_factory.mktemp("cache")
    calls = []
    result = run_sweep(SweepConfig.budget("tiny", device="cpu"), cache_dir=cache, progress=lambda d, t: calls.append((d, t)))
    return result, cache, calls


def test_tiny_sweep_has_the_documented_json_shape(tiny):
    result, _, calls = tiny
    data = json.loads(json.dumps(result.model_dump(mode="json")))
    assert set(data) >= {"config", "cells", "analysis"}
    generations = data["config"]["generations"]
    assert data["cells"]
    for cell in data["cells"]:
        assert {"family", "regime", "ratio", "diversity", "real_amount", "seeds", "metrics"} <= set(cell)
        for name in ("tail_mass_kept", "tail_mass_kept_se", "tail_mass_kept_median", "entropy", "kl", "tv"):
            assert len(cell["metrics"][name]) == generations + 1
        assert cell["metrics"]["tail_mass_kept"][0] == pytest.approx(1.0)  # entry 0 is the truth
        assert cell["metrics"]["kl"][0] == pytest.approx(0.0, abs=1e-12)
        if cell["regime"] == "replace":
            assert cell["ratio"] == 1.0
    assert calls[-1][0] == calls[-1][1] == len(data["cells"])


def test_analysis_reports_shares_thresholds_effects_and_a_numeric_verdict(tiny):
    analysis = tiny[0].analysis
    shares = next(g for g in analysis["groups"] if g["regime"] == analysis["primary"]["regime"])["variance_shares"]
    for name in ("ratio", "diversity", "real_amount", "interactions", "seed_noise"):
        lo, hi = shares[name]["ci"]
        assert lo <= shares[name]["share"] + 1e-9 and shares[name]["share"] <= hi + 1e-9
    main_and_noise = sum(s["share"] for n, s in shares.items() if n != "interactions")
    assert main_and_noise == pytest.approx(1.0)
    assert analysis["thresholds"]["per_ratio"] and "tolerance" in analysis["thresholds"]
    for effect in ("effect_of_ratio", "effect_of_diversity"):
        assert analysis[effect]["comparisons"] > 0
    assert re.search(r"\d+%", analysis["verdict"]) and re.search(r"\d\.\d{3}", analysis["verdict"])


def test_cache_reuses_the_result_for_the_same_config(tiny):
    result, cache, _ = tiny
    assert len(list(cache.glob("sweep-*.json"))) == 1
    again = run_sweep(SweepConfig.budget("tiny", device="cpu"), cache_dir=cache)
    assert again.model_dump() == result.model_dump()
    other = SweepConfig.budget("tiny", seed=1, device="cpu")
    assert other.digest() != result.config.digest()


def test_figures_are_written(tiny, tmp_path):
    paths = write_figures(tiny[0], tmp_path)
    assert {p.name for p in paths} == {"phase_diagram.png", "curves_by_regime.png", "threshold_curve.png"}
    assert all(p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" for p in paths)


def test_budgets_cover_the_central_design():
    for name in ("tiny", "small", "full"):
        cfg = SweepConfig.budget(name)
        assert "categorical" in cfg.families and cfg.diversity_control == "matched"
        assert {"replace", "accumulate", "fresh"} <= set(cfg.regimes)
        assert len(cfg.ratios) >= 2 and len(cfg.diversity) >= 2 and len(cfg.real_amounts) >= 2


@pytest.mark.parametrize(
    "bad",
    [dict(ratios=[1.5]), dict(families=["nope"]), dict(regimes=["sideways"]), dict(diversity_control="top_p", diversity=[2.0]),
     dict(real_amounts=[1])],
)
def test_bad_configs_are_refused(bad):
    with pytest.raises(ValidationError):
        SweepConfig(**bad)


def test_device_resolution():
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device("auto").type in {"cpu", "cuda"}
    with pytest.raises(ValueError, match="unknown device"):
        resolve_device("tpu")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="no CUDA"):
            resolve_device("cuda")


def test_matched_control_holds_synthetic_entropy_fixed_across_ratios():
    target = 3.5
    cells = [Cell("categorical", "fresh", r, "matched", target, 2000) for r in (0.5, 0.9)]
    runs = categorical.simulate(cells, 3, 4, torch.device("cpu"), 0)
    for run in runs:
        # Miller-Madow entropy of the synthetic batch, generation 1 onwards.
        assert run["synthetic_entropy"][:, 1:].mean().item() == pytest.approx(target, abs=0.1)
    model = categorical.zipf(1000, 1.1, torch.device("cpu")).expand(3, -1)
    solved = apply_control(model, ["matched"] * 3, torch.tensor([2.0, 3.0, 5.0], dtype=torch.float64))
    assert entropy(solved).tolist() == pytest.approx([2.0, 3.0, 5.0], abs=1e-6)


def test_diversity_controls_order_the_tail_they_keep():
    cells = [Cell("categorical", "replace", 1.0, "temperature", tau, 500) for tau in (0.7, 1.0)]
    cells += [Cell("categorical", "replace", 1.0, "tail_resample", 0.5, 500)]
    cold, plain, tail = categorical.simulate(cells, 6, 16, torch.device("cpu"), 1)
    final = lambda run: run["tail_mass_kept"][:, -1].mean().item()  # noqa: E731
    assert final(cold) < final(plain) < final(tail)


def test_gaussian_refuses_controls_without_meaning():
    with pytest.raises(ValueError, match="gaussian family supports"):
        gaussian.simulate([Cell("gaussian", "replace", 1.0, "top_k", 5, 10)], 2, 2, torch.device("cpu"), 0)


def test_variance_shares_find_the_factor_that_matters():
    rng = np.random.default_rng(0)
    levels = np.array([0.0, 1.0, 2.0])
    y = levels[:, None, None] + 0.01 * rng.standard_normal((3, 4, 20))  # only the first factor matters
    shares = variance_shares(y, ["ratio", "diversity"], rng)
    assert shares["ratio"]["share"] > 0.99 and shares["diversity"]["share"] < 0.001


def test_markov_family_fits_the_known_language_and_collapses_under_replace():
    from simulations.families import markov

    truth = markov.language(6, 2, 1.3, 0.2, truth_seed=3, device=torch.device("cpu"))
    chain_step = torch.zeros(36, 36, dtype=torch.float64)
    nxt = (torch.arange(36).unsqueeze(-1) * 6 + torch.arange(6)) % 36
    chain_step.scatter_add_(1, nxt, truth.transitions)
    assert torch.allclose(truth.stationary @ chain_step, truth.stationary, atol=1e-10)
    cells = [Cell("markov", "fresh", 0.0, "temperature", 1.0, 800), Cell("markov", "replace", 1.0, "temperature", 0.7, 40),
             Cell("markov", "fresh", 0.5, "temperature", 0.7, 40)]
    big, replace, fresh = markov.simulate(cells, 8, 6, torch.device("cpu"), 0, vocab=6, order=2, beta=1.3)
    assert big["kl"][:, -1].mean() < 0.02  # 800 real sequences per generation pin the truth down
    assert replace["tail_mass_kept"][:, -1].mean() < 0.5 * fresh["tail_mass_kept"][:, -1].mean()
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
        categorical.simulate([cell], 2, 2, torch.device("cpu"), 0)


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
    counts = categorical.sample_counts(probs.expand(len(n), -1).contiguous(), n, torch.Generator().manual_seed(3))
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


def test_gaussian_mixture_loses_its_rare_component_under_replace():
    from simulations.families import gaussian_mixture

    cells = [Cell("gaussian_mixture", "replace", 1.0, "temperature", 1.0, 100),
             Cell("gaussian_mixture", "fresh", 0.5, "temperature", 1.0, 100)]
    replace, fresh = gaussian_mixture.simulate(cells, 10, 32, torch.device("cpu"), 0)
    assert replace["tail_mass_kept"][:, 0].eq(1).all()
    assert replace["tail_mass_kept"][:, -1].median() < 0.6 < 0.75 < fresh["tail_mass_kept"][:, -1].median()
    assert replace["test_loss"][:, -1].median() > fresh["test_loss"][:, -1].median()
    (big,) = gaussian_mixture.simulate([Cell("gaussian_mixture", "fresh", 0.0, "temperature", 1.0, 4000)], 1, 8,
                                       torch.device("cpu"), 1)
    assert big["rare_weight"][:, 1].mean().item() == pytest.approx(0.05, abs=0.01)

"""The sweep's figures: written and readable, skipped (never crashing) where a result cannot support
them, and the phase diagram drawn from the analysis's own numbers."""

from __future__ import annotations

import math

import matplotlib.image as mpimg
import numpy as np
import pytest

from simulations.plots import headline_regime, phase_grid, window_average, write_figures
from simulations.sweep import SweepConfig, run_sweep

FIGURES = {"phase_diagram.png", "curves.png", "diversity.png"}


def _config(**changes) -> SweepConfig:
    # 2 shares x 2 biases (0.9 and the unbiased 1.0, always added) x 2 real counts, one regime: seconds on a CPU.
    base = dict(families=["categorical"], regimes=["fixed_real"], ratios=[0.0, 0.5, 0.9], diversity=[0.9],
                real_amounts=[50, 200], generations=6, seeds=4, device="cpu",
                family_params={"categorical": {"vocab": 200}})
    return SweepConfig(**{**base, **changes})


@pytest.fixture(scope="module")
def result():
    return run_sweep(_config())


def _assert_images(paths):
    for path in paths:
        assert path.stat().st_size > 10_000
        image = mpimg.imread(path)  # a PNG matplotlib reads back
        assert image.ndim == 3 and image.shape[0] > 200 and image.shape[1] > 200
        assert image[..., :3].std() > 0.05  # not a blank canvas


def test_all_three_figures_are_written_as_readable_images(result, tmp_path):
    paths = write_figures(result, tmp_path / "figures")
    assert {p.name for p in paths} == FIGURES
    assert all(p.parent == tmp_path / "figures" for p in paths)
    _assert_images(paths)


def test_phase_grid_holds_the_analysis_effects(result):
    effects = result.analysis.effects
    regime = headline_regime(result)
    assert regime == "fixed_real"
    for real in (50, 200):
        shares, biases, grid = phase_grid(effects, "categorical", regime, real)
        assert shares == [0.5, 0.9] and biases == [0.9, 1.0]
        assert grid.shape == (2, 2) and np.isfinite(grid).all()
        for e in effects:
            if e.regime == regime and e.hold == "real" and e.real_amount == real:
                assert grid[biases.index(e.diversity), shares.index(e.ratio)] == e.relative_tail_mass.mean
    _, _, empty = phase_grid(effects, "categorical", regime, 12345)  # no such real count: an empty grid
    assert empty.size == 0


def test_an_effect_without_an_estimate_is_a_hole_in_the_grid(result, tmp_path):
    # relative_tail_mass is None where no seed gave a finite value: NaN in the grid, and the figure is still drawn.
    target = next(e for e in result.analysis.effects if e.real_amount == 50 and e.ratio == 0.9 and e.diversity == 0.9)
    effects = [e.model_copy(update={"relative_tail_mass": None}) if e is target else e for e in result.analysis.effects]
    shares, biases, grid = phase_grid(effects, "categorical", "fixed_real", 50)
    assert np.isnan(grid[biases.index(0.9), shares.index(0.9)]) and np.isfinite(grid).sum() == 3
    holed = result.model_copy(update={"analysis": result.analysis.model_copy(update={"effects": effects})})
    assert "phase_diagram.png" in {p.name for p in write_figures(holed, tmp_path)}


def test_window_average_matches_the_stored_generations(result):
    cell = next(c for c in result.cells if c.ratio == 0.9 and c.diversity == 0.9 and c.real_amount == 50)
    window = result.analysis.window
    mean, se = window_average(cell, "tail_mass_ratio", window)
    stored = cell.metrics["tail_mass_ratio"][window[0] : window[1] + 1]
    assert mean == pytest.approx(np.mean(stored))
    assert se == pytest.approx(np.mean(cell.metrics["tail_mass_ratio_se"][window[0] : window[1] + 1]))
    assert all(math.isnan(x) for x in window_average(cell, "no_such_metric", window))


def test_without_analysis_only_the_figures_that_need_none_are_written(result, tmp_path):
    bare = result.model_copy(update={"analysis": None})
    paths = write_figures(bare, tmp_path)
    assert {p.name for p in paths} == {"curves.png", "diversity.png"}
    _assert_images(paths)


def test_one_sampler_setting_writes_the_curves_only(tmp_path):
    unbiased_only = run_sweep(_config(diversity=[1.0], real_amounts=[50]))
    paths = write_figures(unbiased_only, tmp_path)
    assert {p.name for p in paths} == {"curves.png"}  # no bias axis: no phase diagram, no requested-vs-realised
    _assert_images(paths)


def test_a_result_without_a_fixed_real_count_slice_writes_nothing(result, tmp_path):
    stripped = result.model_copy(update={"analysis": None, "cells": [c for c in result.cells if c.ratio == 0]})
    assert write_figures(stripped, tmp_path) == []
    assert not any(tmp_path.iterdir())


def test_a_family_without_the_metrics_skips_their_figures(result, tmp_path):
    dropped = ("tail_mass_ratio", "batch_tail_coverage", "batch_entropy", "sampler_entropy")
    cells = [c.model_copy(update={"metrics": {k: v for k, v in c.metrics.items() if k.removesuffix("_se")
                                              .removesuffix("_median") not in dropped}}) for c in result.cells]
    paths = write_figures(result.model_copy(update={"cells": cells}), tmp_path)
    assert {p.name for p in paths} == {"phase_diagram.png"}  # drawn from the analysis alone

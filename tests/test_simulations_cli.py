"""`collapse-audit simulate`: JSON on stdout, files in --out, one-line errors with exit code 2."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from agent.cli import app
from simulations.sweep import SweepResult


@pytest.fixture
def runner(tmp_path, monkeypatch):
    monkeypatch.setenv("COLLAPSE_AUDIT_HOME", str(tmp_path / "home"))
    return CliRunner()


def test_simulate_prints_json_and_writes_result_and_figures(runner, tmp_path, monkeypatch):
    out = tmp_path / "sim"
    result = runner.invoke(app, ["simulate", "--budget", "tiny", "--device", "cpu", "--format", "json", "--out", str(out)])
    assert result.exit_code == 0, result.output
    payload = json.loads(result.stdout)
    assert set(payload) >= {"config", "cells", "analysis"}
    # The JSON is the lab's typed result and reads back as one (the agent consumes it so).
    sweep = SweepResult.model_validate(payload)
    assert sweep.config.diversity_control == "temperature" and sweep.config.diversity == [0.9, 1.0]
    generations = sweep.config.generations
    assert all(len(c.metrics["tail_mass_ratio_median"]) == generations + 1 for c in sweep.cells)
    mixed = [c for c in sweep.cells if 0 < c.ratio < 1]
    assert mixed and all(set(c.counterfactuals) == {"same_real", "same_total"} for c in mixed)
    analysis = sweep.analysis
    assert analysis is not None and analysis.boundaries and analysis.scale and analysis.effects
    assert "fixed_real" in analysis.headline and "Holding the real data fixed" in analysis.result
    assert json.loads((out / "result.json").read_text())["analysis"]["result"] == analysis.result
    figures = list((out / "figures").iterdir())
    assert figures and all(p.suffix == ".png" and p.stat().st_size > 0 for p in figures)
    again = runner.invoke(app, ["simulate", "--budget", "tiny", "--device", "cpu", "--out", str(out)])
    assert again.exit_code == 2 and "not empty" in again.output

    # The table form (from the cache the first call wrote): the metric columns, then the lab's answer.
    monkeypatch.setenv("COLUMNS", "200")  # rich's width when not on a terminal
    table = runner.invoke(app, ["simulate", "--budget", "tiny", "--device", "cpu"])
    assert table.exit_code == 0, table.output
    text = " ".join(table.stdout.split())
    for column in ("tail mass ratio (last)", "tail coverage (last)", "forward KL (last)"):
        assert column in text
    assert " ".join(analysis.result.split()) in text


def test_real_only_cell_and_a_control_at_its_unbiased_setting(runner):
    small = ["--regime", "fresh", "--real-amounts", "50", "--generations", "4", "--seeds", "2", "--device", "cpu",
             "--format", "json"]
    real_only = runner.invoke(app, ["simulate", "--budget", "tiny", "--ratios", "0", *small])
    assert real_only.exit_code == 0, real_only.output
    assert {c["ratio"] for c in json.loads(real_only.stdout)["cells"]} == {0.0}

    top_p = runner.invoke(app, ["simulate", "--budget", "tiny", "--ratios", "0,0.5", "--diversity-control", "top_p", *small])
    assert top_p.exit_code == 0, top_p.output
    config = json.loads(top_p.stdout)["config"]
    assert config["diversity_control"] == "top_p" and config["diversity"] == [1.0]
    assert "unbiased setting" in top_p.stderr


def test_gaussian_takes_estimator_and_samples(runner):
    args = ["simulate", "--family", "gaussian", "--regime", "replace", "--samples", "20", "--estimator", "unbiased",
            "--generations", "5", "--seeds", "50", "--device", "cpu", "--format", "json"]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    cells = json.loads(result.stdout)["cells"]
    replace = [c for c in cells if c["regime"] == "replace"]
    assert {c["diversity"] for c in replace} >= {0.9, 1.0}, "the budget's temperatures, the unbiased one included"
    assert {(c["regime"], c["ratio"]) for c in cells if c not in replace} == {("fixed_real", 0.0)}, "its real-only pair"
    (cell,) = [c for c in replace if c["diversity"] == 1.0]
    assert cell["real_amount"] == 20 and len(cell["metrics"]["variance"]) == 6 and "mean_se" in cell["metrics"]


@pytest.mark.parametrize(
    "args, message",
    [(["--ratios", "0.5,1.5"], "[0, 1]"), (["--family", "nope"], "'--family': 'nope' is not one of 'categorical'"),
     (["--regime", "sideways"], "'--regime': 'sideways' is not one of"),
     (["--device", "tpu"], "'--device': 'tpu' is not one of 'auto', 'cpu', 'cuda'"), (["--ratios", "half"], "comma-separated"),
     (["--generations", "0"], "generations"), (["--seeds", "0"], "seeds"), (["--samples", "-3"], "--samples"),
     (["--diversity-control", "matched"], "needs --diversity"), (["--diversity-control", "sideways"], "'--diversity-control'"),
     (["--family", "markov", "--diversity-control", "matched"], "needs --diversity"),
     (["--hold", "both"], "'--hold'"), (["--estimator", "median"], "'--estimator'"), (["--budget", "huge"], "'--budget'"),
     (["--format", "xml"], "'--format'"), (["--executor", "dask"], "'--executor': 'dask' is not one of 'local', 'ray'"),
     (["--ray-address", "127.0.0.1:1"], "--ray-address needs --executor ray"), (["--bogus"], "No such option: --bogus")],
)
def test_bad_input_is_one_line_and_exit_2(runner, args, message):
    result = runner.invoke(app, ["simulate", "--budget", "tiny", *args])
    assert result.exit_code == 2
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and message in lines[0], result.output


def test_cuda_without_a_gpu_is_refused(runner):
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    result = runner.invoke(app, ["simulate", "--budget", "tiny", "--device", "cuda"])
    assert result.exit_code == 2 and "no CUDA" in result.output

"""`collapse-audit simulate`: JSON on stdout, files in --out, one-line errors with exit code 2."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from agent.cli import app


@pytest.fixture
def runner(tmp_path, monkeypatch):
    monkeypatch.setenv("COLLAPSE_AUDIT_HOME", str(tmp_path / "home"))
    return CliRunner()


def test_simulate_prints_json_and_writes_result_and_figures(runner, tmp_path):
    out = tmp_path / "sim"
    result = runner.invoke(app, ["simulate", "--budget", "tiny", "--device", "cpu", "--format", "json", "--out", str(out)])
    assert result.exit_code == 0, result.output
    payload = json.loads(result.stdout)
    assert set(payload) >= {"config", "cells", "analysis"}
    generations = payload["config"]["generations"]
    assert all(len(c["metrics"]["tail_mass_kept_median"]) == generations + 1 for c in payload["cells"])
    assert json.loads((out / "result.json").read_text())["analysis"]["verdict"] == payload["analysis"]["verdict"]
    assert {p.name for p in (out / "figures").iterdir()} >= {"phase_diagram.png", "curves_by_regime.png"}
    again = runner.invoke(app, ["simulate", "--budget", "tiny", "--device", "cpu", "--out", str(out)])
    assert again.exit_code == 2 and "not empty" in again.output


def test_gaussian_takes_estimator_and_samples(runner):
    args = ["simulate", "--family", "gaussian", "--regime", "replace", "--samples", "20", "--estimator", "unbiased",
            "--generations", "5", "--seeds", "50", "--device", "cpu", "--format", "json"]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    (cell,) = json.loads(result.stdout)["cells"]
    assert cell["real_amount"] == 20 and len(cell["metrics"]["variance"]) == 6 and "mean_se" in cell["metrics"]


@pytest.mark.parametrize(
    "args, message",
    [(["--ratios", "0.5,1.5"], "[0, 1]"), (["--family", "nope"], "unknown family"), (["--regime", "sideways"], "regimes"),
     (["--device", "tpu"], "unknown device"), (["--ratios", "half"], "comma-separated"),
     (["--generations", "0"], "generations"), (["--seeds", "0"], "seeds"), (["--samples", "-3"], "--samples"),
     (["--diversity-control", "top_p"], "needs --diversity"),
     (["--family", "markov", "--diversity-control", "matched"], "needs --diversity")],
)
def test_bad_input_is_one_line_and_exit_2(runner, args, message):
    result = runner.invoke(app, ["simulate", "--budget", "tiny", *args])
    assert result.exit_code == 2
    assert message in result.output and "Traceback" not in result.output


def test_cuda_without_a_gpu_is_refused(runner):
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    result = runner.invoke(app, ["simulate", "--budget", "tiny", "--device", "cuda"])
    assert result.exit_code == 2 and "no CUDA" in result.output

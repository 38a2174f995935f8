"""The neural families (e) neural_lm and (f) vae_digits: conventions, collapse, batching, errors."""

from __future__ import annotations

import math
from dataclasses import replace

import pytest
import scipy.stats
import torch

from simulations.cells import Cell
from simulations.families import neural_lm, vae_digits

CPU = torch.device("cpu")
COLLAPSE = {"tail_mass_ratio", "tail_mass_abs_log_ratio", "tail_coverage", "tail_types_lost"}
BATCH = {"batch_tail_coverage", "batch_richness", "batch_entropy"}  # the realised synthetic batch
LM_METRICS = COLLAPSE | BATCH | {
    "forward_kl", "tail_forward_kl", "reverse_kl", "unseen_mass", "types_kept", "gini_simpson", "entropy", "tv", "test_loss",
    "distinct_2", "sampler_entropy",
}
VAE_METRICS = COLLAPSE | BATCH | {"precision", "recall", "coverage", "test_loss", "entropy"}
BATCH_LM = BATCH | {"sampler_entropy"}  # set by the cell's control from generation 1 on


def cell(family: str, regime: str, ratio: float, control: str, value: float, real: int) -> Cell:
    return Cell(family=family, regime=regime, ratio=ratio, diversity_control=control, diversity=value, real_amount=real)


# ----------------------------------------------------------------------------------------------
# Shapes and the entry-0 / generation-1 conventions


@pytest.fixture(scope="module")
def lm_pair() -> tuple[list[dict[str, torch.Tensor]], list[dict[str, torch.Tensor]]]:
    """The same seed run twice with cells that differ only in what acts after generation 1."""
    first = [cell("neural_lm", "replace", 1.0, "temperature", 0.6, 100), cell("neural_lm", "fresh", 0.5, "top_p", 0.8, 100)]
    second = [cell("neural_lm", "accumulate", 0.2, "top_k", 6, 100), cell("neural_lm", "fixed_real", 0.3, "matched", 1.5, 100)]
    return neural_lm.simulate(first, 3, 2, CPU, 5), neural_lm.simulate(second, 3, 2, CPU, 5)


@pytest.fixture(scope="module")
def vae_pair() -> tuple[list[dict[str, torch.Tensor]], list[dict[str, torch.Tensor]]]:
    first = [cell("vae_digits", "replace", 1.0, "temperature", 0.6, 150), cell("vae_digits", "fresh", 0.5, "top_p", 0.8, 150)]
    second = [cell("vae_digits", "accumulate_subsample", 0.0, "top_p", 0.5, 150), cell("vae_digits", "fixed_real", 0.3, "temperature", 1.5, 150)]
    return vae_digits.simulate(first, 2, 2, CPU, 5), vae_digits.simulate(second, 2, 2, CPU, 5)


@pytest.mark.parametrize(("pair", "names", "generations"), [("lm_pair", LM_METRICS, 3), ("vae_pair", VAE_METRICS, 2)])
def test_one_float64_cpu_series_per_metric_seed_and_generation(pair, names, generations, request):
    for results in request.getfixturevalue(pair):
        assert len(results) == 2
        for metrics in results:
            assert set(metrics) == names
            for series in metrics.values():
                assert series.shape == (2, generations + 1)
                assert series.dtype == torch.float64 and series.device.type == "cpu"


@pytest.mark.parametrize("pair", ["lm_pair", "vae_pair"])
def test_truth_and_generation_one_ignore_regime_ratio_and_control(pair, request):
    first, second = request.getfixturevalue(pair)
    for a, b in zip(first, second):
        for name in a:
            # The truth, and the model fit on real data; not the synthetic batch it hands on.
            end = 1 if name in BATCH_LM else 2
            torch.testing.assert_close(a[name][:, :end], b[name][:, :end], equal_nan=True)
        assert any(not torch.allclose(a[name][:, 2:], b[name][:, 2:]) for name in a)  # then the cell acts


def test_lm_entry_zero_is_the_truth_itself(lm_pair):
    source = neural_lm.language(CPU)
    entropy_rate = -(source.stationary[:, None] * source.transitions * source.transitions.log()).sum()
    for metrics in lm_pair[0]:
        # forward_kl mixes the model with 1e-3 of uniform mass, so the truth scores a hair above 0.
        assert torch.all(metrics["forward_kl"][:, 0].abs() < 1e-3) and torch.all(metrics["forward_kl"][:, 1:] > 0.05)
        assert torch.all(metrics["reverse_kl"][:, 0].abs() < 1e-12) and torch.all(metrics["tv"][:, 0].abs() < 1e-12)
        exact = {"tail_mass_ratio": 1, "tail_coverage": 1, "tail_types_lost": 0, "tail_mass_abs_log_ratio": 0}
        for name, value in exact.items():
            assert torch.all((metrics[name][:, 0] - value).abs() < 1e-12), name
        for name in BATCH_LM:
            assert torch.all(metrics[name][:, 0].isnan()) and torch.all(metrics[name][:, 1:].isfinite()), name
        torch.testing.assert_close(metrics["entropy"][:, 0], entropy_rate.expand(2))
        # Held-out NLL under the truth estimates its entropy rate; a fitted model pays the KL on top.
        assert torch.all((metrics["test_loss"][:, 0] - entropy_rate).abs() < 0.1)
        assert torch.all(metrics["test_loss"][:, 1] > metrics["test_loss"][:, 0])


def test_vae_entry_zero_reads_real_digits(vae_pair):
    for metrics in vae_pair[0]:
        assert torch.all(metrics["test_loss"][:, 0].isnan()) and torch.all(metrics["test_loss"][:, 1:].isfinite())
        assert torch.all((metrics["tail_mass_ratio"][:, 0] - 1).abs() < 0.3)  # real draws, read by the classifier
        assert torch.all(metrics["tail_coverage"][:, 0] == 1) and torch.all(metrics["tail_types_lost"][:, 0] == 0)
        assert torch.all(metrics["entropy"][:, 0] > 2.0)  # ten classes, three of them rare: about 2.19 nats
        assert torch.all(metrics["coverage"][:, 0] > 0.8)


# ----------------------------------------------------------------------------------------------
# Collapse, against the paired real-only cell (same seed index, same real data: common random numbers)


def test_lm_sharp_sampler_damages_the_tail_at_high_ratio_while_the_unbiased_one_does_not():
    """fresh at ratio 0.9 (real count held at 100 sequences, 900 synthetic), temperature 0.3 against
    temperature 1, each paired with the real-only cell of the same seed index.

    The damage shows in tail_coverage (rare transitions kept at >= 0.1 of their true rate) and in the
    tail's extra log-loss, not in tail_mass_ratio: this under-trained LM over-weights every context's
    tail (ratio about 2.2 on real data alone), and a sharp synthetic stream visits few contexts, which
    leaves the others even less trained, so the state-weighted ratio stays high while coverage drops."""
    real_only, sharp, unbiased = neural_lm.simulate(
        [cell("neural_lm", "fresh", 0.0, "temperature", 1.0, 100), cell("neural_lm", "fresh", 0.9, "temperature", 0.3, 100),
         cell("neural_lm", "fresh", 0.9, "temperature", 1.0, 100)],
        3, 2, CPU, 11,
    )
    for name in ("forward_kl", "tail_mass_ratio", "test_loss"):  # one real stream, one generation-1 model per seed
        torch.testing.assert_close(sharp[name][:, 1], real_only[name][:, 1])
        torch.testing.assert_close(unbiased[name][:, 1], real_only[name][:, 1])
    assert all(real_only[name].isnan().all() for name in BATCH_LM)  # ratio 0: no synthetic batch
    last = slice(2, None)  # generations 2 and 3, per seed
    # The sharp sampler: its batches hold almost none of the tail, and the models lose it.
    assert torch.all(sharp["batch_tail_coverage"][:, 1:] < 0.15) and torch.all(sharp["batch_tail_coverage"][:, last] < 0.05)
    assert torch.all(sharp["tail_coverage"][:, last] < real_only["tail_coverage"][:, last] - 0.05)
    assert torch.all(sharp["tail_forward_kl"][:, last] > real_only["tail_forward_kl"][:, last] + 0.3)
    assert torch.all(sharp["forward_kl"][:, last] > real_only["forward_kl"][:, last] + 0.4)
    # The unbiased sampler at the same ratio: batches carry the tail, no rare transition is lost.
    assert torch.all(unbiased["batch_tail_coverage"][:, 1:] > 0.6)
    assert torch.all(unbiased["tail_coverage"][:, last] > real_only["tail_coverage"][:, last] - 0.02)
    assert torch.all(unbiased["tail_forward_kl"][:, last] < real_only["tail_forward_kl"][:, last])
    # Its tail mass stays above the real-only cell's (this LM over-smooths, and recursion compounds
    # that): over-weighted, never under-weighted.
    assert torch.all(unbiased["tail_mass_ratio"][:, last] > real_only["tail_mass_ratio"][:, last])
    assert torch.all(unbiased["forward_kl"][:, last] < real_only["forward_kl"][:, last] + 0.3)


def test_vae_sharp_sampler_loses_rare_classes_against_the_paired_real_only_cell():
    """fresh at ratio 0.5: temperature 0.3 on the latent prior drops the rare classes; real-only keeps
    them. Temperature 1 sits in between: synthetic images are decoder means, which are not samples
    of the VAE, so even the "unbiased" control loses some of the rare classes' share here."""
    real_only, sharp, unbiased = vae_digits.simulate(
        [cell("vae_digits", "fresh", 0.0, "temperature", 1.0, 150), cell("vae_digits", "fresh", 0.5, "temperature", 0.3, 150),
         cell("vae_digits", "fresh", 0.5, "temperature", 1.0, 150)],
        3, 2, CPU, 11,
    )
    torch.testing.assert_close(sharp["test_loss"][:, 1], real_only["test_loss"][:, 1])  # the same generation-1 VAE
    assert all(real_only[name].isnan().all() for name in BATCH)
    final = lambda run, name: run[name][:, -1].mean()  # noqa: E731
    assert final(sharp, "tail_mass_ratio") < 0.3 * final(real_only, "tail_mass_ratio")
    assert final(sharp, "tail_mass_ratio") < 0.5 * final(unbiased, "tail_mass_ratio")
    assert final(sharp, "tail_coverage") < final(real_only, "tail_coverage") - 0.3
    assert final(sharp, "entropy") < final(real_only, "entropy") - 0.5
    assert torch.all(sharp["batch_tail_coverage"][:, 1:] < 0.5) and torch.all(unbiased["batch_tail_coverage"][:, 1] > 0.5)


def test_lm_real_data_are_common_random_numbers_across_batches():
    """A run's real sequences depend on its seed index and real count, not on what else is in the batch."""
    base = cell("neural_lm", "fresh", 0.5, "temperature", 1.0, 40)
    alone = neural_lm.simulate([base], 1, 2, CPU, 3)[0]
    crowded = neural_lm.simulate([cell("neural_lm", "replace", 1.0, "top_p", 0.5, 70), base], 1, 2, CPU, 3)[1]
    for name in ("forward_kl", "tail_coverage", "test_loss", "entropy"):
        torch.testing.assert_close(alone[name][:, :2], crowded[name][:, :2])
    assert not torch.equal(alone["forward_kl"][0, 1], alone["forward_kl"][1, 1])  # the two seed indices differ


# ----------------------------------------------------------------------------------------------
# Batching: a run trained inside the batch equals that run trained alone


def assert_runs_trained_alone_match(fit, params, data, counts, randomness):
    with neural_lm.one_cpu_thread(CPU):  # as simulate() trains; the result must not depend on it
        batched = fit(params, data, counts, *randomness)
        alone = [
            fit({k: v[r : r + 1] for k, v in params.items()}, data[r : r + 1, : counts[r]], counts[r : r + 1],
                *(x[:, r : r + 1] for x in randomness))
            for r in range(len(counts))
        ]
    for r in range(len(counts)):
        for name in params:
            assert not torch.allclose(batched[name][r], params[name][r])  # training moved it
            torch.testing.assert_close(batched[name][r : r + 1], alone[r][name], rtol=1e-4, atol=1e-5)


def test_lm_batched_training_equals_training_each_run_alone():
    g = torch.Generator().manual_seed(3)
    source = neural_lm.language(CPU)
    data = neural_lm.sample_sequences(source.transitions.expand(3, -1, -1).float(), 60, g)
    counts = torch.tensor([60, 25, 40])  # unequal pools: padding must never be read
    params = neural_lm.init_params(3, g, CPU)
    draws = torch.rand(40, 3, neural_lm.BATCH, generator=g)
    assert_runs_trained_alone_match(neural_lm.fit, params, data, counts, (draws,))


def test_vae_batched_training_equals_training_each_run_alone():
    g = torch.Generator().manual_seed(3)
    data = vae_digits.digits(CPU).draw("train", 3, 80, g)
    counts = torch.tensor([80, 30, 55])
    params = vae_digits.init_params(3, g, CPU)
    draws = torch.rand(40, 3, vae_digits.BATCH, generator=g)
    eps = torch.randn(40, 3, vae_digits.BATCH, vae_digits.LATENT, generator=g)
    assert_runs_trained_alone_match(vae_digits.fit, params, data, counts, (draws, eps))


# ----------------------------------------------------------------------------------------------
# Regimes and diversity controls


def test_each_regime_trains_on_its_own_mix():
    runs = [
        cell("x", "replace", 1.0, "temperature", 1.0, 10),
        cell("x", "accumulate", 0.5, "temperature", 1.0, 10),
        cell("x", "accumulate_subsample", 0.5, "temperature", 1.0, 10),
        cell("x", "fresh", 0.75, "temperature", 1.0, 10),
        cell("x", "fixed_real", 0.5, "temperature", 1.0, 10),
    ]
    # Items are labelled by origin: 0 first real, 1 fresh real, g + 10 synthetic of generation g.
    data = neural_lm.RecursiveData(runs, torch.zeros(5, 10), torch.Generator().manual_seed(0))
    assert data.first().counts.tolist() == [10] * 5
    for generation in (2, 3):
        pool = data.next(lambda n: torch.ones(5, n), lambda n: torch.full((5, n), 10.0 + generation))
        held = [sorted(pool.items[r, : pool.counts[r]].tolist()) for r in range(5)]
        synthetic = 10.0 + generation
        assert held[0] == [synthetic] * 10
        # M = real_amount / (1 - ratio) = 20 per generation: 10 fresh real + 10 synthetic, kept.
        assert held[1] == [0.0] * 10 + [1.0] * 10 * (generation - 1) + sum(([10.0 + g] * 10 for g in range(2, generation + 1)), [])
        assert len(held[2]) == 20 and set(held[2]) <= set(held[1])
        assert held[3] == [1.0] * 10 + [synthetic] * 30  # M = 40, synthetic share 0.75
        assert held[4] == [0.0] * 10 + [synthetic] * 10  # the generation-1 real data every time


def test_vae_top_p_draws_from_the_highest_density_ball():
    q = torch.tensor([0.05, 0.5, 0.9, 0.999], dtype=torch.float64)
    expected = torch.tensor(scipy.stats.chi2.ppf(q.numpy(), vae_digits.LATENT))
    torch.testing.assert_close(vae_digits.chi2_quantile(q, vae_digits.LATENT), expected, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize(("family", "unsupported"), [(neural_lm, "dedup"), (vae_digits, "top_k")])
def test_unsupported_control_or_bad_value_is_a_clear_value_error(family, unsupported):
    good = cell("any", "replace", 1.0, "temperature", 1.0, 20)
    with pytest.raises(ValueError, match="not supported .* use one of temperature, top_p"):
        family.simulate([replace(good, diversity_control=unsupported, diversity=5)], 1, 1, CPU, 0)
    with pytest.raises(ValueError, match="ratio < 1"):
        family.simulate([replace(good, regime="fixed_real", ratio=1.0)], 1, 1, CPU, 0)
    with pytest.raises(ValueError, match="top_p"):
        family.simulate([replace(good, diversity_control="top_p", diversity=math.inf)], 1, 1, CPU, 0)

"""The simulation registry: assertions that state a lab proposition get its result as a stance."""

from __future__ import annotations

import pytest

from agent.assertions import split_claim
from agent.sim_evidence import PROPOSITIONS, simulation_stances
from simulations.sweep import SweepConfig, run_sweep


@pytest.fixture(scope="module")
def analysis():
    return run_sweep(SweepConfig.budget("tiny", device="cpu")).analysis


def stances(text, analysis):
    (assertion,) = split_claim("C1", text)
    return {s.judged.ref: s for s in simulation_stances(assertion, analysis)}


def test_a_denied_proposition_takes_the_opposite_stance(analysis):
    affirmed = stances("Collapse is a function of the synthetic-to-real ratio", analysis)["simulations.ratio"]
    denied = stances("Collapse is not a function of the synthetic-to-real ratio", analysis)["simulations.ratio"]
    # The tiny lab: the unbiased sampler never crosses at any share, so "the ratio drives it" is contradicted.
    assert affirmed.judged.stance == "contradicts" and denied.judged.stance == "supports"
    assert "95% CI" in affirmed.detail or "bootstrap band" in affirmed.detail
    assert affirmed.judged.source == "simulation"


def test_assertions_the_lab_does_not_test_get_no_simulation_stance(analysis):
    assert stances("Induction heads form in a phase change early in training", analysis) == {}
    assert stances("High-diversity synthetic data improves generalization even when the synthetic proportion is large",
                   analysis) == {}  # no collapse predicate: the lab's ratio proposition is not what it states
    # A scope condition the lab would agree with does not make the main assertion testable.
    assert stances("As synthetic data crowds out rare patterns, the model stops building internal structure for them",
                   analysis) == {}


def test_sampler_bias_and_tails_first_are_decided_by_the_lab(analysis):
    found = stances("Loss of diversity in the synthetic data enables collapse", analysis)
    assert found["simulations.sampler_bias"].judged.stance == "supports"
    tails = stances("Recursive training makes rare events vanish first", analysis)["simulations.tails_first"]
    assert tails.judged.stance == "supports" and "tail coverage" in tails.detail


def test_inevitability_holds_only_where_the_lab_lost_tails_and_keeping_real_data_did_not_help(analysis):
    found = stances("Training on model-generated data causes irreversible collapse", analysis)["simulations.unavoidable"]
    # The tiny lab: pure recursion loses tail coverage, while keeping the real data keeps the tail mass,
    # so inevitability holds only under replacement.
    assert found.judged.stance == "qualifies"
    assert "replacing the data each generation" in found.detail and "kept the tail mass" in found.detail
    denied = stances("Collapse is not inevitable when models train on generated data", analysis)["simulations.unavoidable"]
    assert denied.denies and denied.judged.stance == "qualifies"


def test_no_lab_result_means_no_stance():
    (assertion,) = split_claim("C1", "Collapse is a function of the synthetic ratio")
    assert simulation_stances(assertion, None) == []
    assert {p.key for p in PROPOSITIONS} == {"ratio", "sampler_bias", "real_amount", "regime", "tails_first",
                                             "unavoidable"}

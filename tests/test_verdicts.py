"""The verdict calculus: labels follow from stances by fixed rules, whoever judged them."""

from __future__ import annotations

import pytest

from agent.verdicts import AssertionVerdict, Judged, assertion_verdict, claim_label, claim_verdict, durability


def j(ref: str, stance, source="literature", newer=False, confidence=1.0) -> Judged:
    return Judged(source=source, ref=ref, stance=stance, newer_than_claim=newer, confidence=confidence)


@pytest.mark.parametrize(
    "stances, label",
    [
        (["supports", "supports"], "supported"),
        (["supports", "qualifies"], "partly_supported"),
        (["qualifies"], "partly_supported"),
        (["supports", "contradicts"], "contested"),
        (["qualifies", "contradicts"], "contested"),
        (["contradicts"], "refuted"),
        (["background", "background", "unrelated"], "insufficient_evidence"),
        ([None, None], "insufficient_evidence"),
        ([], "insufficient_evidence"),
    ],
)
def test_assertion_labels_follow_from_evidence_stances(stances, label):
    verdict = assertion_verdict([j(f"p{i}", s) for i, s in enumerate(stances)])
    assert verdict.label == label
    assert len(verdict.rests_on) == sum(s in ("supports", "qualifies", "contradicts") for s in stances)


def test_background_and_existence_are_never_support():
    # Ten on-topic papers that take no position do not make an assertion supported.
    verdict = assertion_verdict([j(f"p{i}", "background") for i in range(10)])
    assert verdict.label == "insufficient_evidence" and verdict.rests_on == []
    assert "take no position" in verdict.reason


def test_one_source_votes_once_with_its_most_confident_judgement():
    verdict = assertion_verdict([j("p1", "supports", confidence=0.4), j("p1", "contradicts", confidence=0.9)])
    assert verdict.label == "refuted" and verdict.rests_on == ["p1 contradicts"]


@pytest.mark.parametrize(
    "labels, claim",
    [
        (["supported", "supported"], "supported"),
        (["supported", "insufficient_evidence"], "partly_supported"),
        (["supported", "partly_supported"], "partly_supported"),
        (["supported", "refuted"], "contested"),
        (["refuted", "insufficient_evidence"], "refuted"),
        (["contested", "supported"], "contested"),
        (["insufficient_evidence"], "insufficient_evidence"),
    ],
)
def test_claim_labels_follow_from_assertion_labels(labels, claim):
    assert claim_label([AssertionVerdict(label=label, rests_on=[], reason="") for label in labels]) == claim


def test_durability_needs_independent_newer_support_and_no_newer_dissent():
    supported = [j("old", "supports"), j("new", "supports", newer=True)]
    assert durability(supported, "supported")[0] == "durable"
    assert durability([j("old", "supports"), j("old2", "supports")], "supported")[0] == "unassessed"
    assert durability([j("new", "supports", newer=True)], "supported")[0] == "unassessed"  # one source is not a replication
    state, reason = durability([*supported, j("newer", "qualifies", newer=True)], "partly_supported")
    assert state == "perishable" and "newer" in reason
    assert durability([j("sim.ratio", "supports", source="simulation"), j("old", "supports")], "supported")[0] == "durable"
    # The claim's own citation is its origin, not a replication.
    assert durability([j("sim.ratio", "supports", source="simulation"), j("own", "supports", source="cited")],
                      "supported")[0] == "unassessed"


def test_claim_verdict_lists_what_it_rests_on():
    first = [j("a", "supports", newer=True), j("b", "supports")]
    second = [j("c", "background")]
    verdict = claim_verdict([(assertion_verdict(first), first), (assertion_verdict(second), second)])
    assert verdict.label == "partly_supported"
    assert "1 assertion(s) supported" in verdict.reason and "1 assertion(s) insufficient evidence" in verdict.reason
    assert verdict.durability == "unassessed"  # not every assertion is supported

"""Claims split into assertions by clause structure, with scope conditions, as spans of the claim."""

from __future__ import annotations

from agent.assertions import coverage, split_claim


def test_clauses_become_assertions_and_citations_are_not_part_of_them():
    text = ("Optimising against a learned proxy improves the true objective at first; beyond a point the true "
            "objective degrades — the gap grows with optimisation pressure (2022, arXiv:2210.10760).")
    parts = split_claim("C1", text)
    assert [p.id for p in parts] == ["C1.a", "C1.b", "C1.c"]
    assert parts[0].text == "Optimising against a learned proxy improves the true objective at first"
    assert parts[2].text == "the gap grows with optimisation pressure"
    for p in parts:
        assert text[p.start : p.end] == p.text and "arXiv" not in p.text
    assert coverage(text, parts) == 1.0


def test_scope_conditions_are_listed_and_a_following_extension_is_scope_not_an_assertion():
    text = ("Retrieval-augmented models answer rare-entity questions better, even when the retriever is noisy. "
            "This held across three model sizes.")
    (only,) = split_claim("C7", text)
    assert only.scope == ["even when the retriever is noisy", "across three model sizes"]
    assert only.text.endswith("even when the retriever is noisy")


def test_contrastive_joints_and_leading_connectives_split_cleanly():
    text = "Label noise is NOT what matters; instead, the input distribution does the work, while the format sets the task."
    parts = split_claim("C2", text)
    assert [p.text for p in parts] == ["Label noise is NOT what matters", "the input distribution does the work",
                                       "the format sets the task"]


def test_any_text_gives_at_least_one_assertion():
    (only,) = split_claim("C3", "Scaling helps (2021).")
    assert only.text == "Scaling helps"
    assert coverage("A B C D", []) == 0.0

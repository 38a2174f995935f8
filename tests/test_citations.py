"""Citation extraction (prose, Markdown, BibTeX) and offline shape checks."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import pytest

from tools.arxiv_id import check_shape, month_ceiling
from tools.arxiv_id import parse as parse_arxiv_id
from tools.citations import extract_citations

RUN_DATE = date(2026, 11, 24)
INQUIRY = Path(__file__).resolve().parents[1] / "prompts" / "inquiry.md"


@pytest.mark.parametrize(
    ("text", "arxiv_id", "version"),
    [
        ("Tails vanish (arXiv:2305.17493).", "2305.17493", None),
        ("Tails vanish (arXiv 2305.17493v2).", "2305.17493", 2),
        ("See https://arxiv.org/abs/2406.08464 for Magpie.", "2406.08464", None),
        ("See arxiv.org/pdf/2406.08464v3.pdf.", "2406.08464", 3),
        ("Tails vanish (Shumailov et al., 2023; 2305.17493).", "2305.17493", None),
        ("AdS/CFT was proposed in hep-th/9711200.", "hep-th/9711200", None),
        ("A knot result, arXiv:math.GT/0309136v2, is cited.", "math/0309136", 2),
        ("[arXiv:2404.01413](https://arxiv.org/abs/2404.01413) shows accumulation helps.", "2404.01413", None),
    ],
)
def test_identifier_shapes_are_found(text: str, arxiv_id: str, version: int | None) -> None:
    [citation] = extract_citations(text)
    assert (citation.arxiv_id, citation.version) == (arxiv_id, version)


def test_broken_identifiers_are_kept_as_written() -> None:
    citations = extract_citations("MAUVE (arXiv:2102_01454); tails (arXiv:2305.174); laws (arXiv:2402.O7043).")
    assert [c.arxiv_id for c in citations] == ["2102_01454", "2305.174", "2402.O7043"]
    assert all(check_shape(c.arxiv_id, RUN_DATE).status == "malformed" for c in citations)


def test_each_id_gets_its_own_stated_year() -> None:
    text = "Diverse synthetic data can improve generalization (2024, arXiv:2410.18447; 2026, arXiv:2603.29791)."
    citations = extract_citations(text)
    assert [(c.arxiv_id, c.stated_year) for c in citations] == [("2410.18447", 2024), ("2603.29791", 2026)]
    assert all(c.context == text for c in citations)


def test_identifier_digits_are_never_read_as_a_year() -> None:
    [citation] = extract_citations("A result from December (arXiv:2012.12345).")
    assert citation.stated_year is None


def test_dated_claim_without_identifier_is_one_no_id_citation_with_its_range() -> None:
    [citation] = extract_citations("Collapse is NOT simply a function of the ratio; diversity matters (2024–2025).")
    assert citation.arxiv_id is None
    assert (citation.stated_year, citation.stated_years, citation.year_span) == (2024, "2024–2025", (2024, 2025))


def test_author_year_citation_without_identifier() -> None:
    [citation] = extract_citations("LLM families converge on the same ideas (Jiang et al., 2025).")
    assert citation.arxiv_id is None and citation.stated_year == 2025 and citation.authors_named == ["Jiang"]


def test_prose_that_only_mentions_years_or_the_word_arxiv_is_no_citation() -> None:
    assert extract_citations("Findings span 2023–2026, tracking the tension.\nCite arXiv IDs; flag what you cannot ground.") == []


def test_anchor_list_line_uses_its_label_as_description() -> None:
    [citation] = extract_citations("– arXiv:2305.17493 (2023): Recursion and tail erasure.")
    assert (citation.arxiv_id, citation.stated_year, citation.description) == ("2305.17493", 2023, "Recursion and tail erasure.")


def test_authors_title_and_system_names_are_kept() -> None:
    text = 'Racca, Valko & Sanyal (2026) study "Language Generation with Replay and Model Collapse" with ToolFlow (arXiv:2603.11784).'
    [citation] = extract_citations(text)
    assert citation.authors_named == ["Racca", "Valko", "Sanyal"]
    assert citation.claimed_title == "Language Generation with Replay and Model Collapse"
    assert "ToolFlow" in citation.named_terms
    [et_al] = extract_citations("Kynkäänniemi et al. (2019) estimate precision and recall (arXiv:1904.06991).")
    assert et_al.authors_named == ["Kynkäänniemi"]


def test_sentences_split_but_not_at_et_al() -> None:
    citations = extract_citations("Shumailov et al. (2023) found tail loss (arXiv:2305.17493). Later work disagreed (arXiv:2404.01413).")
    assert [c.context.split(" (")[0] for c in citations] == ["Shumailov et al.", "Later work disagreed"]
    assert citations[1].line == 1


def test_bibtex_entries() -> None:
    bib = """
@article{shumailov2023curse,
  title = {The Curse of Recursion: Training on Generated Data Makes Models Forget},
  author = {Shumailov, Ilia and Shumaylov, Zakhar and Zhao, Yiren},
  year = {2023},
  eprint = {2305.17493},
  archivePrefix = {arXiv},
}
@misc{gerstgrasser2024,
  title = "Is Model Collapse Inevitable?",
  author = "Matthias Gerstgrasser and Rylan Schaeffer",
  journal = {arXiv preprint arXiv:2404.01413v2},
  year = 2024
}
@inproceedings{nobody2022,
  title = {A Paper Without Identifier},
  author = {Doe, Jane},
  year = {2022},
}
"""
    first, second, third = extract_citations(bib)
    assert (first.arxiv_id, first.stated_year, first.line) == ("2305.17493", 2023, 2)
    assert first.claimed_title.startswith("The Curse of Recursion")
    assert first.authors_named == ["Shumailov", "Shumaylov", "Zhao"]
    assert (second.arxiv_id, second.version, second.authors_named) == ("2404.01413", 2, ["Gerstgrasser", "Schaeffer"])
    assert (third.arxiv_id, third.stated_year) == (None, 2022)


def test_prose_around_a_bibtex_entry_is_read_too() -> None:
    text = (
        "Tails vanish first (arXiv:2305.17493).\n"
        "@article{vendi, eprint={2210.02410}, archivePrefix={arXiv},\n  title={The Vendi Score}, year={2022}}\n"
        "Accumulation bounds the error (Gerstgrasser et al., 2024, arXiv:2404.01413).\n"
    )
    found = [(c.line, c.arxiv_id) for c in extract_citations(text)]
    assert found == [(1, "2305.17493"), (2, "2210.02410"), (4, "2404.01413")]


def test_default_inquiry_citations() -> None:
    citations = extract_citations(INQUIRY.read_text(encoding="utf-8"))
    with_ids = [(c.arxiv_id, c.stated_year) for c in citations if c.arxiv_id]
    assert ("2410.18447", 2024) in with_ids and ("2603.29791", 2026) in with_ids
    assert len(with_ids) == 8  # four claims' IDs and four anchors
    [no_id] = [c for c in citations if c.arxiv_id is None]
    assert no_id.stated_years == "2024–2025"


@pytest.mark.parametrize(
    ("written", "status"),
    [
        ("2313.04567", "nonexistent"),  # month 13
        ("2300.04567", "nonexistent"),  # month 00
        ("2505.48213", "nonexistent"),  # beyond May 2025's submissions
        ("1403.12345", "nonexistent"),  # five digits before 2015
        ("1501.1234", "nonexistent"),  # four digits from 2015
        ("2712.00123", "nonexistent"),  # after the run date
        ("0612.1234", "nonexistent"),  # new style before 2007-04
        ("hep-th/0801001", "nonexistent"),  # old style after 2007-03
        ("foo-bar/9901001", "nonexistent"),  # no such archive
        ("2305.174", "malformed"),
        ("2305.17493v0", "malformed"),
        ("hep-th/99010", "malformed"),
    ],
)
def test_impossible_identifiers(written: str, status: str) -> None:
    assert check_shape(written, RUN_DATE).status == status


@pytest.mark.parametrize(
    "written", ["2305.17493", "2410.24258", "0704.0001", "1412.9999", "2611.00001", "hep-th/9901001", "math.GT/0309136", "2305.17493v3"]
)
def test_plausible_identifiers_pass(written: str) -> None:
    # 2410.24258 exists although October 2024 counted 24,226 submissions: the ceiling has slack
    assert check_shape(written, RUN_DATE) is None


def test_parse_and_ceiling() -> None:
    assert parse_arxiv_id("math.GT/0309136v2").model_dump(include={"canonical", "version", "year", "style"}) == {
        "canonical": "math/0309136", "version": 2, "year": 2003, "style": "old"
    }
    assert month_ceiling(2024, 10) > 24258 and month_ceiling(2013, 5) == 9999

"""tools.arxiv_id: the one home of identifier rules — written forms, canonical form, validity."""

from __future__ import annotations

from datetime import date

import pytest

from tools.arxiv_id import ID_AS_WRITTEN, canonical, check_shape, find_ids, find_mentions, mask, parse

RUN_DATE = date(2026, 11, 24)


@pytest.mark.parametrize(
    ("written", "canonical_id", "version"),
    [
        ("2305.17493", "2305.17493", None),
        ("arXiv:2305.17493v2", "2305.17493", 2),
        ("ARXIV: 2305.17493", "2305.17493", None),
        ("https://arxiv.org/abs/2305.17493v3", "2305.17493", 3),
        ("https://arxiv.org/pdf/2305.17493v2.pdf", "2305.17493", 2),
        ("arxiv.org/html/2305.17493v1", "2305.17493", 1),
        ("10.48550/arXiv.2305.17493", "2305.17493", None),
        ("https://doi.org/10.48550/arXiv.2305.17493", "2305.17493", None),
        ("doi:10.48550/ARXIV.2305.17493", "2305.17493", None),
        ("math.GT/0309136v2", "math/0309136", 2),
        ("hep-th/9711200", "hep-th/9711200", None),
    ],
)
def test_every_written_form_parses_to_one_canonical_id(written, canonical_id, version) -> None:
    parsed = parse(written)
    assert parsed is not None and (parsed.canonical, parsed.version) == (canonical_id, version)
    assert canonical(written) == canonical_id


@pytest.mark.parametrize(
    ("text", "ids"),
    [
        ("arXiv's BibTeX export writes doi = {10.48550/arXiv.2305.17493}.", ["2305.17493"]),
        ("DBLP: CoRR abs/2404.01413 (2024).", ["2404.01413"]),
        ("See https://arxiv.org/abs/2406.08464v2, and arxiv.org/pdf/2410.18447.pdf.", ["2406.08464", "2410.18447"]),
        ("An arXiv preprint, 2305.17493, argues this.", ["2305.17493"]),  # bare, but arXiv is being cited
        ("Tails vanish [2305.17493].", ["2305.17493"]),  # bare, in brackets
        ("2305.17493", ["2305.17493"]),  # the identifier alone (e.g. `claims add --cite`)
        ("Version 2305.17493 of the table has 1.5 rows.", []),  # a number in prose is no citation
        ("Month 13 is still a citation: arXiv:2313.04567.", ["2313.04567"]),  # shape ok; check_shape flags it
    ],
)
def test_find_ids(text, ids) -> None:
    assert find_ids(text) == ids


def test_broken_tokens_after_a_prefix_are_mentions_kept_as_written() -> None:
    mentions = find_mentions("Bad: arXiv:2305.174 and https://arxiv.org/abs/2402.O7043 and arXiv:2102_01454.")
    assert [m.token for m in mentions] == ["2305.174", "2402.O7043", "2102_01454"]
    assert all(parse(m.token) is None for m in mentions) and find_ids(" ".join(m.written for m in mentions)) == []


def test_mask_blanks_identifiers_so_no_year_is_read_in_them() -> None:
    text = "(2023, arXiv:2012.12345; 10.48550/arXiv.2011.00001)"
    masked = mask(text)
    assert len(masked) == len(text) and "2012" not in masked and "2011" not in masked and "2023" in masked


def test_the_anchor_grammar_pattern_takes_every_prefix() -> None:
    import re

    pattern = re.compile(rf"^({ID_AS_WRITTEN})$", re.IGNORECASE)
    for written in ("arXiv:2305.17493", "https://arxiv.org/abs/2305.17493v2", "10.48550/arXiv.2305.17493", "hep-th/9711200"):
        assert pattern.match(written), written


@pytest.mark.parametrize(
    ("written", "status"),
    [("2313.04567", "nonexistent"), ("2305.17493v0", "malformed"), ("10.48550/arXiv.2313.04567", "nonexistent"), ("2305.17493", None)],
)
def test_validity_is_checked_on_every_form(written, status) -> None:
    result = check_shape(written, RUN_DATE)
    assert (result.status if result else None) == status

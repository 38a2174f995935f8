"""The inquiry parser reads the shape of an inquiry prompt: the default one, other topics, broken files."""

from __future__ import annotations

from pathlib import Path

import pytest

from agent.inquiry import (
    InquiryError,
    default_inquiry_text,
    find_arxiv_ids,
    load_default_inquiry,
    load_inquiry,
    parse_dates,
    parse_inquiry,
    tag_text,
)

INQUIRIES = Path(__file__).parent / "data" / "inquiries"
SEED = Path(__file__).resolve().parents[2] / "shared" / "seed" / "000_35c96e8b9eecd7dc.txt"


@pytest.mark.skipif(not SEED.exists(), reason="the seed file is not next to this checkout")
def test_default_inquiry_is_the_seed_research_prompt_verbatim():
    seed = SEED.read_text(encoding="utf-8")
    section = seed[seed.index("You are a researcher") : seed.index("Next inquiring lines")]
    assert default_inquiry_text().strip() == section.strip()


def test_default_inquiry_claims_dates_and_citations():
    inquiry = load_default_inquiry()
    assert "ratio" in inquiry.question and inquiry.question.endswith("?")
    claims = {claim.id: claim for claim in inquiry.claims}
    assert list(claims) == ["C1", "C2", "C3", "C4"]
    assert [(c.dated, c.year_start, c.year_end) for c in claims.values()] == [
        ("2023", 2023, 2023),
        ("2024–2025", 2024, 2025),
        ("2024; 2026", 2024, 2026),
        ("2026", 2026, 2026),
    ]
    assert [c.citations for c in claims.values()] == [["2305.17493"], [], ["2410.18447", "2603.29791"], ["2603.03415"]]
    # the whole bullet, trailing sentence included, whitespace normalised
    assert claims["C1"].text.endswith("(2023, arXiv:2305.17493). This held across VAEs, GMMs, and LLMs.")
    assert all(c.origin == "inquiry" for c in claims.values())


def test_default_inquiry_tags_and_durability():
    claims = {claim.id: claim for claim in load_default_inquiry().claims}
    assert "tails" in claims["C1"].tags
    assert {"ratio", "diversity", "quality", "complexity"} <= set(claims["C2"].tags)
    assert "diversity" in claims["C3"].tags
    assert "representation" in claims["C4"].tags
    # "Separate the durable claim (tail erasure happens) from the perishable one (ratio is what matters)."
    assert [c.durability for c in claims.values()] == ["durable", "perishable", "unassessed", "unassessed"]


def test_default_inquiry_anchors_and_tasks():
    inquiry = load_default_inquiry()
    assert [(a.arxiv_id, a.year) for a in inquiry.anchors] == [
        ("2305.17493", 2023),
        ("2410.18447", 2024),
        ("2603.03415", 2026),
        ("2603.29791", 2026),
    ]
    assert inquiry.anchors[0].label == "Recursion and tail erasure."
    tasks = {task.id: task.text for task in inquiry.tasks}
    assert list(tasks) == ["1", "1a", "1b", "2", "3", "3a", "3b"]
    assert tasks["1"].startswith("RE-TEST THE RATIO HYPOTHESIS.") and "(a)" not in tasks["1"]
    assert tasks["1a"].startswith("any recent work") and tasks["1a"].endswith("scale with ratio?")
    assert tasks["3b"].startswith("Do multi-agent")


def test_second_topic_markdown_inquiry():
    inquiry = load_inquiry(INQUIRIES / "in_context_learning.md")
    assert inquiry.question.startswith("Our open question: do models *learn*")
    claims = {claim.id: claim for claim in inquiry.claims}
    assert list(claims) == ["C1", "C2", "C3", "C4", "C5", "C6"]
    # wrapped bullet lines join; version suffix dropped
    assert claims["C1"].text.startswith("Sufficiently large") and "  " not in claims["C1"].text
    assert claims["C1"].citations == ["2005.14165"] and claims["C1"].dated == "2020"
    # author–year citation next to an ID
    assert (claims["C2"].dated, claims["C2"].citations) == ("2022", ["2202.12837"])
    # explicit markers win and are removed from the text
    assert claims["C3"].durability == "durable" and not claims["C3"].text.endswith("]")
    assert claims["C5"].durability == "perishable" and claims["C5"].citations == ["2303.03846"]
    # a short range "2022–23"
    assert (claims["C4"].dated, claims["C4"].year_start, claims["C4"].year_end) == ("2022–23", 2022, 2023)
    # an undated, uncited claim
    assert (claims["C6"].dated, claims["C6"].year_start, claims["C6"].citations) == (None, None, [])
    assert [c.durability for c in (claims["C1"], claims["C2"], claims["C4"], claims["C6"])] == ["unassessed"] * 4
    # a vocabulary that fits other topics, and collapse-specific tags only where they fit
    assert "in-context-learning" in claims["C3"].tags
    assert not any({"ratio", "tails", "synthetic-generation"} & set(c.tags) for c in claims.values())
    assert [(a.arxiv_id, a.year, a.label) for a in inquiry.anchors] == [
        ("2005.14165", 2020, "Few-shot prompting at scale."),
        ("2202.12837", 2022, "Demonstrations and label noise."),
        ("2209.11895", None, "Induction heads."),
    ]
    tasks = {task.id: task.text for task in inquiry.tasks}
    assert list(tasks) == ["1", "1a", "1b", "2", "3"]
    assert tasks["1b"] == "does the answer depend on model size?"


def test_second_topic_plain_inquiry_with_inline_tasks_and_durability():
    inquiry = load_inquiry(INQUIRIES / "reward_hacking.txt")
    assert inquiry.question.startswith("The core question remains open: is reward hacking")
    assert len(inquiry.claims) == 4 and len(inquiry.anchors) == 2
    assert [task.id for task in inquiry.tasks] == ["1", "2"]
    assert inquiry.tasks[1].text.startswith("Find work from the last 6 months")
    assert [c.durability for c in inquiry.claims] == ["durable", "unassessed", "unassessed", "perishable"]
    assert [c.year_start for c in inquiry.claims] == [2022, 2022, 2023, 2024]


def test_bullets_under_a_references_heading_are_not_claims():
    text = (
        "Open question: does X hold?\n\nWhat we found:\n- X holds in small models (2021).\n\n"
        "References:\n- Smith et al. 2021, a survey of X.\n- arXiv:2305.17493 (2023): Recursion.\n"
    )
    inquiry = parse_inquiry(text)
    assert [claim.text for claim in inquiry.claims] == ["X holds in small models (2021)."]
    assert [anchor.arxiv_id for anchor in inquiry.anchors] == ["2305.17493"]
    assert inquiry.tasks == []


def test_a_claim_matching_no_durability_description_stays_unassessed():
    text = (
        "What was found:\n• Attention sinks appear in every layer (2024).\n• Tokenizers shape arithmetic (2023).\n\n"
        "(1) Separate the durable claim (attention sinks appear) from the perishable one (sinks need softmax).\n"
    )
    claims = parse_inquiry(text).claims
    assert [c.durability for c in claims] == ["durable", "unassessed"]


def test_durability_descriptions_in_quotes():
    text = (
        "What was found:\n• Attention sinks appear in every layer (2024).\n• Tokenizers shape arithmetic (2023).\n\n"
        'Keep the durable finding "attention sinks appear" apart from the perishable one "tokenizers shape arithmetic".\n'
    )
    assert [c.durability for c in parse_inquiry(text).claims] == ["durable", "perishable"]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("see arXiv:2305.17493v2 and 2410.18447", ["2305.17493", "2410.18447"]),
        ("https://arxiv.org/abs/2303.03846 then arXiv: hep-th/9901001v1", ["2303.03846", "hep-th/9901001"]),
        ("twice: 2305.17493, arXiv:2305.17493v1", ["2305.17493"]),
        ("numbers that are not IDs: 1234.5678, 3.14159, 12305.17493, 2313.00001", []),
        # the parser cites what grounding checks: an impossible month is kept (grounding flags it)
        ("Model collapse accelerates (Lee et al., 2023, arXiv:2313.04567).", ["2313.04567"]),
        ("arXiv's own BibTeX: doi 10.48550/arXiv.2305.17493 and https://doi.org/10.48550/arXiv.2404.01413", ["2305.17493", "2404.01413"]),
        ("a broken one (arXiv:2305.174) is no identifier; math.GT/0309136v2 keeps its archive", ["math/0309136"]),
    ],
)
def test_find_arxiv_ids(text, expected):
    assert find_arxiv_ids(text) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("x (2024–2025)", ("2024–2025", 2024, 2025)),
        ("x (2024-25)", ("2024-25", 2024, 2025)),
        ("x (Smith et al., 2019) and [2021]", ("2019; 2021", 2019, 2021)),
        ("x (arXiv:2012.01234)", (None, None, None)),  # the ID's "2012" is not a year
        ("in 2023 we saw x", (None, None, None)),  # only parenthesised years date a claim
    ],
)
def test_parse_dates(text, expected):
    assert parse_dates(text) == expected


def test_claim_citations_are_the_ids_grounding_checks():
    from datetime import date

    from tools.arxiv_id import check_shape
    from tools.citations import extract_citations

    text = "Tails vanish (2023, arXiv:2305.17493v2); later (arXiv:2313.04567) and [2404.01413] and doi:10.48550/arXiv.2410.18447."
    claim = parse_inquiry(f"What was found:\n• {text}\n").claims[0]
    checked = [c.arxiv_id for c in extract_citations(claim.text)]
    assert claim.citations == checked == ["2305.17493", "2313.04567", "2404.01413", "2410.18447"]
    assert check_shape("2313.04567", date(2026, 11, 24)).status == "nonexistent"  # cited here, flagged by grounding


def test_tags_come_from_the_vocabulary_or_nothing():
    assert tag_text("Rare events vanish from the long tail as the synthetic proportion grows") == [
        "ratio",
        "tails",
        "synthetic-generation",
    ]
    assert tag_text("The cat sat on the mat.") == []


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("empty.md", "empty"),
        ("only_headings.md", "no claims found"),
        ("no_bullets.md", "no claims found"),
        ("binary.bin", "not UTF-8"),
        ("latin1.md", "not UTF-8"),
        ("missing.md", "cannot read"),
    ],
)
def test_broken_inquiries_raise_one_line_errors(name, message):
    with pytest.raises(InquiryError, match=message) as raised:
        load_inquiry(INQUIRIES / name)
    assert "\n" not in str(raised.value)


def test_binary_text_is_rejected():
    with pytest.raises(InquiryError, match="binary"):
        parse_inquiry("• claim\x00\x01 (2023)")

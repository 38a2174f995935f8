"""Hostile input at every text entry point: only the documented errors, in time linear in the input.

Property tests (hypothesis) feed the inquiry parser, the citation extractor, the claims-file reader,
`user_claim` and the arXiv ID parser texts built from the characters and tokens their patterns care
about, repeated up to about 100 KB (repetition is what exposes backtracking that is worse than
linear). Then one plain test per hostile value the hardening names, megabyte-scale shapes that
used to backtrack for minutes, and garbled caches: each is set aside and rebuilt, never a traceback.
"""

from __future__ import annotations

import json
import os
import sqlite3
import threading
from collections.abc import Callable
from datetime import date
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agent.claims_store import MAX_JSON_DEPTH, ClaimsStore, ClaimsStoreError, read_claims_file, user_claim
from agent.inquiry import InquiryError, parse_inquiry
from simulations.sweep import SweepConfig, _cached, run_sweep
from tools.arxiv_id import check_shape, find_ids, parse
from tools.cache import LookupCache
from tools.citations import MAX_SENTENCE, extract_citations, split_sentences
from tools.embeddings import get_embedder
from tools.grounding import verify_text
from tools.papers import Paper
from tools.snapshot import Snapshot
from tools.sources import open_source

TODAY = date(2026, 11, 24)

# --- generators ----------------------------------------------------------------------------------

# Tokens the patterns look for (names, years, IDs in every written form, brackets, quotes, emphasis,
# BibTeX, Markdown), and single characters around them: full-width digits, other scripts' digits,
# odd whitespace, combining marks.
_TOKENS = [
    "Smith", "O'Brien", "van der", "et al.", " and ", " & ", ", ", "; ", "colleagues", "(", ")", "[", "]", "{", "}",
    "2023", "2024–2025", "1999", "arXiv:", "arXiv ", "2305.17493", "2313.04567", "v2", "v" + "9" * 50,
    "https://arxiv.org/abs/", "10.48550/arXiv.", "CoRR abs/", "math/0309136", "２４０４.０１４１３", "٢٤٠٤",
    "“", "”", "‘", "’", "'", '"', "*", "**", "_", "`", "```", "~~~", "|", "- ", "• ", "# ", "1. ", "(a) ",
    "@article{k,", "author={", "title={", "eprint={", "= ", "Is It? Yes", "e.g. ", "A. ", "?", "!", ".", ":",
    "durable (", "perishable “", "What the library found:", "\n", "\n\n", "\t", "  ", "\u2028", "\u0301", "\x00",
    "Shumailov, I., ", "(2023). ", "[Title Text](https://arxiv.org/abs/2305.17493)", "9" * 4_400,
]
_ATOMS = st.one_of(st.sampled_from(_TOKENS), st.characters(codec="utf-8", exclude_categories=("Cs",)))
# A seed of up to a few hundred atoms, repeated up to the size that exposes super-linear work.
_HOSTILE = st.builds(
    lambda atoms, times: "".join(atoms) * times,
    st.lists(_ATOMS, min_size=1, max_size=60),
    st.integers(min_value=1, max_value=400),
).filter(lambda text: len(text) <= 120_000)

# 25 examples a property keeps this file near 15 s on 2 cores; HOSTILE_EXAMPLES=500 searches harder.
_PROPERTY = settings(
    max_examples=int(os.environ.get("HOSTILE_EXAMPLES", "25")), deadline=2_000,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


# --- property tests ------------------------------------------------------------------------------


@_PROPERTY
@given(_HOSTILE)
def test_citation_extractor_never_raises(text: str) -> None:
    for citation in extract_citations(text):
        assert len(citation.context) <= len(text)


@_PROPERTY
@given(_HOSTILE)
def test_arxiv_id_parser_and_finder_never_raise(text: str) -> None:
    parsed = parse(text)
    assert parsed is None or parsed.canonical.isascii()
    assert all(parse(arxiv_id) is not None for arxiv_id in find_ids(text))
    shape = check_shape(text[:200], TODAY)
    assert shape is None or shape.status in ("malformed", "nonexistent")


@_PROPERTY
@given(_HOSTILE)
def test_inquiry_parser_raises_only_inquiry_error(text: str) -> None:
    try:
        inquiry = parse_inquiry(text)
    except InquiryError as error:
        assert "\n" not in str(error)
        return
    assert inquiry.claims


@_PROPERTY
@given(_HOSTILE, st.sampled_from([".jsonl", ".json", ".md"]))
def test_claims_file_reader_raises_only_claims_store_error(tmp_path_factory, text: str, suffix: str) -> None:
    path = tmp_path_factory.mktemp("claims") / f"claims{suffix}"
    path.write_text(text, encoding="utf-8", errors="surrogatepass")
    try:
        read_claims_file(path)
    except ClaimsStoreError as error:
        assert "\n" not in str(error).strip()


_JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(_ATOMS.filter(lambda a: len(a) == 1), max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.sampled_from(["text", "id", "dated", "tags", "citations", "x"]), inner, max_size=4),
    max_leaves=30,
)


@_PROPERTY
@given(st.lists(_JSON, max_size=5))
def test_claims_file_records_of_any_json_shape(tmp_path_factory, records: list[Any]) -> None:
    path = tmp_path_factory.mktemp("claims") / "claims.jsonl"
    path.write_text("".join(json.dumps(record) + "\n" for record in records), encoding="utf-8")
    try:
        read_claims_file(path)
    except ClaimsStoreError:
        pass


@_PROPERTY
@given(
    _HOSTILE,
    st.one_of(st.none(), st.text(max_size=30), st.sampled_from(["2024", "2025-2023", "2099", "2023–2025", "soon"])),
    st.one_of(st.none(), st.lists(st.text(max_size=8), max_size=3)),
    st.one_of(st.none(), st.lists(st.sampled_from(["2305.17493", "2313.04567", "arXiv:２４０４.０１４１３", "x", ""]), max_size=3)),
)
def test_user_claim_raises_only_claims_store_error(text: str, dated: str | None, tags: list[str] | None, citations: list[str] | None) -> None:
    try:
        claim = user_claim(text, "U1", dated=dated, tags=tags, citations=citations, today=TODAY)
    except ClaimsStoreError as error:
        assert "\n" not in str(error)
        return
    assert all(check_shape(arxiv_id, TODAY) is None for arxiv_id in claim.citations)
    assert claim.year_end is None or claim.year_end <= TODAY.year


# --- linear time on shapes that used to backtrack ------------------------------------------------


def _finishes(work: Callable[[], object], seconds: float = 60.0) -> object:
    """Run `work`; fail if it has not returned after `seconds` (a guard against a hang, not a figure:
    each of these takes well under a second now, and took minutes to days before)."""
    result: list[object] = []
    worker = threading.Thread(target=lambda: result.append(work()), daemon=True)
    worker.start()
    worker.join(seconds)
    assert not worker.is_alive(), f"still running after {seconds} s: super-linear again?"
    return result[0] if result else None


@pytest.mark.parametrize(
    "text",
    [
        "a" * 200_000,  # one 200 KB line with no spaces: minutes before (quadratic in the run)
        "Abcdefg'h-ij" * 17_000,
        "_a" * 100_000,
        "Abc, " * 40_000,  # a long name list: rescanned from each of its names
        "Abc and " * 25_000,
        "A. " * 70_000,  # stops that are never sentence ends: recounted from the line start at each
        "“" * 200_000,  # opening quotes with no closing one
        "[" * 200_000,
        "(2020 " * 40_000,
        "@a{k," * 40_000,  # BibTeX headers whose entries never close
        "arXiv" + " " * 200_000 + "x",
        "https://arxiv.org/abs/" * 9_000 + "(",
        "arXiv:2305.17493 " * 12_000,  # one sentence citing twelve thousand times
    ],
    ids=lambda text: repr(text[:12]),
)
def test_extraction_is_linear_on_megabyte_shapes(text: str) -> None:
    _finishes(lambda: extract_citations(text))


def test_one_long_sentence_is_read_in_bounded_pieces() -> None:
    sentence = "Shumailov et al. (2023, arXiv:2305.17493) show collapse, " * 200
    citations = extract_citations(sentence)
    assert citations and all(len(c.context) <= MAX_SENTENCE for c in citations)


def test_many_claims_validate_in_linear_time() -> None:
    from agent.claims_store import claims_file_warnings
    from agent.models import Claim

    claims = [Claim(id=f"U{n % 25_000}", text=f"claim {n} (2024)", dated="2024", citations=["2305.17493"]) for n in range(50_000)]
    warnings = _finishes(lambda: claims_file_warnings(claims))
    assert isinstance(warnings, list) and sum("used more than once" in w for w in warnings) == 25_000


# --- hostile values ------------------------------------------------------------------------------


def test_full_width_digits_name_the_same_paper() -> None:
    assert parse("２４０４.０１４１３").canonical == "2404.01413"
    assert parse("arXiv:２４０４.０１４１３ｖ２") is not None and parse("arXiv:２４０４.０１４１３ｖ２").version == 2
    assert find_ids("see arXiv:２４０４.０１４１３") == ["2404.01413"]
    [citation] = extract_citations("Accumulating data avoids collapse (Gerstgrasser et al., 2024, arXiv:２４０４.０１４１３).")
    assert citation.arxiv_id == "2404.01413"
    assert parse("٢٤٠٤.٠١٤١٣") is None  # other scripts' digits are no identifier: malformed, not a lookup


def test_full_width_id_is_found_in_the_snapshot() -> None:
    source = open_source("snapshot", cache_path=None, snapshot=Snapshot.open(None))
    [check] = verify_text("Accumulating real data avoids collapse (arXiv:２４０４.０１４１３).", source, run_date=TODAY,
                          embedder=get_embedder("lexical"))
    assert check.arxiv_id == "2404.01413" and check.status not in ("not_found", "malformed", "nonexistent")


def test_thousands_of_digits_are_malformed_not_a_crash() -> None:
    digits = "9" * 5_000
    assert parse(f"2404.01413v{digits}") is None
    assert check_shape(f"2404.01413v{digits}", TODAY).status == "malformed"
    assert len(check_shape(f"2404.01413v{digits}", TODAY).reason) < 200
    assert parse(digits) is None and find_ids(f"arXiv:{digits} and 2404.01413v{digits}") == []
    [citation] = extract_citations(f"A claim (arXiv:2404.01413v{digits}).")
    assert citation.version is None


def test_thousands_of_digits_in_an_inquiry_and_a_store(tmp_path) -> None:
    digits = "7" * 5_000
    inquiry = parse_inquiry(f"What was found:\n- Collapse ({digits}, arXiv:2404.01413v{digits}) and 2023.\n({digits}) task\n")
    assert [c.citations for c in inquiry.claims] == [[]]
    store = ClaimsStore(tmp_path / "claims.jsonl")
    store.path.write_text(json.dumps({"id": "U" + digits, "text": "An odd id", "origin": "user"}) + "\n")
    assert store.add("Ratio matters (2024).").id == "U1"  # an id no int can hold is no user id


def test_bibtex_author_without_a_family_name() -> None:
    [citation] = extract_citations("@article{k, author={, John and {}, and Smith, A.}, title={A Title}, year={2023}, eprint={2305.17493}}")
    assert citation.arxiv_id == "2305.17493" and citation.authors_named == ["Smith"]


def test_unclosed_bibtex_entry_ends_where_the_next_begins() -> None:
    text = "@article{a, title={Broken}, year={2023}, eprint={2305.17493}\n@article{b, title={Fine}, year={2024}, eprint={2404.01413}}\n"
    assert [(c.arxiv_id, c.stated_year, c.line) for c in extract_citations(text)] == [("2305.17493", 2023, 1), ("2404.01413", 2024, 2)]


@pytest.mark.parametrize("suffix", [".json", ".jsonl"])
@pytest.mark.parametrize("depth", [MAX_JSON_DEPTH + 1, 500, 100_000])
def test_deeply_nested_claims_file_is_one_clear_error(tmp_path, suffix: str, depth: int) -> None:
    path = tmp_path / f"deep{suffix}"
    path.write_text("[" * depth + "]" * depth + "\n")
    with pytest.raises(ClaimsStoreError, match="nested deeper than"):
        read_claims_file(path)


def test_claims_file_with_a_number_too_long_to_read(tmp_path) -> None:
    path = tmp_path / "long.jsonl"
    path.write_text('{"text": "x", "year_start": ' + "1" * 5_000 + "}\n")
    with pytest.raises(ClaimsStoreError, match="too long"):
        read_claims_file(path)


def test_claims_file_with_an_odd_id_is_refused(tmp_path) -> None:
    path = tmp_path / "ids.jsonl"
    path.write_text('{"text": "x", "id": [1, 2]}\n')
    with pytest.raises(ClaimsStoreError, match='"id" must be a string'):
        read_claims_file(path)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"citations": ["2313.04567"]}, "month 13 does not exist"),
        ({"text": "Collapse accelerates (arXiv:2313.04567)."}, "month 13 does not exist"),
        ({"citations": ["2712.00001"]}, "after the run date"),
        ({"dated": "2099"}, "after today"),
        ({"text": "A forecast dated in the future (2031)."}, "after today"),
        ({"dated": "2025-2023"}, "runs backwards"),
        ({"dated": "2025–23"}, "runs backwards"),
        ({"tags": ["ratio", "  "]}, "tag is empty"),
        ({"tags": [""]}, "tag is empty"),
    ],
)
def test_user_claim_refuses_impossible_input(kwargs: dict, message: str) -> None:
    arguments = {"text": "Ratio matters (2024)."} | kwargs
    with pytest.raises(ClaimsStoreError, match=message) as refused:
        user_claim(arguments.pop("text"), "U1", today=TODAY, **arguments)
    assert "\n" not in str(refused.value)


def test_claims_add_refuses_before_writing(tmp_path) -> None:
    store = ClaimsStore(tmp_path / "claims.jsonl")
    for text, dated, tags in (("Collapse accelerates (arXiv:2313.04567).", None, None), ("x", "2025-2023", None), ("x", None, [""])):
        with pytest.raises(ClaimsStoreError):
            store.add(text, dated=dated, tags=tags)
    assert not store.path.exists()


def test_user_claim_accepts_plausible_input() -> None:
    claim = user_claim("Ratio matters (arXiv:２４０４.０１４１３).", "U1", dated="2023-2025", tags=["Ratio"], today=TODAY)
    assert (claim.citations, claim.year_start, claim.year_end, claim.tags) == (["2404.01413"], 2023, 2025, ["ratio"])


@pytest.mark.parametrize(
    "title",
    [
        "“The Curse of Recursion? Training on Generated Data”",
        "‘The Curse of Recursion? Training on Generated Data’",
        "'The Curse of Recursion? Training on Generated Data'",
        "*The Curse of Recursion? Training on Generated Data*",
        "_The Curse of Recursion? Training on Generated Data_",
        '"The Curse of Recursion? Training on Generated Data"',
    ],
)
def test_question_mark_inside_a_title_does_not_split_the_sentence(title: str) -> None:
    text = f"Shumailov et al. (2023), {title}, arXiv:2305.17493, show that tails vanish."
    assert len(split_sentences(text)) == 1
    citations = extract_citations(text)
    assert [(c.arxiv_id, c.stated_year) for c in citations] == [("2305.17493", 2023)]  # no spurious no_id
    assert citations[0].claimed_title == "The Curse of Recursion? Training on Generated Data"


def test_apostrophes_still_end_sentences() -> None:
    assert len(split_sentences("The models’ outputs degrade? Yes. Don't stop! It's fine.")) == 4


def test_code_fences_and_tables_are_not_merged_into_claims() -> None:
    inquiry = parse_inquiry(
        "Does collapse happen?\n\nWhat the library found:\n"
        "- Tails vanish under recursion (2023, arXiv:2305.17493).\n"
        "| paper | year |\n|---|---|\n| 2305.17493 | 2023 |\n"
        "- Accumulating data avoids collapse (2024).\n"
        "```\n- not a claim (2020)\n# not a heading\n```\n"
        "text after the fence\n"
        "~~~~\n- still code\n~~~\n- still code\n~~~~\n"
        "- A third claim (2022)\n  wrapped onto a second line.\n"
    )
    assert [c.text for c in inquiry.claims] == [
        "Tails vanish under recursion (2023, arXiv:2305.17493).",
        "Accumulating data avoids collapse (2024).",
        "A third claim (2022) wrapped onto a second line.",
    ]


# --- garbled caches are set aside and rebuilt; stores are written in one step ---------------------


def _paper(arxiv_id: str = "2305.17493") -> Paper:
    return Paper(id=arxiv_id, title="The Curse of Recursion", authors=["Ilia Shumailov"], summary="Tails vanish.",
                 published=date(2023, 5, 27))


def _garble(path: Path, how: str) -> bytes:
    data = bytearray(path.read_bytes())
    if how == "header":
        data[:16] = b"not a database!!"
    elif how == "pages":
        for index in range(1024, len(data), 61):
            data[index] ^= 0x5A
    elif how == "truncated":
        data = data[: len(data) // 2 + 7]
    else:
        data = bytearray(os.urandom(len(data)))
    path.write_bytes(bytes(data))
    return bytes(data)


@pytest.mark.parametrize("how", ["header", "pages", "truncated", "noise"])
def test_garbled_lookup_cache_is_set_aside_and_rebuilt(tmp_path, how: str) -> None:
    path = tmp_path / "lookups.sqlite"
    cache = LookupCache(path)
    cache.store({f"2305.{n:05d}": _paper(f"2305.{n:05d}") for n in range(1, 400)}, ["2305.99999"])
    cache.close()
    garbled = _garble(path, how)

    cache = LookupCache(path)  # no traceback
    assert cache.papers(["2305.00001"]) == {}  # a miss: the paper is fetched again
    assert cache.set_aside_as is not None and cache.set_aside_as.name.startswith("lookups.sqlite.corrupt-")
    assert cache.set_aside_as.read_bytes() == garbled  # kept for a person to look at
    cache.store({"2305.00001": _paper("2305.00001")}, [])
    assert list(cache.papers(["2305.00001"])) == ["2305.00001"]  # rebuilt and usable
    cache.close()
    assert LookupCache(path).set_aside_as is None  # the rebuilt file opens cleanly


def test_garbled_cache_record_is_a_miss(tmp_path) -> None:
    path = tmp_path / "lookups.sqlite"
    cache = LookupCache(path)
    cache.store_search("query", [_paper()])
    with sqlite3.connect(path) as db:
        db.execute("UPDATE papers SET record = '{\"id\": 1, garbled'")
        db.execute("UPDATE searches SET ids = 'not json'")
    assert cache.papers(["2305.17493"]) == {} and cache.search("query") is None
    cache.store_search("query", [_paper()])
    assert [p.id for p in cache.search("query")] == ["2305.17493"]


def test_unopenable_cache_still_says_what_to_do(tmp_path) -> None:
    with pytest.raises(ValueError, match="not a usable cache"):
        LookupCache(tmp_path)  # a directory: not corruption, nothing is set aside
    assert not list(tmp_path.parent.glob("*.corrupt-*"))


def test_garbled_sweep_cache_is_a_miss_and_is_set_aside(tmp_path) -> None:
    config = SweepConfig(ratios=[0.0, 0.5], diversity=[1.0], real_amounts=[100], generations=3, seeds=2, device="cpu")
    first = run_sweep(config, cache_dir=tmp_path)
    [cache_file] = tmp_path.glob("sweep-*.json")
    cut = cache_file.read_bytes()[: cache_file.stat().st_size // 2]
    cache_file.write_bytes(cut)  # a write cut short

    again = run_sweep(config, cache_dir=tmp_path)  # no traceback: recomputed
    assert again.model_dump_json() == first.model_dump_json()
    [aside] = tmp_path.glob("sweep-*.json.corrupt-*")
    assert aside.read_bytes() == cut
    assert _cached(cache_file) is not None  # rewritten whole
    assert not list(tmp_path.glob(".*.tmp"))


def test_claims_store_writes_replace_the_file_in_one_step(tmp_path, monkeypatch) -> None:
    store = ClaimsStore(tmp_path / "claims.jsonl")
    store.add("Ratio matters (2024).")
    before = store.path.read_bytes()

    def interrupted(*_args: object) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", interrupted)
    with pytest.raises(OSError):
        store.add("Diversity matters (2024).")
    with pytest.raises(OSError):
        store.remove("U1")
    monkeypatch.undo()
    assert store.path.read_bytes() == before  # the interrupted writes left the store as it was
    assert [p.name for p in tmp_path.iterdir()] == ["claims.jsonl"]  # and no temporary file behind
    store.add("Diversity matters (2024).")
    assert [c.id for c in store.list_claims()] == ["U1", "U2"]


def test_garbled_claims_store_is_one_clear_error_and_left_alone(tmp_path) -> None:
    store = ClaimsStore(tmp_path / "claims.jsonl")
    store.add("Ratio matters (2024).")
    store.path.write_bytes(store.path.read_bytes()[:20] + b"\xff\xfe garbled")
    garbled = store.path.read_bytes()
    with pytest.raises(ClaimsStoreError, match="claims store"):
        store.list_claims()
    with pytest.raises(ClaimsStoreError):
        store.add("Diversity matters (2024).")
    assert store.path.read_bytes() == garbled  # a user's store is never discarded automatically

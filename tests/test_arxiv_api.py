"""The live path against a loopback arXiv Atom server: batching, spacing, cache, faults."""

from __future__ import annotations

import time
from datetime import date

import pytest

from tests.arxiv_server import LIVE_ONLY_PAPERS, ArxivServer, SimulatedClock, numbered_papers, snapshot_papers
from tools.arxiv_api import ABSENCE_GAP_S, ArxivClient, parse_feed
from tools.cache import LookupCache
from tools.embeddings import get_embedder
from tools.grounding import verify_text
from tools.sources import SourceUnreachable, open_source

RUN_DATE = date(2026, 11, 24)
LEXICAL = get_embedder("lexical")  # fast; the embedder does not matter to the protocol under test


@pytest.fixture
def clock() -> SimulatedClock:
    return SimulatedClock()


def client_for(server: ArxivServer, clock: SimulatedClock, **options) -> ArxivClient:
    return ArxivClient(server.url, clock=clock, timeout=options.pop("timeout", 5.0), **options)


def test_200_ids_in_two_spaced_requests_then_none_from_a_warm_cache(tmp_path, clock) -> None:
    papers = numbered_papers(200)
    with ArxivServer(papers, clock=clock) as server:
        started = time.perf_counter()
        source = open_source("arxiv", arxiv_url=server.url, cache_path=tmp_path / "cache.sqlite", clock=clock)
        answers = source.lookup([p.id for p in papers])
        assert all(a.status == "found" and a.origin == "arxiv" for a in answers.values()) and len(answers) == 200
        assert [len(r.ids) for r in server.requests] == [100, 100]
        assert server.requests[1].at - server.requests[0].at >= 3.0  # arXiv's terms, on the injected clock
        assert time.perf_counter() - started < 10  # the 3 s wait was simulated, not slept
        assert answers["2401.00002"].paper.versions == 3  # from the latest <id> (…v3)

        warm = open_source("arxiv", arxiv_url=server.url, cache_path=tmp_path / "cache.sqlite", clock=clock)
        again = warm.lookup([p.id for p in papers])
        assert all(a.origin == "cache" for a in again.values())
        # no paper is asked again; one empty probe tells whether the live API is up (a warm cache must not hide it)
        [probe] = server.requests[2:]
        assert probe.ids == [] and not warm.unreachable and warm.notice is None


def test_absence_needs_two_spaced_single_id_answers_with_a_control_between(clock) -> None:
    with ArxivServer(snapshot_papers(), clock=clock) as server:
        source = open_source("arxiv", arxiv_url=server.url, cache_path=None, clock=clock)
        [check] = verify_text("A made-up result (Doe et al., 2023, arXiv:2305.12345).", source, run_date=RUN_DATE, embedder=LEXICAL)
        assert check.status == "not_found" and "control" in check.reason
        first, control, second = server.requests
        assert first.ids == second.ids == ["2305.12345"] and control.ids not in ([], ["2305.12345"])
        assert second.at - first.at >= ABSENCE_GAP_S


def flaky_text(papers) -> str:
    return "\n".join(f"{p.title} ({p.authors[0].split()[-1]} et al., {p.year}, arXiv:{p.id})." for p in papers)


@pytest.mark.parametrize("kind", ["empty_zero", "empty"])
def test_eighty_percent_empty_pages_never_make_a_real_paper_not_found(tmp_path, clock, kind) -> None:
    papers = snapshot_papers()[::6][:30]
    cache = tmp_path / "cache.sqlite"
    with ArxivServer(snapshot_papers(), clock=clock, empty_share=0.8, empty_kind=kind, seed=3) as server:
        source = open_source("arxiv", arxiv_url=server.url, cache_path=cache, clock=clock, max_retries=1)
        checks = verify_text(flaky_text(papers), source, run_date=RUN_DATE, embedder=LEXICAL)
        assert len(checks) == 30 and {c.status for c in checks} <= {"grounded", "unverifiable"}
        assert any(c.status == "unverifiable" for c in checks)  # the glitch was real, and said so
    with ArxivServer(snapshot_papers(), clock=clock) as healthy:
        source = open_source("arxiv", arxiv_url=healthy.url, cache_path=cache, clock=clock)
        again = verify_text(flaky_text(papers), source, run_date=RUN_DATE, embedder=LEXICAL)
        assert [c.status for c in again] == ["grounded"] * 30  # nothing negative was kept from the flaky run


def test_a_fabricated_id_among_flaky_pages_is_never_proven_absent_on_glitchy_evidence(clock) -> None:
    papers = snapshot_papers()[::6][:10]
    text = flaky_text(papers) + "\nA made-up result (Doe et al., 2023, arXiv:2305.12345)."
    with ArxivServer(snapshot_papers(), clock=clock, empty_share=0.8, seed=5) as server:
        source = open_source("arxiv", arxiv_url=server.url, cache_path=None, clock=clock)
        checks = verify_text(text, source, run_date=RUN_DATE, embedder=LEXICAL)
        assert "not_found" not in {c.status for c in checks}
        assert "no proof of absence" in checks[-1].reason


def test_a_cached_absence_is_reconfirmed_before_it_is_a_verdict_again(tmp_path, clock) -> None:
    text = "A made-up result (Doe et al., 2023, arXiv:2305.12345)."
    cache = tmp_path / "cache.sqlite"
    with ArxivServer(snapshot_papers(), clock=clock) as server:
        [first] = verify_text(text, open_source("arxiv", arxiv_url=server.url, cache_path=cache, clock=clock), run_date=RUN_DATE, embedder=LEXICAL)
        asked = len(server.requests)
        [second] = verify_text(text, open_source("arxiv", arxiv_url=server.url, cache_path=cache, clock=clock), run_date=RUN_DATE, embedder=LEXICAL)
        assert first.status == second.status == "not_found" and "re-confirming" in second.reason
        assert [r.ids for r in server.requests[asked:]][-1] == ["2305.12345"] and len(server.requests) - asked == 2  # control + re-ask
    with ArxivServer([], clock=clock) as dead:
        dead_url = dead.url
    source = open_source("arxiv", arxiv_url=dead_url, cache_path=cache, clock=clock, max_retries=0)
    [offline] = verify_text(text, source, run_date=RUN_DATE, embedder=LEXICAL)
    assert offline.status == "unverifiable" and "could not be re-confirmed" in offline.reason


@pytest.mark.parametrize("glitch", ["empty", "empty_zero"])
def test_a_transient_empty_page_never_reads_as_not_found(clock, glitch) -> None:
    papers = snapshot_papers()
    ids = [p.id for p in papers[:5]]
    with ArxivServer(papers, clock=clock) as server:
        server.faults.extend([glitch, glitch])
        result = client_for(server, clock).lookup(ids)
        assert set(result.found) == set(ids) and not result.absent and not result.failed


def test_a_persistent_empty_page_glitch_is_unverifiable(clock) -> None:
    with ArxivServer(snapshot_papers(), clock=clock) as server:
        server.always = "empty"
        source = open_source("arxiv", arxiv_url=server.url, cache_path=None, clock=clock, max_retries=2)
        checks = verify_text("Tails vanish (Shumailov et al., 2023, arXiv:2305.17493; arXiv:2404.01413).", source, run_date=RUN_DATE, embedder=LEXICAL)
        assert [c.status for c in checks] == ["unverifiable", "unverifiable"]


@pytest.mark.parametrize("fault", ["503", "429", "slow"])
def test_every_persistent_fault_is_unverifiable_never_not_found(clock, fault) -> None:
    with ArxivServer(snapshot_papers() + LIVE_ONLY_PAPERS, clock=clock, slow_s=0.4) as server:
        server.always = fault
        source = open_source("arxiv", arxiv_url=server.url, cache_path=None, clock=clock, timeout=0.15, max_retries=1)
        checks = verify_text("Attention replaced recurrence (Vaswani et al., 2017, arXiv:1706.03762).", source, run_date=RUN_DATE, embedder=LEXICAL)
        assert [c.status for c in checks] == ["unverifiable"]
        assert source.unreachable and "could not be checked" in checks[0].reason


def test_retries_back_off_and_honour_retry_after(clock) -> None:
    with ArxivServer(LIVE_ONLY_PAPERS, clock=clock, retry_after=7) as server:
        server.faults.extend(["503", "429"])
        result = client_for(server, clock, backoff=2.0).lookup(["1706.03762"])
        assert set(result.found) == {"1706.03762"}
        assert len(server.requests) == 3
        assert 2.0 in clock.slept and 7.0 in clock.slept  # backoff after 503, Retry-After after 429
        gaps = [b.at - a.at for a, b in zip(server.requests, server.requests[1:])]
        assert all(gap >= 3.0 for gap in gaps)


def test_malformed_id_gets_http_400_with_an_error_entry(clock) -> None:
    with ArxivServer(LIVE_ONLY_PAPERS, clock=clock) as server:
        result = client_for(server, clock, max_retries=0).lookup(["2305.174"])
        assert "incorrect id format" in result.failed["2305.174"]
        assert not result.absent


def test_versions_old_style_ids_and_live_only_papers(clock) -> None:
    text = (
        "The Transformer dispenses with recurrence (Vaswani et al., 2017, https://arxiv.org/abs/1706.03762v5).\n"
        "The Transformer's ninth version (arXiv:1706.03762v9) relies on attention alone for translation.\n"
        "Maldacena (1997) related large N field theories to supergravity, hep-th/9711200.\n"
        "Perelman's entropy formula for the Ricci flow (2002, arXiv:math.DG/0211159).\n"
    )
    with ArxivServer(snapshot_papers() + LIVE_ONLY_PAPERS, clock=clock) as server:
        source = open_source("arxiv", arxiv_url=server.url, cache_path=None, clock=clock)
        checks = verify_text(text, source, run_date=RUN_DATE, embedder=LEXICAL)
        assert [(c.arxiv_id, c.status) for c in checks] == [
            ("1706.03762", "grounded"),
            ("1706.03762", "grounded"),  # a version above those listed: a slip, never not_found
            ("hep-th/9711200", "grounded"),
            ("math/0211159", "grounded"),
        ]
        assert "7 version" in checks[1].reason and "v9" in checks[1].reason
        assert len(server.requests[0].ids) == 3  # one batch for the whole text


def test_auto_mode_probes_once_and_carries_on_offline(clock) -> None:
    with ArxivServer([], clock=clock) as server:
        dead_url = server.url
    source = open_source("auto", arxiv_url=dead_url, cache_path=None, clock=clock)
    first = verify_text("Tails vanish (Shumailov et al., 2023, arXiv:2305.17493).", source, run_date=RUN_DATE, embedder=LEXICAL)
    assert first[0].status == "grounded" and source.client.requests_sent == 0  # the snapshot answered
    second = verify_text("Attention (arXiv:1706.03762). GANs (arXiv:1406.2661).", source, run_date=RUN_DATE, embedder=LEXICAL)
    assert [c.status for c in second] == ["unverifiable", "unverifiable"]
    assert source.client.requests_sent == 1  # the probe, nothing more
    assert "unreachable" in source.notice
    assert any("used snapshot only" in detail for _, detail in source.describe())


def test_explicit_arxiv_search_failure_raises(clock) -> None:
    with ArxivServer([], clock=clock) as server:
        server.always = "503"
        source = open_source("arxiv", arxiv_url=server.url, cache_path=None, clock=clock, max_retries=0)
        with pytest.raises(SourceUnreachable):
            source.search("model collapse", limit=5)


def test_explicit_arxiv_search_after_live_arxiv_failed_raises_not_an_empty_list(clock) -> None:
    with ArxivServer([], clock=clock) as server:
        dead_url = server.url
    source = open_source("arxiv", arxiv_url=dead_url, cache_path=None, clock=clock, max_retries=0)
    checks = verify_text("Attention (arXiv:1706.03762).", source, run_date=RUN_DATE, embedder=LEXICAL)
    assert [c.status for c in checks] == ["unverifiable"] and source.unreachable
    with pytest.raises(SourceUnreachable, match="live arXiv search failed"):
        source.search("attention transformers", limit=5)


def test_search_merges_live_and_snapshot_by_id(clock) -> None:
    with ArxivServer(snapshot_papers() + LIVE_ONLY_PAPERS, clock=clock) as server:
        source = open_source("auto", arxiv_url=server.url, cache_path=None, clock=clock)
        papers = source.search("recursion generated data forget", since=date(2023, 1, 1), until=RUN_DATE, limit=10)
        ids = [p.id for p in papers]
        assert "2305.17493" in ids and len(ids) == len(set(ids))
        assert all(date(2023, 1, 1) <= p.published <= RUN_DATE for p in papers)
        assert any(p.source == "arxiv" for p in papers) and any(p.source == "snapshot" for p in papers)


def test_a_live_search_sends_only_search_terms(clock) -> None:
    with ArxivServer(LIVE_ONLY_PAPERS, clock=clock) as server:
        client = ArxivClient(server.url, clock=clock)
        client.search("In 2025 and per arXiv the model-generated data erodes tails", limit=5)
        sent = server.requests[-1].params["search_query"]
    assert sent == '(all:"model generated" OR all:data OR all:erodes OR all:tails)'


def test_cache_ttl_expires(tmp_path) -> None:
    now = [1_000_000.0]
    cache = LookupCache(tmp_path / "c.sqlite", now=lambda: now[0])
    paper = LIVE_ONLY_PAPERS[0]
    cache.store({paper.id: paper}, {"2305.12345"})
    assert set(cache.papers([paper.id])) == {paper.id} and cache.absent(["2305.12345"]) == {"2305.12345"}
    now[0] += 2 * 3_600
    assert cache.absent(["2305.12345"]) == set()  # a negative is kept briefly: re-asked after an hour
    assert set(cache.papers([paper.id])) == {paper.id}


def test_parse_feed_reads_versions_and_errors() -> None:
    from tests.arxiv_server import error_feed, feed

    parsed = parse_feed(feed([(LIVE_ONLY_PAPERS[0], 7)], total=1))
    assert (parsed.papers[0].id, parsed.papers[0].versions, parsed.total_results) == ("1706.03762", 7, 1)
    assert parse_feed(error_feed("incorrect id format for abc", "abc")).errors == ["incorrect id format for abc"]
    with pytest.raises(ValueError):
        parse_feed(b"<html>not a feed</html>")


def test_an_arxiv_package_search_runs_through_our_transport(clock) -> None:
    """`arxiv.Search` is the query model; the request goes out as it always did, and faults are ours to classify."""
    import arxiv

    with ArxivServer(snapshot_papers(), clock=clock) as server:
        client = client_for(server, clock)
        newest = arxiv.Search(query="all:collapse", max_results=3, sort_by=arxiv.SortCriterion.SubmittedDate)
        feed = client.fetch(newest, start=1)
        assert server.requests[-1].params == {"search_query": "all:collapse", "start": "1", "max_results": "3",
                                              "sortBy": "submittedDate", "sortOrder": "descending"}
        dates = [p.published for p in feed.papers]
        assert len(dates) == 3 and dates == sorted(dates, reverse=True)
        sent = len(server.requests)
        rejected = client.fetch(arxiv.Search(id_list=["1234"], max_results=1))
        # an answer with arXiv's reason, asked once (the package's own Client asks four times and drops the reason)
        assert rejected.errors == ["incorrect id format for 1234"] and len(server.requests) == sent + 1


def test_a_paper_resolved_once_is_not_asked_for_again_in_the_same_run(clock) -> None:
    """Later stages (the model's fit question, a re-check's fresh source) ask for papers grounding
    already resolved: the source answers them without another request."""
    papers = numbered_papers(3)
    with ArxivServer(papers, clock=clock) as server:
        source = open_source("arxiv", arxiv_url=server.url, cache_path=None, clock=clock)
        first = source.lookup([p.id for p in papers])
        asked = len(server.requests)
        again = source.lookup([papers[0].id, papers[2].id])
        assert len(server.requests) == asked >= 1
        assert {k: v.paper for k, v in again.items()} == {k: first[k].paper for k in again}


def test_a_refused_connection_fails_in_seconds_not_the_full_backoff(clock) -> None:
    import socket

    with socket.socket() as unused:  # a loopback port nothing listens on
        unused.bind(("127.0.0.1", 0))
        port = unused.getsockname()[1]
    client = ArxivClient(f"http://127.0.0.1:{port}/api/query", clock=clock, timeout=5.0)
    result = client.lookup(["1706.03762"])
    assert "unreachable (ConnectError" in result.failed["1706.03762"] and not result.found
    assert client.requests_sent >= 4  # at least the first try and three retries
    assert clock.slept and set(clock.slept) == {1.0}, "a refused connection is retried after 1 s, and charges no 3 s spacing"

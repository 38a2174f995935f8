"""`snapshot update`: page a topic's papers from the live arXiv API into the offline index.

The walk is newest first (`ArxivClient.search_page`): with `--max N` the index gets the newest N
papers, which arXiv can serve even when a query matches more than its 30000-per-query reach.

Progress is saved with each page, in the same transaction as its papers, under a key that is the
normalized `search_query` (topic words, category and date window), so
- an interrupted walk resumes at the next offset;
- a finished one re-reads the first page only: arXiv's `totalResults` then tells how many papers were
  announced since, and those sit at the front of a newest-first list, so that many are fetched.

Offsets move when arXiv announces papers (once a day): every answer's `totalResults` is compared with
the saved one, and the held range is shifted by the difference. A resumed walk therefore re-reads a
few papers it holds (upserts, never duplicates) instead of skipping any, and the new papers at the
front (`front`) are fetched before the run says it is complete.

Faults: the client retries 5xx, 429, timeouts and pages with fewer entries than announced (arXiv's
empty-page glitch) with backoff; a page answered empty with `totalResults` 0 while papers are known
to exist is the same glitch in another form and is retried here. What stays unanswered raises
`UpdateInterrupted`, with every page written so far kept.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date

from tools.arxiv_api import ArxivClient, ArxivUnavailable, Feed
from tools.snapshot import Snapshot
from tools.terms import STOP_WORDS

DEFAULT_PAGE_SIZE = 100
MAX_PAGE_SIZE = 2000  # arXiv serves at most this many results per request
DEFAULT_MAX_PAPERS = 500
MAX_PAPERS = 30000  # arXiv serves at most this many results per query
_CATEGORY = re.compile(r"^[a-z]+(?:-[a-z]+)?(?:\.[A-Za-z]+(?:-[a-z]+)?)?$")  # cs.LG, hep-th, cond-mat.stat-mech
_PHRASE = re.compile(r'"([^"]*)"')
_PART = re.compile(r"[^\W_]+")
_OPERATORS = frozenset({"and", "or", "not", "andnot"})


@dataclass(frozen=True)
class Topic:
    """A user's topic as an arXiv `search_query`: every word must occur (AND), anywhere in the
    record (`all:`); quoted words and hyphenated words stay together as phrases."""

    terms: tuple[str, ...]
    category: str | None = None
    since: date | None = None

    @classmethod
    def parse(cls, text: str, *, category: str | None = None, since: date | None = None) -> Topic:
        """ValueError, with what to do, for a query without searchable words or a malformed category."""
        if category is not None and not _CATEGORY.match(category):
            raise ValueError(f"--category {category!r} is not an arXiv category; give one like cs.LG, stat.ML, hep-th")
        terms: set[str] = set()
        for phrase in _PHRASE.findall(text):
            terms.update(_term(_PART.findall(phrase.lower()), stop_words=False))
        for chunk in _PHRASE.sub(" ", text).replace('"', " ").split():
            terms.update(_term(_PART.findall(chunk.lower()), stop_words=True))
        if not terms:
            raise ValueError(f'--query {text!r} holds no searchable word; give topic words, e.g. --query "model collapse"')
        # sorted: the same words in any order are the same query, and resume the same progress
        return cls(terms=tuple(sorted(terms)), category=category, since=since)

    @property
    def search_query(self) -> str:
        clauses = [f"all:{term}" for term in self.terms]
        if self.category:
            clauses.append(f"cat:{self.category}")
        if self.since:
            # a fixed upper bound: the query, and so its saved progress, stays the same from day to day
            clauses.append(f"submittedDate:[{self.since:%Y%m%d}0000 TO 209912312359]")
        return " AND ".join(clauses)


def _term(parts: list[str], *, stop_words: bool) -> list[str]:
    parts = [p for p in parts if len(p) > 1 or p.isdigit()]  # "zipf's" -> zipf; "gpt-4" keeps its 4
    if len(parts) > 1:
        return ['"' + " ".join(parts) + '"']
    # the index's stop words: a word it would not search on is no topic word either
    if parts and not (stop_words and (parts[0] in STOP_WORDS or parts[0] in _OPERATORS)):
        return parts
    return []


@dataclass
class UpdateReport:
    search_query: str
    added: int = 0  # papers new to the index
    updated: int = 0  # papers the index held whose record changed
    pages: int = 0  # pages arXiv answered in this run
    total: int = 0  # papers arXiv says match
    held: int = 0  # how many of the newest matching papers the index now holds, in one unbroken run
    target: int = 0  # how many it should hold: min(--max, total)
    resumed_at: int | None = None  # the offset an interrupted walk continued from
    up_to_date: bool = False  # finished before, and arXiv announced nothing since
    complete: bool = False


class UpdateInterrupted(RuntimeError):
    """arXiv stopped answering mid-walk; `report` says what was written (kept) before it did."""

    def __init__(self, message: str, report: UpdateReport) -> None:
        super().__init__(message)
        self.report = report


@dataclass
class _Progress:
    """The saved state of one query, in offsets of the newest-first list as arXiv last answered:
    the index holds the papers at [front, end); the `front` newest were announced after the walk
    passed them. A walk only ever extends this range at its edges, so one range is all there is to save."""

    front: int = 0
    end: int = 0
    total: int = 0

    def shift(self, total: int) -> None:
        """Papers announced since `self.total` was seen went to the front: move the range down."""
        grown = total - self.total
        # a smaller total (a paper reclassified) moves it up: re-reading a paper beats skipping one
        self.front, self.end, self.total = max(0, self.front + grown), max(0, self.end + grown), total

    def merge(self, start: int, stop: int) -> None:
        """Join the papers at [start, stop) to the held range when the two touch."""
        if self.front == self.end:
            self.front, self.end = start, stop
        elif start <= self.end and stop >= self.front:
            self.front, self.end = min(self.front, start), max(self.end, stop)
        # else: a page off the range (arXiv announced more than a page meanwhile); its papers are
        # written, the range stays, and the walk reads on from the range's edge

    def finished(self, max_papers: int) -> bool:
        return self.front == 0 and self.end >= min(max_papers, self.total)


def update_snapshot(
    snapshot: Snapshot,
    client: ArxivClient,
    topic: Topic,
    *,
    max_papers: int = DEFAULT_MAX_PAPERS,
    page_size: int = DEFAULT_PAGE_SIZE,
    on_page: Callable[[UpdateReport], None] | None = None,
) -> UpdateReport:
    """Bring the index's copy of `topic`'s newest `max_papers` papers up to date, page by page.

    A query seen before resumes from its saved progress; a finished one costs one request when
    arXiv announced nothing since. Raises UpdateInterrupted when arXiv stays unreachable (the
    pages written are kept); rerunning continues from the saved offset.
    """
    if not 1 <= max_papers <= MAX_PAPERS:
        raise ValueError(f"max_papers must be within 1..{MAX_PAPERS}, got {max_papers}")
    if not 1 <= page_size <= MAX_PAGE_SIZE:
        raise ValueError(f"page_size must be within 1..{MAX_PAGE_SIZE}, got {page_size}")
    saved = snapshot.update_progress(topic.search_query)
    walk = _Walk(snapshot, client, topic.search_query, _Progress(**saved) if saved else None, max_papers, on_page)
    state, report = walk.progress, walk.report
    finished_before = saved is not None and state.finished(max_papers)
    if saved is not None and not finished_before:
        report.resumed_at = state.end
    if saved is None or finished_before:
        walk.fetch(0, min(page_size, max_papers))  # the total, and what arXiv announced since
    report.up_to_date = finished_before and state.finished(max_papers) and report.added == report.updated == 0
    while state.end < min(max_papers, state.total):  # older papers, down to --max or the last
        if not walk.fetch(state.end, min(page_size, min(max_papers, state.total) - state.end)):
            break
    while state.front > 0:  # papers announced since the range was read, nearest the range first
        start = max(0, state.front - page_size)
        if not walk.fetch(start, state.front - start):
            break
    walk.summarize()
    return report


class _Walk:
    """One run's requests; every page is written together with the progress it makes."""

    def __init__(
        self, snapshot: Snapshot, client: ArxivClient, key: str, progress: _Progress | None,
        max_papers: int, on_page: Callable[[UpdateReport], None] | None,
    ) -> None:
        self.snapshot, self.client, self.key = snapshot, client, key
        self.known = progress is not None  # a total was saved: an answer of 0 results is then suspect
        self.progress = progress or _Progress()
        self.report = UpdateReport(search_query=key)
        self.max_papers, self.on_page = max_papers, on_page

    def fetch(self, start: int, count: int) -> bool:
        """Read and write one page; False when it held no paper (the walk cannot go on from it)."""
        feed = self._page(start, count)
        state = self.progress
        if self.known:
            state.shift(feed.total_results)
        else:
            state.total, self.known = feed.total_results, True
        state.merge(start, start + len(feed.papers))
        added, updated = self.snapshot.upsert_arxiv(
            feed.papers, progress=(self.key, {"front": state.front, "end": state.end, "total": state.total})
        )
        report = self.report
        report.added += added
        report.updated += updated
        report.pages += 1
        report.total = state.total
        if self.on_page:
            self.on_page(report)
        return bool(feed.papers)

    def summarize(self) -> None:
        state, report = self.progress, self.report
        report.total, report.target = state.total, min(self.max_papers, state.total)
        report.held = state.end - state.front
        report.complete = state.finished(self.max_papers)

    def _page(self, start: int, count: int) -> Feed:
        """One answered page, or UpdateInterrupted. An empty page with `totalResults` 0 for a query
        known to match papers is arXiv's glitch and is asked again; for a query nothing is known
        of, it is taken as "no papers" only when a second, spaced answer agrees."""
        attempts = self.client.max_retries + 1 if self.known else max(2, self.client.max_retries + 1)
        for attempt in range(attempts):
            try:
                feed = self.client.search_page(self.key, start=start, max_results=count)
            except ArxivUnavailable as error:
                raise self._interrupted(start, str(error)) from None
            if feed.errors:
                raise self._interrupted(start, f"arXiv rejected the request: {feed.errors[0]}")
            if feed.papers or feed.total_results:
                return feed
            if (self.known and self.progress.total == 0) or (not self.known and attempt > 0):
                return feed  # "no papers" said before, or twice now: believed
            if attempt + 1 < attempts:
                self.client.clock.sleep(self.client.backoff * 2**attempt)
        raise self._interrupted(
            start, f"arXiv kept answering an empty page (totalResults 0) although {self.progress.total} papers matched before"
        )

    def _interrupted(self, start: int, problem: str) -> UpdateInterrupted:
        self.summarize()
        return UpdateInterrupted(f"{problem}; stopped at offset {start}", self.report)

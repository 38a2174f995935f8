"""The live arXiv API (Atom): batched ID lookups and search, within arXiv's terms of use.

httpx, not the `arxiv` package: that client retries HTTP 400 (malformed IDs) without backoff, ignores
Retry-After, and turns an empty page into "no results" without a word, which would make a glitch
look like a missing paper. Here every answer is classified: a feed with entries, an empty feed
(`totalResults` 0: arXiv says the IDs do not exist), an Error entry (HTTP 400), or a fault (5xx,
429, timeout, a page with fewer entries than it announces). Only the first two are answers.

Terms (info.arxiv.org/help/api/tou.html): one connection at a time and at least 3 s between
requests; `Clock` is injectable so tests check the spacing without sleeping.
Wire format: shared/notes/api_notes.md §3.
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import date, datetime
from email.utils import parsedate_to_datetime
from typing import Protocol

import httpx
from lxml import etree

from tools.papers import Paper

DEFAULT_ARXIV_URL = "https://export.arxiv.org/api/query"
BATCH_SIZE = 100  # IDs per id_list request: keeps URLs short, and max_results can match it
MIN_INTERVAL_S = 3.0
ATOM = "{http://www.w3.org/2005/Atom}"
ARXIV = "{http://arxiv.org/schemas/atom}"
OPENSEARCH = "{http://a9.com/-/spec/opensearch/1.1/}"
_VERSIONED = re.compile(r"^(?P<id>.+?)v(?P<v>[1-9]\d*)$")


class Clock(Protocol):
    def monotonic(self) -> float: ...

    def sleep(self, seconds: float) -> None: ...


class SystemClock:
    def monotonic(self) -> float:
        return time.monotonic()

    def sleep(self, seconds: float) -> None:
        time.sleep(seconds)


class ArxivUnavailable(RuntimeError):
    """The API gave no usable answer (unreachable, faults past the retries, or a rejected request)."""


@dataclass
class Feed:
    papers: list[Paper]
    total_results: int
    errors: list[str] = field(default_factory=list)  # Error entries' summaries (HTTP 400)

    def truncated(self, page_size: int) -> bool:
        """A page holding fewer entries than it announces: arXiv's empty-page glitch."""
        return len(self.papers) < min(self.total_results, page_size)


@dataclass
class IdLookup:
    """What the API said about a set of IDs (canonical, no version)."""

    found: dict[str, Paper] = field(default_factory=dict)
    absent: set[str] = field(default_factory=set)  # confirmed missing by a single-ID request
    failed: dict[str, str] = field(default_factory=dict)  # id -> why the API could not answer


class ArxivClient:
    """One connection, requests spaced by `min_interval`, retries with backoff on faults.

    Thread-safe: a lock serialises requests, so several agent threads share one client.
    """

    def __init__(
        self,
        base_url: str = DEFAULT_ARXIV_URL,
        *,
        clock: Clock | None = None,
        min_interval: float = MIN_INTERVAL_S,
        timeout: float = 20.0,
        max_retries: int = 3,
        backoff: float = 3.0,
        max_retry_after: float = 120.0,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.base_url = base_url
        self.clock = clock or SystemClock()
        self.min_interval = min_interval
        self.max_retries = max_retries
        self.backoff = backoff
        self.max_retry_after = max_retry_after
        self.requests_sent = 0
        self._last_request: float | None = None
        self._lock = threading.Lock()
        self._http = httpx.Client(
            timeout=timeout,
            transport=transport,
            limits=httpx.Limits(max_connections=1, max_keepalive_connections=1),
            headers={"User-Agent": "collapse-audit (citation grounding; https://github.com/collapse-audit)"},
        )

    def close(self) -> None:
        self._http.close()

    def probe(self, timeout: float = 3.0) -> str | None:
        """None when the API answers with an Atom feed, else why not. One request, no retries."""
        try:
            self._get({"search_query": "all:collapse", "start": "0", "max_results": "0"}, retries=0, timeout=timeout)
        except ArxivUnavailable as error:
            return str(error)
        return None

    def lookup(self, ids: Iterable[str]) -> IdLookup:
        """Resolve canonical IDs: one id_list request per BATCH_SIZE IDs.

        An ID a batch did not return is asked for again on its own before it counts as absent: the
        API sometimes drops entries, and a fault must never read as "no such paper".
        """
        wanted = list(dict.fromkeys(ids))
        result = IdLookup()
        for start in range(0, len(wanted), BATCH_SIZE):
            batch = wanted[start : start + BATCH_SIZE]
            try:
                feed = self._id_feed(batch)
            except ArxivUnavailable as error:
                result.failed.update({i: str(error) for i in batch})
                continue
            found = {p.id: p for p in feed.papers if p.id in batch}
            result.found.update(found)
            for missing in (i for i in batch if i not in found):
                self._confirm(missing, result)
        return result

    def search(self, query: str, *, since: date | None = None, until: date | None = None, limit: int = 20) -> list[Paper]:
        """Papers matching any of the query's words, most relevant first, submitted within [since, until]."""
        words = [w for w in re.findall(r"[^\W_]{3,}", query.lower())][:12]
        if not words or limit <= 0:
            return []
        terms = " OR ".join(f"all:{w}" for w in dict.fromkeys(words))
        search_query = f"({terms})"
        if since or until:
            low = (since or date(1991, 8, 1)).strftime("%Y%m%d0000")
            high = (until or date(2099, 12, 31)).strftime("%Y%m%d2359")
            search_query += f" AND submittedDate:[{low} TO {high}]"
        feed = self._get(
            {"search_query": search_query, "start": "0", "max_results": str(min(limit, 200)), "sortBy": "relevance", "sortOrder": "descending"}
        )
        return feed.papers[:limit]

    def _id_feed(self, batch: list[str]) -> Feed:
        params = {"id_list": ",".join(batch), "start": "0", "max_results": str(len(batch))}
        feed = self._get(params)
        if not feed.papers and len(batch) > 1:
            # A whole batch of well-formed IDs coming back empty is far likelier a glitch than a
            # hundred fabrications: ask once more before confirming IDs one by one.
            feed = self._get(params)
        return feed

    def _confirm(self, arxiv_id: str, result: IdLookup) -> None:
        try:
            feed = self._get({"id_list": arxiv_id, "start": "0", "max_results": "1"})
        except ArxivUnavailable as error:
            result.failed[arxiv_id] = str(error)
            return
        match = [p for p in feed.papers if p.id == arxiv_id]
        if match:
            result.found[arxiv_id] = match[0]
        elif feed.errors:
            result.failed[arxiv_id] = f"arXiv rejected the ID: {feed.errors[0]}"
        else:
            result.absent.add(arxiv_id)

    def _get(self, params: dict[str, str], *, retries: int | None = None, timeout: float | None = None) -> Feed:
        """One logical request: spaced, retried on faults with backoff (Retry-After honoured)."""
        retries = self.max_retries if retries is None else retries
        problem = "no request made"
        with self._lock:
            for attempt in range(retries + 1):
                self._wait_turn()
                try:
                    response = self._http.get(self.base_url, params=params, timeout=timeout or httpx.USE_CLIENT_DEFAULT)
                except httpx.TimeoutException:
                    problem, wait = "timed out", self._backoff(attempt)
                except httpx.TransportError as error:
                    problem, wait = f"unreachable ({type(error).__name__}: {error})", self._backoff(attempt)
                else:
                    feed, problem, wait = self._classify(response, attempt, int(params.get("max_results", "10")))
                    if feed is not None:
                        return feed
                if wait is None or attempt == retries:
                    break
                self.clock.sleep(wait)
        raise ArxivUnavailable(f"arXiv API at {self.base_url}: {problem}")

    def _classify(self, response: httpx.Response, attempt: int, page_size: int) -> tuple[Feed | None, str, float | None]:
        """(feed, problem, wait before retrying or None for no retry)."""
        status = response.status_code
        if status == 429 or status >= 500:
            wait = _retry_after(response.headers.get("Retry-After"))
            wait = self._backoff(attempt) if wait is None else min(wait, self.max_retry_after)
            return None, f"HTTP {status}", wait
        try:
            feed = parse_feed(response.content)
        except ValueError as error:
            return None, f"HTTP {status} with an unreadable body ({error})", self._backoff(attempt)
        if status == 400 or feed.errors:
            if feed.errors:
                return feed, "", None  # an answer: arXiv rejected the request's IDs
            return None, f"HTTP {status}", None
        if status != 200:
            return None, f"HTTP {status}", None
        if feed.truncated(page_size):
            return None, f"empty page ({len(feed.papers)} of {feed.total_results} announced entries)", self._backoff(attempt)
        return feed, "", None

    def _backoff(self, attempt: int) -> float:
        return self.backoff * 2**attempt

    def _wait_turn(self) -> None:
        now = self.clock.monotonic()
        if self._last_request is not None and now - self._last_request < self.min_interval:
            self.clock.sleep(self.min_interval - (now - self._last_request))
        self._last_request = self.clock.monotonic()
        self.requests_sent += 1


def _retry_after(value: str | None) -> float | None:
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        moment = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, (moment - datetime.now(moment.tzinfo)).total_seconds())


def parse_feed(body: bytes) -> Feed:
    """An arXiv Atom feed -> papers (ID without version, `versions` from the latest <id>), errors."""
    try:
        root = etree.fromstring(body, parser=etree.XMLParser(resolve_entities=False, no_network=True))
    except etree.XMLSyntaxError as error:
        raise ValueError(f"not an Atom feed: {error}") from None
    if root.tag != f"{ATOM}feed":
        raise ValueError(f"not an Atom feed: root element {root.tag}")
    total_text = root.findtext(f"{OPENSEARCH}totalResults")
    papers, errors = [], []
    for entry in root.iterfind(f"{ATOM}entry"):
        entry_id = (entry.findtext(f"{ATOM}id") or "").strip()
        title = " ".join((entry.findtext(f"{ATOM}title") or "").split())
        if "/api/errors" in entry_id or title == "Error":
            errors.append(" ".join((entry.findtext(f"{ATOM}summary") or "").split()))
            continue
        papers.append(_entry_paper(entry, entry_id, title))
    total = int(total_text) if total_text and total_text.strip().isdigit() else len(papers)
    return Feed(papers=papers, total_results=total, errors=errors)


def _entry_paper(entry: etree._Element, entry_id: str, title: str) -> Paper:
    short = re.sub(r"^https?://arxiv\.org/abs/", "", entry_id)
    versioned = _VERSIONED.match(short)
    arxiv_id, versions = (versioned["id"], int(versioned["v"])) if versioned else (short, None)
    published = _date(entry.findtext(f"{ATOM}published"))
    primary = entry.find(f"{ARXIV}primary_category")
    return Paper(
        id=arxiv_id,
        title=title,
        authors=[" ".join((a.findtext(f"{ATOM}name") or "").split()) for a in entry.iterfind(f"{ATOM}author")],
        published=published,
        updated=_date(entry.findtext(f"{ATOM}updated")) if entry.findtext(f"{ATOM}updated") else None,
        versions=versions,
        summary=" ".join((entry.findtext(f"{ATOM}summary") or "").split()),
        summary_is_paraphrase=False,
        categories=[c.get("term") for c in entry.iterfind(f"{ATOM}category") if c.get("term")],
        primary_category=primary.get("term") if primary is not None else None,
        doi=entry.findtext(f"{ARXIV}doi"),
        journal_ref=entry.findtext(f"{ARXIV}journal_ref"),
        source="arxiv",
    )


def _date(text: str | None) -> date:
    if not text:
        raise ValueError("entry without a <published> date")
    return datetime.fromisoformat(text.strip().replace("Z", "+00:00")).date()

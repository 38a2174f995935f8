"""The live arXiv API (Atom): batched ID lookups and search, within arXiv's terms of use.

Requests are described with the `arxiv` package's query model (`arxiv.Search`: query, id_list,
max_results, sort_by, sort_order; `ArxivClient.fetch(search)` runs any one), but sent by our own
httpx transport, not the package's `Client`: that client (arxiv 4.0.2) retries HTTP 400 (malformed
IDs) like any fault, ignores Retry-After, sets no timeout on its requests, and turns an empty first
page into "no results" without a word, which would make a glitch look like a missing paper; its
parser also drops arXiv's Error entries (they carry no <published>) and reads a cut-off body as a
shorter page. Here every answer is classified: a feed with entries, an empty feed
(`totalResults` 0), an Error entry (HTTP 400), or a fault (5xx, 429, timeout, a page with fewer
entries than it announces). Only the first two are answers.

Absence needs proof, because arXiv's API sometimes answers a page empty although the papers exist
(with `totalResults` 0, indistinguishable from "no such paper"). An ID is `absent` only when
- arXiv answered "no such paper" twice to a single-ID query, at least `absence_gap` seconds apart;
- between the two, a control query (a single ID known to exist) came back with its paper;
- and nothing in this check, nor in the last `glitch_memory` seconds, showed the API answering
  empty for papers that exist (a control coming back empty, an ID dropped from a batch and found
  on its own, a truncated page).
Otherwise the ID is `unproven` (the caller reports it unverifiable), never absent.

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

import arxiv
import httpx
from lxml import etree

from tools.arxiv_id import parse as parse_arxiv_id
from tools.papers import Paper
from tools.terms import search_words

DEFAULT_ARXIV_URL = "https://export.arxiv.org/api/query"
BATCH_SIZE = 100  # IDs per id_list request: keeps URLs short, and max_results can match it
MIN_INTERVAL_S = 3.0
CONNECT_RETRY_WAIT_S = 1.0  # the longest wait before retrying a refused connection
_LOOPBACK = re.compile(r"^https?://(?:127\.\d+\.\d+\.\d+|localhost|\[::1\])(?::\d+)?(?:/|$)", re.I)


def query_params(search: arxiv.Search, start: int = 0) -> dict[str, str]:
    """The API parameters of one page of an `arxiv.Search`, from offset `start`: search_query and/or
    id_list, start, max_results, then the sort of a search (an id_list lookup keeps the list's order)."""
    params = {"search_query": search.query} if search.query else {}
    if search.id_list:
        params["id_list"] = ",".join(search.id_list)
    params |= {"start": str(start), "max_results": str(search.max_results if search.max_results is not None else BATCH_SIZE)}
    if search.query:
        params |= {"sortBy": search.sort_by.value, "sortOrder": search.sort_order.value}
    return params


def request_interval(url: str) -> float:
    """Seconds between requests to `url`: arXiv asks for 3 s; a server on this machine (a local
    mirror, or a test's loopback server) is the user's own and is not held to arXiv's limit."""
    return 0.0 if _LOOPBACK.match(url) else MIN_INTERVAL_S
ABSENCE_GAP_S = 10.0  # the two "no such paper" answers for one ID are at least this far apart
GLITCH_MEMORY_S = 600.0  # an empty answer for an existing paper this recent makes every "no such paper" doubtful
DEFAULT_CONTROLS = ("1706.03762", "2305.17493")  # papers that exist, for control queries when none is known yet
ATOM = "{http://www.w3.org/2005/Atom}"
ARXIV = "{http://arxiv.org/schemas/atom}"
OPENSEARCH = "{http://a9.com/-/spec/opensearch/1.1/}"


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

    def truncated(self, page_size: int, start: int = 0) -> bool:
        """A page holding fewer entries than it announces: arXiv's empty-page glitch.

        `start`: the page's offset; the last page of a search holds only what is left after it.
        """
        return len(self.papers) < min(max(self.total_results - start, 0), page_size)


@dataclass
class IdLookup:
    """What the API said about a set of IDs (canonical, no version)."""

    found: dict[str, Paper] = field(default_factory=dict)
    absent: set[str] = field(default_factory=set)  # proven missing (see the module docstring)
    failed: dict[str, str] = field(default_factory=dict)  # id -> why the API could not answer
    unproven: dict[str, str] = field(default_factory=dict)  # id -> why its "no such paper" is no proof


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
        self.absence_gap = ABSENCE_GAP_S
        self.glitch_memory = GLITCH_MEMORY_S
        self._last_request: float | None = None
        self._glitches: list[float] = []  # clock times of empty answers for papers that exist
        self._known: list[str] = []  # IDs seen to exist, most recent last: control queries
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

    def lookup(self, ids: Iterable[str], *, seen_absent: Iterable[str] = (), controls: Iterable[str] = ()) -> IdLookup:
        """Resolve canonical IDs: one id_list request per BATCH_SIZE IDs, then the proof of absence
        for every ID no answer returned (module docstring).

        `seen_absent`: IDs an earlier answer (the cache's) said do not exist; that answer counts as
        the first "no such paper", so one control and one fresh single-ID answer re-confirm it.
        `controls`: IDs known to exist, for control queries.
        """
        wanted = list(dict.fromkeys(ids))
        earlier = set(seen_absent)
        result = IdLookup()
        negatives: dict[str, float] = {}  # id -> clock time of its first single-ID "no such paper"
        glitches_before = len(self._glitches)
        asked = [i for i in wanted if i not in earlier]
        for start in range(0, len(asked), BATCH_SIZE):
            batch = asked[start : start + BATCH_SIZE]
            try:
                feed = self._id_feed(batch)
            except ArxivUnavailable as error:
                result.failed.update({i: str(error) for i in batch})
                continue
            if feed.errors and len(batch) == 1:
                result.failed[batch[0]] = f"arXiv rejected the ID: {feed.errors[0]}"
                continue
            found = {p.id: p for p in feed.papers if p.id in batch}
            self._learn(found, result)
            missing = [i for i in batch if i not in found]
            if len(batch) == 1 and missing and not feed.errors:
                negatives[missing[0]] = self.clock.monotonic()  # a single-ID query already
                continue
            for arxiv_id in missing:
                self._ask_alone(arxiv_id, result, negatives, dropped=True)
        for arxiv_id in wanted:
            if arxiv_id in earlier:
                negatives[arxiv_id] = float("-inf")  # answered before, long enough ago
        if not negatives:
            return result
        control = self._control(result, controls)
        first = min(negatives.values())
        if (wait := first + self.absence_gap - self.clock.monotonic()) > 0:
            self.clock.sleep(wait)
        seconds: dict[str, float] = {}
        for arxiv_id in list(negatives):
            self._ask_alone(arxiv_id, result, seconds, dropped=arxiv_id not in earlier)
        glitched = len(self._glitches) > glitches_before or self._recent_glitch()
        for arxiv_id in negatives:
            if arxiv_id in result.found or arxiv_id in result.failed:
                continue
            if arxiv_id not in seconds:
                continue
            if control is not None:
                result.unproven[arxiv_id] = f"arXiv returned no entry for it, but {control}, so that is no proof of absence"
            elif glitched:
                result.unproven[arxiv_id] = "arXiv returned no entry for it, but in this check it also answered empty for papers that exist, so that is no proof of absence"
            else:
                result.absent.add(arxiv_id)
        return result

    def _ask_alone(self, arxiv_id: str, result: IdLookup, negatives: dict[str, float], *, dropped: bool) -> None:
        """One single-ID query: the paper, an Error entry, a fault, or a "no such paper" (recorded
        with its time). A paper found after a batch or an earlier answer dropped it is a glitch."""
        try:
            feed = self.fetch(arxiv.Search(id_list=[arxiv_id], max_results=1))
        except ArxivUnavailable as error:
            result.failed[arxiv_id] = str(error)
            return
        match = [p for p in feed.papers if p.id == arxiv_id]
        if match:
            if dropped or arxiv_id in negatives:
                self._glitch()
            self._learn({arxiv_id: match[0]}, result)
            negatives.pop(arxiv_id, None)
        elif feed.errors:
            result.failed[arxiv_id] = f"arXiv rejected the ID: {feed.errors[0]}"
        else:
            negatives.setdefault(arxiv_id, self.clock.monotonic())

    def _control(self, result: IdLookup, controls: Iterable[str]) -> str | None:
        """Ask for a paper known to exist; None when it came back, else what went wrong."""
        known = [*result.found, *reversed(self._known), *controls, *DEFAULT_CONTROLS]
        control = known[0]
        try:
            feed = self.fetch(arxiv.Search(id_list=[control], max_results=1))
        except ArxivUnavailable as error:
            return f"the control query for {control}, a paper that exists, failed ({error})"
        if any(p.id == control for p in feed.papers):
            return None
        self._glitch()
        return f"the control query for {control}, a paper that exists, came back empty too"

    def _learn(self, found: dict[str, Paper], result: IdLookup) -> None:
        result.found.update(found)
        self._known = [i for i in self._known if i not in found][-50:] + list(found)

    def _glitch(self) -> None:
        self._glitches = [t for t in self._glitches if t >= self.clock.monotonic() - self.glitch_memory] + [self.clock.monotonic()]

    def _recent_glitch(self) -> bool:
        return any(t >= self.clock.monotonic() - self.glitch_memory for t in self._glitches)

    def search(self, query: str, *, since: date | None = None, until: date | None = None, limit: int = 20) -> list[Paper]:
        """Papers matching any of the query's search terms, most relevant first, submitted within [since, until]."""
        words = search_words(query, limit=12)
        if not words or limit <= 0:
            return []
        # a hyphenated or possessive word is sent as a quoted phrase: a bare "-" is Lucene's NOT
        terms = " OR ".join(f"all:{w}" if w.isalnum() else f'all:"{re.sub(r"[^0-9a-z]+", " ", w).strip()}"'
                            for w in words)
        search_query = f"({terms})"
        if since or until:
            low = (since or date(1991, 8, 1)).strftime("%Y%m%d0000")
            high = (until or date(2099, 12, 31)).strftime("%Y%m%d2359")
            search_query += f" AND submittedDate:[{low} TO {high}]"
        feed = self.fetch(arxiv.Search(query=search_query, max_results=min(limit, 200),
                                       sort_by=arxiv.SortCriterion.Relevance, sort_order=arxiv.SortOrder.Descending))
        return feed.papers[:limit]

    def search_page(self, search_query: str, *, start: int, max_results: int) -> Feed:
        """One page of a raw `search_query`, newest submissions first, for paging with `start`.

        Newest first: papers announced later go to the front, so a resumed walk re-reads a few
        papers instead of skipping any, and the newest are within arXiv's 30000-per-query reach.
        A page with fewer entries than announced is retried like any fault (ArxivUnavailable).
        """
        return self.fetch(arxiv.Search(query=search_query, max_results=max_results,
                                       sort_by=arxiv.SortCriterion.SubmittedDate, sort_order=arxiv.SortOrder.Descending), start)

    def fetch(self, search: arxiv.Search, start: int = 0) -> Feed:
        """One page of an `arxiv.Search` (`max_results` entries from offset `start`), through this
        client: spaced, retried on faults, classified (ArxivUnavailable when there is no answer)."""
        return self._get(query_params(search, start))

    def _id_feed(self, batch: list[str]) -> Feed:
        params = query_params(arxiv.Search(id_list=batch, max_results=len(batch)))
        feed = self._get(params)
        if not feed.papers and len(batch) > 1:
            # A whole batch of well-formed IDs coming back empty is far likelier a glitch than a
            # hundred fabrications: ask once more before confirming IDs one by one.
            feed = self._get(params)
        return feed

    def _get(self, params: dict[str, str], *, retries: int | None = None, timeout: float | None = None) -> Feed:
        """One logical request: spaced, retried on faults with backoff (Retry-After honoured)."""
        retries = self.max_retries if retries is None else retries
        problem = "no request made"
        with self._lock:
            for attempt in range(retries + 1):
                previous = self._last_request
                self._wait_turn()
                try:
                    response = self._http.get(self.base_url, params=params, timeout=timeout or httpx.USE_CLIENT_DEFAULT)
                except httpx.TimeoutException:
                    problem, wait = "timed out", self._backoff(attempt)
                except httpx.ConnectError as error:
                    # refused, or no such host: answered at once, and far likelier a wrong address or
                    # no network than a brief outage, so the user is not kept waiting through the full
                    # backoff; nothing reached the API, so its spacing is not charged either
                    problem, wait = f"unreachable ({type(error).__name__}: {error})", min(self._backoff(attempt), CONNECT_RETRY_WAIT_S)
                    self._last_request = previous
                except httpx.TransportError as error:
                    problem, wait = f"unreachable ({type(error).__name__}: {error})", self._backoff(attempt)
                else:
                    feed, problem, wait = self._classify(response, attempt, int(params.get("max_results", "10")), int(params.get("start", "0")))
                    if feed is not None:
                        return feed
                if wait is None or attempt == retries:
                    break
                self.clock.sleep(wait)
        raise ArxivUnavailable(f"arXiv API at {self.base_url}: {problem}")

    def _classify(self, response: httpx.Response, attempt: int, page_size: int, start: int = 0) -> tuple[Feed | None, str, float | None]:
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
        if feed.truncated(page_size, start):
            self._glitch()
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
    parsed = parse_arxiv_id(entry_id)  # "http://arxiv.org/abs/2305.17493v3": the latest version
    arxiv_id, versions = (parsed.canonical, parsed.version) if parsed else (re.sub(r"^https?://arxiv\.org/abs/", "", entry_id), None)
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

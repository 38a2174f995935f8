"""The literature source chain: cache -> offline snapshot -> live arXiv, or one of them explicitly.

`lookup` answers per ID with `found`, `absent` (an authoritative source answered: no such paper) or
`error` (nobody could answer). Only the live API is authoritative for absence, and only with proof
(tools.arxiv_api: two spaced single-ID answers with a control in between, no glitch seen): the
snapshot holds a few hundred papers, so a miss there is `error`, never `absent` — a real paper is
never called fake because it is missing from our files, because a network call failed, or because
arXiv answered a page empty. A cached "no such paper" is short-lived and is re-confirmed live
before it becomes a verdict again.

In `auto` mode the live API is probed once, on first need, with a short timeout; when it does not
answer, the source says so once (`notice`, `describe()`) and works from the snapshot without
further network attempts.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterable
from datetime import date
from pathlib import Path
from functools import cache
from typing import TYPE_CHECKING, Literal

import httpx
from pydantic import BaseModel

from tools.arxiv_api import DEFAULT_ARXIV_URL, MIN_INTERVAL_S, ArxivClient, ArxivUnavailable, Clock
from tools.cache import LookupCache
from tools.arxiv_id import parse as parse_arxiv_id
from tools.papers import Paper
from tools.snapshot import Snapshot

if TYPE_CHECKING:
    from tools.embeddings import Embedder

log = logging.getLogger(__name__)

SourceMode = Literal["auto", "snapshot", "arxiv"]
SOURCE_MODES: tuple[str, ...] = ("auto", "snapshot", "arxiv")


class Lookup(BaseModel):
    status: Literal["found", "absent", "error"]
    paper: Paper | None = None
    origin: Literal["cache", "snapshot", "arxiv"] | None = None
    detail: str = ""


class SourceUnreachable(RuntimeError):
    """The source the user asked for explicitly (`--source arxiv`) could not be reached."""


class PaperSource:
    def __init__(self, mode: SourceMode, *, snapshot: Snapshot | None, client: ArxivClient | None, cache: LookupCache | None) -> None:
        self.mode = mode
        self.snapshot = snapshot if mode != "arxiv" else None
        # What a sentence is compared against so that "similar" has a scale, and what we know of a
        # paper beyond its abstract (our findings); never an answer to a lookup in arxiv mode.
        self.reference = snapshot
        self.client = client if mode != "snapshot" else None
        self.cache = cache if mode != "snapshot" else None
        self.live_problem: str | None = None  # why the live API was not used, once known
        self.notice: str | None = None  # one line for the user, set when auto mode falls back offline
        self._probed = mode != "auto"
        self._warm_probed = False  # --source arxiv: the live API probed once when the cache answered
        self._found: dict[str, Lookup] = {}  # papers this source has resolved: asked again, answered from here
        self._cache_hits = 0
        self._background: dict[int, list[Paper]] = {}
        self.embedder: Embedder | None = None  # the embedder the run chose; grounding uses it
        self.grounding: dict[str, object] = {}  # tools.grounding's state for this source: one judge per embedder
        self._probe_lock = threading.Lock()  # the agent's worker threads share one source: probe once
        # Ask afresh (a re-check): cached papers and searches are not reused, only refreshed; a cached
        # "no such paper" is still only a first answer that needs re-confirming.
        self.fresh = False

    # --- lookups ---------------------------------------------------------------------------------

    def lookup(self, ids: Iterable[str]) -> dict[str, Lookup]:
        """Canonical ID -> Lookup for every ID given (`2305.17493v3` is answered as `2305.17493`).

        For an ID cited with a version, a record that knows the version count is preferred (the
        live API's), so `v3` of a two-version paper can be caught.
        """
        keys, versioned = [], set()
        for raw in ids:
            parsed = parse_arxiv_id(raw)
            key = parsed.canonical if parsed else raw
            if parsed and parsed.version:
                versioned.add(key)
            if key not in keys:
                keys.append(key)
        # a paper resolved earlier in this process is not asked for again (a re-check's "fresh" means
        # fresh for this run, not twice within it)
        result: dict[str, Lookup] = {
            k: self._found[k] for k in keys if k in self._found and (k not in versioned or self._found[k].paper.versions is not None)
        }
        seen_absent: set[str] = set()
        if self.cache:
            cached = self.cache.papers([k for k in keys if k not in result]) if not self.fresh else {}
            for key, paper in cached.items():
                if key not in versioned or paper.versions is not None:
                    result[key] = Lookup(status="found", paper=paper, origin="cache")
                    self._cache_hits += 1
            # a cached "no such paper" is a first answer, not a verdict: it is re-confirmed live
            seen_absent = self.cache.absent(k for k in keys if k not in result)
            if cached and self.mode == "arxiv" and self.client is not None and not self.client.requests_sent \
                    and not self._warm_probed:
                # the cache answered before the live API was asked anything; one probe tells the user
                # if the API is down
                self._warm_probed = True
                if problem := self.client.probe():
                    self._live_failed(problem)
        offline = self.snapshot.get_many(k for k in keys if k not in result) if self.snapshot else {}
        for key, paper in offline.items():
            if key not in versioned or paper.versions is not None or not self._live_usable():
                result[key] = Lookup(status="found", paper=paper, origin="snapshot")
        rest = [k for k in keys if k not in result]
        if rest and self._live_usable():
            self._ask_live(rest, result, offline, seen_absent & set(rest))
        for key in (k for k in keys if k not in result):
            if key in seen_absent:
                detail = f"arXiv said earlier that it has no paper with this ID, and that could not be re-confirmed now ({self._why_unanswered()})"
                result[key] = Lookup(status="error", origin="cache", detail=detail)
            else:
                result[key] = Lookup(status="error", detail=self._why_unanswered())
        self._found.update({k: r for k, r in result.items() if r.status == "found"})
        return result

    def _ask_live(self, ids: list[str], result: dict[str, Lookup], offline: dict[str, Paper], seen_absent: set[str]) -> None:
        assert self.client is not None
        controls = [k for k, r in result.items() if r.status == "found"] + [p.id for p in self.background(3)[:3]]
        answer = self.client.lookup(ids, seen_absent=seen_absent, controls=controls)
        if self.cache:
            self.cache.store(answer.found, answer.absent)
            self.cache.forget_absent(answer.unproven)
        for key, paper in answer.found.items():
            result[key] = Lookup(status="found", paper=paper, origin="arxiv")
        for key in answer.absent:
            how = "again (re-confirming an earlier answer)" if key in seen_absent else "twice, spaced, with a control query for a real paper answered in between"
            result[key] = Lookup(status="absent", origin="arxiv", detail=f"arXiv answered {how} that it has no paper with this ID")
        for key, why in [*answer.failed.items(), *answer.unproven.items()]:
            if key in offline:
                result[key] = Lookup(status="found", paper=offline[key], origin="snapshot")
            elif key in seen_absent:
                result[key] = Lookup(status="error", origin="cache", detail=f"arXiv said earlier that it has no paper with this ID, and that could not be re-confirmed now ({why})")
            else:
                result[key] = Lookup(status="error", origin="arxiv" if key in answer.unproven else None, detail=why)
        if answer.failed and len(answer.failed) == len(ids):
            self._live_failed(next(iter(answer.failed.values())))
        elif answer.failed and self.notice is None:
            self.notice = (f"live arXiv failed on {len(answer.failed)} of {len(ids)} IDs asked "
                           f"({next(iter(answer.failed.values()))}); those without an offline answer are unverifiable")

    def _why_unanswered(self) -> str:
        if self.mode == "snapshot":
            return "not in the offline snapshot, which holds only part of arXiv; check it with --source auto or arxiv"
        if self.mode == "auto":
            return "not in the offline snapshot, and the live arXiv API was unreachable"
        return f"the live arXiv API could not answer ({self.live_problem})"

    # --- search ----------------------------------------------------------------------------------

    def search(self, query: str, *, since: date | None = None, until: date | None = None, limit: int = 20) -> list[Paper]:
        """Live arXiv search and snapshot search, merged (alternating, best first), one entry per ID."""
        offline = [p for p, _ in self.snapshot.search(query, since=since, until=until, limit=limit)] if self.snapshot else []
        live: list[Paper] = []
        if self._live_usable():
            live = self._live_search(query, since, until, limit)
        elif self.mode == "arxiv" and self.client is not None:
            # --source arxiv asked for the live API and nothing else: its failure is the run's, not a
            # quiet fall-back to an empty search
            raise SourceUnreachable(f"live arXiv search failed: {self.live_problem}")
        merged: dict[str, Paper] = {}
        held = {p.id: p for p in offline}
        for index in range(max(len(live), len(offline))):
            for papers in (live, offline):
                if index < len(papers) and papers[index].id not in merged:
                    paper = papers[index]
                    if paper.source != "snapshot" and paper.id in held:
                        paper = paper.model_copy(update={"topics": held[paper.id].topics})
                    merged[paper.id] = paper
        return list(merged.values())[:limit]

    def _live_search(self, query: str, since: date | None, until: date | None, limit: int) -> list[Paper]:
        assert self.client is not None
        key = f"{query}|{since}|{until}|{limit}"
        if self.cache and not self.fresh and (cached := self.cache.search(key)) is not None:
            self._cache_hits += 1
            return cached
        try:
            papers = self.client.search(query, since=since, until=until, limit=limit)
        except ArxivUnavailable as error:
            self._live_failed(str(error))
            if self.mode == "arxiv":
                raise SourceUnreachable(f"live arXiv search failed: {error}") from None
            return []
        if self.cache:
            self.cache.store_search(key, papers)
        return papers

    def candidates(self, text: str, surnames: list[str], *, limit: int = 15, live: bool = False) -> list[Paper]:
        """Papers a sentence may describe: text matches, plus papers by the surnames it names."""
        found = {p.id: p for p, _ in self.snapshot.search(text, limit=limit)} if self.snapshot else {}
        for paper in self._by_authors(surnames, text):
            found.setdefault(paper.id, paper)
        if live and self._live_usable():
            try:
                papers = self._live_search(" ".join([*surnames, text]), None, None, limit)
            except SourceUnreachable:
                papers = []  # candidates are a help, not an answer: grounding goes on without them
            for paper in papers:
                found.setdefault(paper.id, paper)
        return list(found.values())

    def background(self, n: int) -> list[Paper]:
        """Up to `n` papers to compare a sentence against, so that "similar" has a scale: the
        snapshot's, or the packaged snapshot's when this source has no snapshot (`--source arxiv`)."""
        if n not in self._background:
            self._background[n] = (self.reference or _packaged_snapshot()).sample(n)
        return self._background[n]

    def _by_authors(self, surnames: list[str], text: str) -> list[Paper]:
        """The snapshot's papers by these surnames (its FTS author column, at any size): all of them,
        or, for a common name, those that best match `text` (tools.snapshot `by_authors`)."""
        if not surnames or self.snapshot is None:
            return []
        return self.snapshot.by_authors(surnames, text=text)

    # --- state -----------------------------------------------------------------------------------

    def _live_usable(self) -> bool:
        if self.client is None or self.live_problem is not None:
            return False
        with self._probe_lock:
            if not self._probed:
                self._probed = True
                if problem := self.client.probe():
                    self._live_failed(problem)
        return self.live_problem is None

    def _live_failed(self, problem: str) -> None:
        """Remember that the live API failed, and say so once (`notice`: callers print it on stderr),
        also when the cache answered the rest: a warm cache must not hide a dead API."""
        if self.live_problem is None:
            self.live_problem = problem
            fallback = "using the offline snapshot only" if self.mode == "auto" else "what it alone can answer is unverifiable"
            self.notice = f"live arXiv unreachable ({problem}); {fallback}"
            log.info(self.notice)

    @property
    def unreachable(self) -> bool:
        """True when the live API was wanted and could not be used."""
        return self.live_problem is not None

    def describe(self) -> list[tuple[str, str]]:
        """(name, detail) rows for a report's sources section."""
        rows = []
        if self.snapshot is not None:
            origins = self.snapshot.count_by_origin()
            abstracts = origins.get("arxiv", 0) + origins.get("kaggle", 0)
            kinds = ("summaries are our paraphrases" if not abstracts else
                     f"{origins.get('packaged', 0)} with our own-words summaries, {abstracts} with their arXiv abstracts")
            rows.append(("offline snapshot", f"{len(self.snapshot)} papers, newest {self.snapshot.snapshot_date}; {kinds}"))
            for index in list(self.snapshot.dense_indexes.values()):  # the dense half, as retrieval used it (tools.dense)
                rows.append(("dense retrieval", index.describe()))
        if self.client is not None:
            if self.live_problem is not None:
                used = "used snapshot only" if self.snapshot is not None else "nothing could be checked live"
                rows.append(("live arXiv", f"unreachable at {self.client.base_url} ({self.live_problem}); {used}"))
            elif self.client.requests_sent:
                rows.append(("live arXiv", f"{self.client.base_url}: {self.client.requests_sent} requests"))
            else:
                rows.append(("live arXiv", f"{self.client.base_url}: not needed (no requests)"))
        if self.cache is not None:
            rows.append(("cache", f"{self.cache.path or 'in memory'}: {self._cache_hits} answers reused"))
        return rows


@cache
def _packaged_snapshot() -> Snapshot:
    return Snapshot.open(None)


def open_source(
    mode: SourceMode,
    *,
    arxiv_url: str | None = DEFAULT_ARXIV_URL,
    cache_path: Path | None,
    snapshot: Snapshot | None = None,
    clock: Clock | None = None,
    min_interval: float = MIN_INTERVAL_S,
    timeout: float = 20.0,
    max_retries: int = 3,
    backoff: float = 3.0,
    transport: httpx.BaseTransport | None = None,
    embedder: Embedder | None = None,
    fresh: bool = False,
) -> PaperSource:
    """The source chain for `--source auto|snapshot|arxiv`. `cache_path=None` keeps the cache in memory.

    `embedder`: the one the run's settings chose; grounding through this source uses it.
    `fresh`: ask the live API again rather than reuse cached papers and searches (a re-check).
    """
    if mode not in SOURCE_MODES:
        raise ValueError(f"source {mode!r} is not one of: {', '.join(SOURCE_MODES)}")
    if mode != "arxiv" and snapshot is None:
        snapshot = Snapshot.open(None)  # in arxiv mode a given snapshot only calibrates grounding
    client = None
    if mode != "snapshot":
        client = ArxivClient(
            arxiv_url or DEFAULT_ARXIV_URL, clock=clock, min_interval=min_interval, timeout=timeout,
            max_retries=max_retries, backoff=backoff, transport=transport,
        )
    cache = LookupCache(cache_path) if mode != "snapshot" else None
    source = PaperSource(mode, snapshot=snapshot, client=client, cache=cache)
    source.embedder = embedder
    source.fresh = fresh
    return source

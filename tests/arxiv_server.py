"""A loopback server that speaks the arXiv API's Atom protocol, for tests and benchmarks of the live path.

    with ArxivServer(papers, clock=clock) as server:
        client = ArxivClient(server.url, clock=clock)

GET /api/query answers like export.arxiv.org (shared/notes/api_notes.md §3): `id_list` returns the
listed papers (latest version in <id>, unknown IDs silently dropped, `totalResults` = entries),
a malformed ID gets HTTP 400 with one Error entry, `search_query` matches words and quoted phrases
(all:/ti:/abs:/au:; clauses joined by AND must all match, terms inside one clause by OR), `cat:`
(any of a paper's categories) and a `submittedDate:[.. TO ..]` range; `sortBy=submittedDate` orders
by date (`sortOrder`), otherwise by words matched. Faults are scripted per request (`server.faults.extend([...])`)
or constant (`server.always = "503"`):
  "503"        HTTP 503
  "429"        HTTP 429 with Retry-After: `retry_after` seconds
  "slow"       answers after `slow_s` real seconds (past a short client timeout)
  "empty"      HTTP 200, no entries, totalResults still the true count (arXiv's empty-page glitch)
  "empty_zero" HTTP 200, no entries, totalResults 0 (the glitch as the `arxiv` client reports it)
or by chance: `empty_share=0.8` answers that share of pages (ID lookups and searches alike) with
`empty_kind` ("empty_zero" by default: indistinguishable from "no such paper"), drawn from a
seeded generator, as arXiv's API does on bad days.
Every request is logged (`server.requests`) with the injected clock's time, so tests can check
batching and spacing. The server stops itself after `lifetime` seconds.
"""

from __future__ import annotations

import json
import random
import re
import threading
import time
from collections import deque
from dataclasses import dataclass
from datetime import date
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib.resources import files
from urllib.parse import parse_qs, urlparse
from xml.sax.saxutils import escape

from tools.papers import Paper

NEW_ID = re.compile(r"^\d{4}\.\d{4,5}(v[1-9]\d*)?$")
OLD_ID = re.compile(r"^[a-z]+(-[a-z]{2,})?(\.[A-Za-z-]{2,})?/\d{7}(v[1-9]\d*)?$")

# Real papers that are NOT in the packaged snapshot: only the live path can resolve them.
LIVE_ONLY_PAPERS = [
    Paper(id="1706.03762", title="Attention Is All You Need", published=date(2017, 6, 12), versions=7,
          authors=["Ashish Vaswani", "Noam Shazeer", "Niki Parmar", "Jakob Uszkoreit", "Llion Jones", "Aidan N. Gomez", "Lukasz Kaiser", "Illia Polosukhin"],
          summary="Proposes the Transformer, a sequence transduction architecture based solely on attention, dispensing with recurrence and convolutions, and reports machine translation results.",
          categories=["cs.CL", "cs.LG"], primary_category="cs.CL", source="arxiv"),
    Paper(id="1512.03385", title="Deep Residual Learning for Image Recognition", published=date(2015, 12, 10), versions=1,
          authors=["Kaiming He", "Xiangyu Zhang", "Shaoqing Ren", "Jian Sun"],
          summary="Residual networks learn residual functions with reference to the layer inputs, which eases training of very deep networks for image recognition.",
          categories=["cs.CV"], primary_category="cs.CV", source="arxiv"),
    Paper(id="1406.2661", title="Generative Adversarial Networks", published=date(2014, 6, 10), versions=1,
          authors=["Ian J. Goodfellow", "Jean Pouget-Abadie", "Mehdi Mirza", "Bing Xu", "David Warde-Farley", "Sherjil Ozair", "Aaron Courville", "Yoshua Bengio"],
          summary="A generative model and a discriminative model are trained simultaneously in an adversarial two-player game; the generator learns the data distribution.",
          categories=["stat.ML", "cs.LG"], primary_category="stat.ML", source="arxiv"),
    Paper(id="2005.14165", title="Language Models are Few-Shot Learners", published=date(2020, 5, 28), versions=4,
          authors=["Tom B. Brown", "Benjamin Mann", "Nick Ryder", "Melanie Subbiah"],
          summary="Scaling up language models to 175 billion parameters (GPT-3) greatly improves task-agnostic few-shot performance from in-context examples.",
          categories=["cs.CL"], primary_category="cs.CL", source="arxiv"),
    Paper(id="hep-th/9711200", title="The Large N Limit of Superconformal Field Theories and Supergravity", published=date(1997, 11, 27), versions=3,
          authors=["Juan M. Maldacena"],
          summary="The large N limit of certain conformal field theories is described by supergravity on anti-de Sitter space times a compact manifold.",
          categories=["hep-th"], primary_category="hep-th", source="arxiv"),
    Paper(id="math/0211159", title="The entropy formula for the Ricci flow and its geometric applications", published=date(2002, 11, 11), versions=1,
          authors=["Grisha Perelman"],
          summary="A monotonic entropy formula for the Ricci flow, valid in all dimensions, with applications to the geometrization of three-manifolds.",
          categories=["math.DG"], primary_category="math.DG", source="arxiv"),
]


def numbered_papers(n: int, month: str = "2401") -> list[Paper]:
    """`n` placeholder papers YYMM.00001.. with 1-3 versions: volume for batching and cache tests."""
    return [
        Paper(id=f"{month}.{i:05d}", title=f"Loopback paper {i}", authors=[f"Author{i} Example"],
              published=date(2000 + int(month[:2]), int(month[2:]), 15), versions=1 + i % 3, source="arxiv")
        for i in range(1, n + 1)
    ]


def snapshot_papers(versions: int = 1) -> list[Paper]:
    """The packaged snapshot's papers, as the live API would serve them (real-abstract flag, versions)."""
    raw = files("tools.data").joinpath("arxiv_snapshot.jsonl").read_text(encoding="utf-8")
    papers = []
    for line in raw.splitlines():
        if line.strip():
            record = json.loads(line)
            fields = {k: v for k, v in record.items() if k in Paper.model_fields}
            papers.append(Paper(**fields).model_copy(update={"versions": versions, "source": "arxiv"}))
    return papers


class SimulatedClock:
    """An injectable clock whose sleeps advance time instantly; `slept` records each wait."""

    def __init__(self) -> None:
        self.now = 0.0
        self.slept: list[float] = []

    def monotonic(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


@dataclass
class LoggedRequest:
    params: dict[str, str]
    at: float  # the injected clock's time when the request arrived

    @property
    def ids(self) -> list[str]:
        return [i for i in self.params.get("id_list", "").split(",") if i]


class ArxivServer:
    def __init__(
        self, papers: list[Paper], *, clock=None, retry_after: float = 7.0, slow_s: float = 0.5, lifetime: float = 120.0,
        empty_share: float = 0.0, empty_kind: str = "empty_zero", seed: int = 0,
    ) -> None:
        self.papers = {p.id: p for p in papers}
        self.clock = clock
        self.retry_after = retry_after
        self.slow_s = slow_s
        self.lifetime = lifetime
        self.faults: deque[str] = deque()
        self.always: str | None = None
        self.empty_share = empty_share
        self.empty_kind = empty_kind
        self._random = random.Random(seed)
        self.requests: list[LoggedRequest] = []
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self._timer = threading.Timer(lifetime, self.stop)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}/api/query"

    def __enter__(self) -> ArxivServer:
        self._thread.start()
        self._timer.daemon = True
        self._timer.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    def stop(self) -> None:
        self._timer.cancel()
        if self._thread.is_alive():
            self._server.shutdown()
        self._server.server_close()

    def _next_fault(self, params: dict[str, str]) -> str | None:
        with self._lock:
            self.requests.append(LoggedRequest(params, self.clock.monotonic() if self.clock else time.monotonic()))
            if self.faults:
                return self.faults.popleft()
            if self.always is None and self.empty_share and self._random.random() < self.empty_share:
                return self.empty_kind
            return self.always

    def answer(self, params: dict[str, str]) -> tuple[int, dict[str, str], bytes]:
        fault = self._next_fault(params)
        if fault == "503":
            return 503, {}, b"Service Unavailable"
        if fault == "429":
            return 429, {"Retry-After": f"{self.retry_after:g}"}, b"Too Many Requests"
        if fault == "slow":
            time.sleep(self.slow_s)
        ids = [i for i in params.get("id_list", "").split(",") if i]
        bad = [i for i in ids if not (NEW_ID.match(i) or OLD_ID.match(i))]
        if bad:
            return 400, {}, error_feed(f"incorrect id format for {bad[0]}", bad[0])
        if ids:
            found = [self._versioned(i) for i in ids if _strip_version(i) in self.papers]
            found = [f for f in found if f is not None]
        else:
            found = self._search(params.get("search_query", ""))
            if params.get("sortBy") == "submittedDate":
                found.sort(key=lambda pv: (pv[0].published, pv[0].id), reverse=params.get("sortOrder") != "ascending")
        start = int(params.get("start", "0"))
        page = found[start : start + int(params.get("max_results", "10"))]
        if fault == "empty":
            return 200, {}, feed(page[:0], total=len(found))
        if fault == "empty_zero":
            return 200, {}, feed([], total=0)
        return 200, {}, feed(page, total=len(found))

    def _versioned(self, requested: str) -> tuple[Paper, int] | None:
        paper = self.papers[_strip_version(requested)]
        latest = paper.versions or 1
        asked = re.search(r"v(\d+)$", requested)
        if asked and int(asked.group(1)) > latest:
            return None
        return paper, int(asked.group(1)) if asked else latest

    def _search(self, query: str) -> list[tuple[Paper, int]]:
        window = re.search(r"submittedDate:\[(\d{8})\d{4} TO (\d{8})\d{4}\]", query)
        low, high = (window.group(1), window.group(2)) if window else ("00000000", "99999999")
        categories = re.findall(r"cat:([\w.\-]+)", query)
        clauses = [
            [(phrase or word).lower() for phrase, word in re.findall(r"(?:all|ti|abs|au):(?:\"([^\"]+)\"|([^\s\")]+))", clause)]
            for clause in re.split(r"\s+AND\s+", query)
        ]
        clauses = [terms for terms in clauses if terms]  # a date or category clause holds no words
        scored = []
        for paper in self.papers.values():
            if not low <= paper.published.strftime("%Y%m%d") <= high:
                continue
            if any(c not in paper.categories for c in categories):
                continue
            text = " ".join(re.findall(r"[^\W_]+", f"{paper.title} {paper.summary} {' '.join(paper.authors)}".lower()))
            matched = [sum(term in text for term in terms) for terms in clauses]
            hits = sum(matched)
            if hits and all(matched):
                scored.append((hits, paper.id, paper))
        scored.sort(key=lambda t: (-t[0], t[1]))
        return [(paper, paper.versions or 1) for _, _, paper in scored]

    def _handler(server_self):  # noqa: N805 — closes over the ArxivServer
        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802
                url = urlparse(self.path)
                if url.path != "/api/query":
                    self.send_error(404)
                    return
                params = {k: v[-1] for k, v in parse_qs(url.query, keep_blank_values=True).items()}
                status, headers, body = server_self.answer(params)
                try:
                    self.send_response(status)
                    self.send_header("Content-Type", "application/atom+xml; charset=utf-8")
                    self.send_header("Content-Length", str(len(body)))
                    for key, value in headers.items():
                        self.send_header(key, value)
                    self.end_headers()
                    self.wfile.write(body)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client gave up (timeout): nothing to answer

            def log_message(self, *args) -> None:
                pass

        return Handler


def _strip_version(arxiv_id: str) -> str:
    return re.sub(r"v\d+$", "", arxiv_id)


def feed(entries: list[tuple[Paper, int]], *, total: int) -> bytes:
    body = "".join(_entry(paper, version) for paper, version in entries)
    return (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        '<feed xmlns="http://www.w3.org/2005/Atom" xmlns:opensearch="http://a9.com/-/spec/opensearch/1.1/" '
        'xmlns:arxiv="http://arxiv.org/schemas/atom">'
        '<id>https://arxiv.org/api/loopback</id><title>arXiv Query Results</title>'
        f"<updated>2026-11-24T00:00:00Z</updated><opensearch:itemsPerPage>{len(entries)}</opensearch:itemsPerPage>"
        f"<opensearch:totalResults>{total}</opensearch:totalResults><opensearch:startIndex>0</opensearch:startIndex>"
        f"{body}</feed>"
    ).encode()


def error_feed(message: str, bad_id: str) -> bytes:
    return (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        '<feed xmlns="http://www.w3.org/2005/Atom" xmlns:opensearch="http://a9.com/-/spec/opensearch/1.1/">'
        "<id>https://arxiv.org/api/loopback</id><title>arXiv Query Results</title>"
        "<opensearch:totalResults>1</opensearch:totalResults>"
        f"<entry><id>https://arxiv.org/api/errors#incorrect_id_format_for_{escape(bad_id)}</id><title>Error</title>"
        f"<summary>{escape(message)}</summary><updated>2026-11-24T00:00:00Z</updated>"
        "<author><name>arXiv api core</name></author></entry></feed>"
    ).encode()


def _entry(paper: Paper, version: int) -> str:
    authors = "".join(f"<author><name>{escape(a)}</name></author>" for a in paper.authors)
    categories = "".join(f'<category term="{escape(c)}" scheme="http://arxiv.org/schemas/atom"/>' for c in paper.categories)
    primary = f'<arxiv:primary_category term="{escape(paper.primary_category)}"/>' if paper.primary_category else ""
    doi = f"<arxiv:doi>{escape(paper.doi)}</arxiv:doi>" if paper.doi else ""
    updated = paper.updated or paper.published
    return (
        f"<entry><id>http://arxiv.org/abs/{paper.id}v{version}</id>"
        f"<updated>{updated.isoformat()}T12:00:00Z</updated><published>{paper.published.isoformat()}T12:00:00Z</published>"
        f"<title>{escape(paper.title)}</title><summary>{escape(paper.summary)}</summary>{authors}{doi}"
        f'<link href="http://arxiv.org/abs/{paper.id}v{version}" rel="alternate" type="text/html"/>'
        f'<link title="pdf" href="http://arxiv.org/pdf/{paper.id}v{version}" rel="related" type="application/pdf"/>'
        f"{primary}{categories}</entry>"
    )

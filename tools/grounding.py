"""Citation grounding: resolve each cited arXiv ID and check that the sentence fits the paper.

Order of checks, each one able to end the verdict:
1. no identifier -> `no_id`; the identifier's shape -> `malformed` / `nonexistent` (offline, tools.citations);
2. resolution through the source chain -> `unverifiable` (nobody could answer) or `not_found`
   (arXiv answered: no such paper, or no such version);
3. fit: does the sentence describe this paper? Evidence, strongest first: a quoted title, the
   authors it names, system names it uses, semantic similarity to title + summary. When the cited
   paper contradicts that evidence and another paper in the source fits better -> `wrong_paper`
   with that paper as `suggested_id`;
4. the stated year against the v1 date -> `year_mismatch` when they differ by 2 years or more.
"""

from __future__ import annotations

import re
from datetime import date
from difflib import SequenceMatcher
from typing import TYPE_CHECKING, Literal

from pydantic import BaseModel

from tools.arxiv_id import check_shape
from tools.citations import Citation, extract_citations, fold
from tools.papers import Paper

if TYPE_CHECKING:
    from tools.embeddings import Embedder
    from tools.sources import PaperSource

CitationStatus = Literal[
    "grounded", "wrong_paper", "year_mismatch", "nonexistent", "malformed", "not_found", "unverifiable", "no_id"
]
FLAGGED: frozenset[str] = frozenset({"wrong_paper", "year_mismatch", "nonexistent", "malformed", "not_found", "no_id"})

# Thresholds, tuned on shared/data/grounding_gold.jsonl (benchmarks/grounding_accuracy.py).
YEAR_GAP = 2  # DESIGN.md: a stated year 2+ years from the v1 date is a mismatch
TITLE_MATCH = 0.6  # claimed-title similarity above which the title names this paper
WEIGHT_AUTHORS, WEIGHT_TITLE, WEIGHT_TERMS, WEIGHT_YEAR = 0.35, 0.6, 0.3, 0.1
BETTER_BY = 0.05  # an alternative must beat a contradicted citation by this much to be suggested
UNSUPPORTED_SIMILARITY = 0.2  # below this (MiniLM cosine) and with a clearly better alternative, the sentence is about another paper
CLEARLY_BETTER = 0.3
RARE_TERM_PAPERS = 2  # a term names a system only when few candidate titles contain it
# An unquoted title: the sentence restates most of another paper's title, well beyond the cited one's.
ECHO_SHARE, ECHO_MARGIN = 0.6, 3
_TITLE_STOP_WORDS = frozenset(
    "a an and are as at be by can do does for from how in into is it its not of on or our the to too via we what when "
    "where which who why with without you your".split()
)


class PaperRef(BaseModel):
    id: str
    title: str
    published: date
    authors: list[str]


class CitationCheck(BaseModel):
    """One citation's verdict; the verify-citations JSON and report.json share this shape."""

    line: int
    as_written: str
    arxiv_id: str | None
    status: CitationStatus
    context: str
    stated_year: int | None
    paper: PaperRef | None
    reason: str
    suggested_id: str | None = None
    version: int | None = None
    stated_years: str | None = None
    claimed_title: str | None = None
    authors_named: list[str] = []
    source: Literal["cache", "snapshot", "arxiv"] | None = None


class Fit(BaseModel):
    paper_id: str
    similarity: float
    authors: float | None  # share of named surnames among the paper's authors; None when none named
    title: float | None  # similarity of the quoted title; None when none quoted
    terms: float | None  # share of the sentence's distinctive names the paper's title/summary holds
    year_close: bool | None
    echo_words: int  # title words the sentence repeats
    echo: float  # their share of the title's words
    score: float


def verify_text(text: str, source: PaperSource, *, run_date: date, embedder: Embedder | None = None) -> list[CitationCheck]:
    """Extract every citation from `text` and ground it."""
    return ground(extract_citations(text), source, run_date=run_date, embedder=embedder)


def ground(citations: list[Citation], source: PaperSource, *, run_date: date, embedder: Embedder | None = None) -> list[CitationCheck]:
    """One CitationCheck per citation, in order. All IDs are resolved in one `lookup` (batched live)."""
    shapes = {c.arxiv_id: check_shape(c.arxiv_id, run_date) for c in citations if c.arxiv_id}
    wanted = [f"{c.arxiv_id}v{c.version}" if c.version else c.arxiv_id for c in citations if c.arxiv_id and shapes[c.arxiv_id] is None]
    found = source.lookup(wanted) if wanted else {}
    judge = _Judge(source, embedder)
    checks = []
    for citation in citations:
        base = dict(
            line=citation.line, as_written=citation.as_written, arxiv_id=citation.arxiv_id, context=citation.context,
            stated_year=citation.stated_year, version=citation.version, stated_years=citation.stated_years,
            claimed_title=citation.claimed_title, authors_named=citation.authors_named,
        )
        if citation.arxiv_id is None:
            checks.append(CitationCheck(**base, status="no_id", paper=None, reason=_no_id_reason(citation)))
            continue
        if (shape := shapes[citation.arxiv_id]) is not None:
            checks.append(CitationCheck(**base, status=shape.status, paper=None, reason=shape.reason))
            continue
        lookup = found[citation.arxiv_id]
        if lookup.status == "error":
            checks.append(CitationCheck(**base, status="unverifiable", paper=None, reason=f"could not be checked: {lookup.detail}"))
            continue
        if lookup.status == "absent":
            checks.append(CitationCheck(**base, status="not_found", paper=None, reason=f"{citation.arxiv_id} is a plausible ID, but {lookup.detail}", source=lookup.origin))
            continue
        paper = lookup.paper
        assert paper is not None
        status, reason, suggested = judge.verdict(citation, paper)
        checks.append(CitationCheck(**base, status=status, paper=_ref(paper), reason=reason, suggested_id=suggested, source=lookup.origin))
    return checks


def summarize(checks: list[CitationCheck]) -> dict[str, float | int]:
    """Counts per status (all statuses present) plus `coverage`: the share of citations with a checkable ID."""
    statuses = CitationStatus.__args__  # type: ignore[attr-defined]
    summary: dict[str, float | int] = {s: sum(c.status == s for c in checks) for s in statuses}
    checkable = sum(c.status not in ("no_id", "malformed") for c in checks)
    summary["total"] = len(checks)
    summary["coverage"] = round(checkable / len(checks), 3) if checks else 0.0
    return summary


def _ref(paper: Paper) -> PaperRef:
    return PaperRef(id=paper.id, title=paper.title, published=paper.published, authors=paper.authors)


def _no_id_reason(citation: Citation) -> str:
    when = citation.stated_years or citation.stated_year
    who = f"{', '.join(citation.authors_named)}, " if citation.authors_named else ""
    return f"dated claim ({who}{when}) with no arXiv identifier, so the source behind it cannot be checked"


class _Judge:
    """Fit of a sentence to papers; holds the embedder and the source for alternatives."""

    def __init__(self, source: PaperSource, embedder: Embedder | None) -> None:
        self.source = source
        self._embedder = embedder

    @property
    def embedder(self) -> Embedder:
        if self._embedder is None:
            from tools.embeddings import get_embedder

            self._embedder = get_embedder("auto")
        return self._embedder

    def verdict(self, citation: Citation, paper: Paper) -> tuple[CitationStatus, str, str | None]:
        if citation.version and paper.versions is not None and citation.version > paper.versions:
            return "not_found", f"{paper.id} exists ({paper.title!r}) but has {paper.versions} version(s); v{citation.version} does not exist", None
        query = self._query(citation)
        candidates = [p for p in self.source.candidates(query, citation.authors_named) if p.id != paper.id]
        cited, fits, terms, contradiction = self._assess(citation, paper, candidates)
        haystack = fold(f"{paper.title} {paper.summary} {' '.join(paper.findings)}")
        unexplained = [t for t in citation.named_terms if not _term_in(t, haystack)]
        if (contradiction or unexplained) and not any(self._supports(citation, f) for f in fits):
            # Nothing at hand explains what the sentence names: ask the live source what it may mean.
            held = {p.id for p in candidates} | {paper.id}
            candidates += [p for p in self.source.candidates(query, citation.authors_named, live=True) if p.id not in held]
            cited, fits, terms, contradiction = self._assess(citation, paper, candidates)
        best = max(fits, key=lambda f: f.score, default=None)
        by_id = {p.id: p for p in candidates}
        if contradiction:
            if best is not None and best.score > cited.score + BETTER_BY and self._supports(citation, best):
                other = by_id[best.paper_id]
                return "wrong_paper", f"{paper.id} is {paper.title!r}, but {contradiction}; the sentence fits {other.id} ({other.title!r}, {other.year})", other.id
            if cited.similarity < UNSUPPORTED_SIMILARITY:
                return "wrong_paper", f"{paper.id} is {paper.title!r}, but {contradiction}, and the sentence's content does not match it either", None
        elif best is not None and cited.similarity < UNSUPPORTED_SIMILARITY and best.score > cited.score + CLEARLY_BETTER:
            other = by_id[best.paper_id]
            return "wrong_paper", f"{paper.id} is {paper.title!r}, which the sentence does not describe; it fits {other.id} ({other.title!r}, {other.year})", other.id
        if not contradiction and (restated := self._restated_title(cited, fits)) is not None:
            other = by_id[restated.paper_id]
            return "wrong_paper", f"{paper.id} is {paper.title!r}, but the sentence restates the title of {other.id} ({other.title!r}, {other.year})", other.id
        return self._year_verdict(citation, paper, cited, contradiction)

    def _restated_title(self, cited: Fit, fits: list[Fit]) -> Fit | None:
        """Another paper whose title the sentence repeats far more than the cited one's, by the
        same named authors (when any) and closer in meaning: the writer's paper, under another ID."""
        for fit in sorted(fits, key=lambda f: (-f.echo_words, -f.similarity)):
            if (
                fit.echo >= ECHO_SHARE
                and fit.echo_words - cited.echo_words >= ECHO_MARGIN
                and fit.similarity > cited.similarity
                and (fit.authors or 0) >= (cited.authors or 0)
            ):
                return fit
        return None

    def _assess(self, citation: Citation, paper: Paper, candidates: list[Paper]) -> tuple[Fit, list[Fit], list[str], str | None]:
        papers = [paper, *candidates]
        terms = self._distinctive_terms(citation, papers)
        # One batch: the sentence and every paper's title + summary.
        vectors = self.embedder.encode([citation.claimed_title or citation.description, *(f"{p.title}. {p.summary}" for p in papers)])
        similarities = vectors[1:] @ vectors[0]
        cited, *fits = [self.fit(citation, p, terms, float(sim)) for p, sim in zip(papers, similarities)]
        return cited, fits, terms, self._contradiction(citation, cited, terms)

    def _year_verdict(self, citation: Citation, paper: Paper, cited: Fit, contradiction: str | None) -> tuple[CitationStatus, str, str | None]:
        span = citation.year_span
        v1 = paper.published
        month = f"{v1:%Y-%m}" if paper.date_precision == "month" else v1.isoformat()
        if span is not None:
            low, high = span
            gap = low - v1.year if low > v1.year else (v1.year - high if high < v1.year else 0)
            if gap >= YEAR_GAP:
                when = "before" if high < v1.year else "after"
                stated = citation.stated_years or str(citation.stated_year)
                return "year_mismatch", f"{paper.id} ({paper.title!r}) was first submitted {month}; the sentence dates it {stated}, {gap} years {when}", None
        evidence = [
            text for held, text in (
                ((cited.title or 0) >= TITLE_MATCH, "quoted title"),
                ((cited.authors or 0) > 0, "named authors"),
                ((cited.terms or 0) > 0, "named system"),
                (bool(cited.year_close), "stated year"),
            ) if held
        ]
        matching = f"matching the sentence's {', '.join(evidence)}" if evidence else "matching the sentence's topic"
        notes = [contradiction] if contradiction else []
        if span is not None and span[1] < v1.year:
            notes.append(f"the sentence dates it {citation.stated_years or citation.stated_year}, before its first version, within the {YEAR_GAP}-year tolerance")
        note = "".join(f"; note: {n}" for n in notes)
        return "grounded", f"{paper.id} is {paper.title!r} ({month}), {matching}{note}", None

    def _query(self, citation: Citation) -> str:
        return " ".join([citation.claimed_title or "", *citation.named_terms, citation.description])

    def fit(self, citation: Citation, paper: Paper, terms: list[str], similarity: float) -> Fit:
        authors = _author_share(citation.authors_named, paper.authors) if citation.authors_named else None
        title = _title_similarity(citation.claimed_title, paper.title) if citation.claimed_title else None
        haystack = fold(" ".join([paper.title, paper.summary, *paper.findings]))
        term_share = sum(_term_in(t, haystack) for t in terms) / len(terms) if terms else None
        span = citation.year_span
        year_close = None if span is None else span[0] - 1 <= paper.year <= span[1] + 1
        score = (
            similarity
            + WEIGHT_AUTHORS * (authors or 0.0)
            + WEIGHT_TITLE * (title or 0.0)
            + WEIGHT_TERMS * (term_share or 0.0)
            + WEIGHT_YEAR * bool(year_close)
        )
        echo_words, echo = _title_echo(paper.title, citation.description)
        return Fit(
            paper_id=paper.id, similarity=similarity, authors=authors, title=title, terms=term_share,
            year_close=year_close, echo_words=echo_words, echo=echo, score=score,
        )

    def _contradiction(self, citation: Citation, cited: Fit, terms: list[str]) -> str | None:
        """What in the sentence speaks against the cited paper, in words; None when nothing does."""
        if cited.title is not None and cited.title < TITLE_MATCH:
            return f"the sentence quotes the title {citation.claimed_title!r}"
        if cited.authors is not None and cited.authors == 0:
            return f"the sentence attributes it to {', '.join(citation.authors_named)}, not among its authors"
        if cited.terms is not None and cited.terms == 0:
            return f"the sentence names {', '.join(terms)}, which this paper does not mention"
        return None

    def _supports(self, citation: Citation, fit: Fit) -> bool:
        """Positive evidence that the sentence is about this paper, beyond topical similarity."""
        return bool((fit.title or 0) >= TITLE_MATCH or (fit.authors or 0) > 0 or (fit.terms or 0) > 0)

    def _distinctive_terms(self, citation: Citation, papers: list[Paper]) -> list[str]:
        """The sentence's names that single out a paper: present in at least one candidate's title,
        and in few of them ('LLMs' names no paper; 'ToolFlow' does)."""
        titles = [fold(p.title) for p in papers]
        terms = []
        for term in citation.named_terms:
            holders = sum(_term_in(term, t) for t in titles)
            if 1 <= holders <= RARE_TERM_PAPERS:
                terms.append(term)
        return terms


def _author_share(named: list[str], authors: list[str]) -> float:
    words = {w for author in authors for w in re.split(r"[\s]+", fold(author)) if w}
    return sum(fold(name) in words for name in named) / len(named)


def _title_similarity(claimed: str, title: str) -> float:
    """Similarity to the full title, or to its main part before a colon (the short form people cite)."""
    a = _words(claimed)
    best = 0.0
    for form in {title, title.split(":")[0]}:
        b = _words(form)
        if a and b:
            overlap = len(set(a) & set(b)) / len(set(a) | set(b))
            best = max(best, overlap, SequenceMatcher(None, " ".join(a), " ".join(b)).ratio())
    return best


def _title_echo(title: str, sentence: str) -> tuple[int, float]:
    title_words = {_stem(w) for w in _words(title) if w not in _TITLE_STOP_WORDS and len(w) > 2}
    if not title_words:
        return 0, 0.0
    said = {_stem(w) for w in _words(sentence)}
    matched = len(title_words & said)
    return matched, matched / len(title_words)


def _stem(word: str) -> str:
    return word[:-1] if len(word) > 3 and word.endswith("s") else word


def _words(text: str) -> list[str]:
    return re.findall(r"[^\W_]+", fold(text))


def _term_in(term: str, folded_text: str) -> bool:
    words = _words(term)
    return bool(words) and all(re.search(rf"(?<![^\W_]){re.escape(w)}", folded_text) for w in words)

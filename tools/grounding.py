"""Citation grounding: resolve each cited arXiv ID and check that the sentence fits the paper.

Order of checks, each one able to end the verdict:
1. no identifier -> `no_id`; the identifier's shape -> `malformed` / `nonexistent` (offline, tools.arxiv_id);
2. resolution through the source chain -> `unverifiable` (nobody could answer, or absence is not
   proven) or `not_found` (arXiv answered "no such paper" with the proof tools.arxiv_api asks for).
   A version above those the source lists is never a reason for `not_found`: the paper exists,
   the verdict notes the version;
3. fit: is this the paper the sentence describes? Evidence about identity — a title the writer
   gives (quoted, emphasised, link text, BibTeX), the authors named, system names — and the
   content: how well the sentence restates the paper (embedding similarity of the sentence with
   the paper's title, summary sentences and findings), in standard deviations above the same
   similarity for a background of other papers (`z`; the background's level and spread are at
   least those of a typical on-topic sentence, so a claim from another field is not "relatively"
   close to one of our papers). `grounded` needs a positive fit: a given title that matches, a
   system name only this paper carries, or content above unrelated papers that shares a specific
   word with the paper (or is close enough in meaning to need none); authors and year alone are
   not enough. A sentence citing several papers is judged per citation, on its own clause and
   names (tools.citations); jointly cited papers are judged together. Against the paper: a
   given title that is not its title (even when the authors match: a real ID and real authors
   with an invented title is a classic fabrication), named authors none of whom wrote it, a
   system name it never mentions, content it does not hold, or another paper whose content the
   sentence restates clearly better (also when both share authors) -> `wrong_paper`, with that
   paper as `suggested_id` when one is at hand;
4. the stated year against the v1 date -> `year_mismatch` when they differ by 2 years or more.

Thresholds were chosen on the dev half of the generated cases (benchmarks/citation_cases.py) and
checked on the held-out half and the hand-written gold (benchmarks/grounding_accuracy.py).
"""

from __future__ import annotations

import re
import threading
from dataclasses import dataclass, field
from datetime import date
from functools import lru_cache
from typing import TYPE_CHECKING, Literal

import numpy as np
from pydantic import BaseModel

from tools.arxiv_id import check_shape, with_version
from tools.citations import Citation, extract_citations, fold
from tools.papers import Paper

if TYPE_CHECKING:
    from tools.embeddings import Embedder
    from tools.sources import PaperSource

CitationStatus = Literal[
    "grounded", "wrong_paper", "year_mismatch", "nonexistent", "malformed", "not_found", "unverifiable", "no_id"
]
CITATION_STATUSES: tuple[str, ...] = CitationStatus.__args__  # type: ignore[attr-defined]
# The one definition of "flagged": the citation is wrong or cannot be checked for what it is. Not
# flagged: `grounded`, and `unverifiable` (the source could not answer; that says nothing about the
# citation, and is reported apart as UNCHECKED).
FLAGGED: frozenset[str] = frozenset({"wrong_paper", "year_mismatch", "nonexistent", "malformed", "not_found", "no_id"})
UNCHECKED: frozenset[str] = frozenset({"unverifiable"})
NOT_GROUNDED: frozenset[str] = FLAGGED | UNCHECKED
ModelFit = Literal["yes", "no", "undetermined"]
FIT_JUDGED: frozenset[str] = frozenset({"grounded", "wrong_paper", "year_mismatch"})  # the ID resolved: fit was judged


def is_flagged(status: str) -> bool:
    return status in FLAGGED


YEAR_GAP = 2  # DESIGN.md: a stated year 2+ years from the v1 date is a mismatch
TITLE_MATCH = 0.7  # given-title word overlap from which the title names this paper
TITLE_CONFLICT = 0.5  # below this, a given title is another paper's (or invented)
_TITLE_SMALL_WORDS = frozenset("a an and as at by for from in into is it of on or the to via vs with without".split())
# Content fit, in background standard deviations (z). Chosen on the dev half of the generated cases.
CONTENT_MIN_Z = 0.5  # below: the sentence does not describe the paper
CONTENT_CLEAR_Z = 2.5  # at or above: the sentence clearly describes a paper
BETTER_BY_Z = 1.5  # another paper restates the sentence better by this much: it is the paper meant
CONTENT_WORDS = 3  # fewer content words than this: the sentence says too little to judge content
PART_WORDS = 4  # a clause is judged on its own from this many content words
RARE_TERM_PAPERS = 3  # a term names a system only when few titles contain it
RARE_WORD_SHARE = 0.02  # ... and one of its words is in at most this share of background papers
SPECIFIC_SHARE = 0.25  # a word in at most this share of background papers is specific ('sparsity', not 'data')
BACKGROUND_SIZE = 400  # papers whose similarity calibrates `z`
CANDIDATES = 20  # background papers that fit the sentence best are weighed as the paper meant
_STOP_WORDS = frozenset(
    "a an and are as at be been by can could do does for from has have how in into is it its not of on or our "
    "that the their them these they this those to too via was we were what when where which who why will with "
    "without you your al et also both such than then there however while whereas see paper papers work works "
    "study studies preprint shows show showed shown finds find found report reports reported argue argues "
    "demonstrate demonstrates observe observes establish establishes conclude concludes later earlier recent "
    "first new result results published introduced introduces propose proposes proposed according".split()
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
    # The sentence names this paper's title, authors or system wrongly: identity evidence, which a
    # model's reading of the content does not override (`with_model_fit`).
    identity_conflict: bool = False
    # A model's answer to "does this sentence describe this paper?" (runs with a model); None: not asked.
    model_fit: ModelFit | None = None

    @property
    def flagged(self) -> bool:
        return self.status in FLAGGED


def verify_text(text: str, source: PaperSource, *, run_date: date, embedder: Embedder | None = None) -> list[CitationCheck]:
    """Extract every citation from `text` and ground it."""
    return ground(extract_citations(text), source, run_date=run_date, embedder=embedder)


def ground(citations: list[Citation], source: PaperSource, *, run_date: date, embedder: Embedder | None = None) -> list[CitationCheck]:
    """One CitationCheck per citation, in order. All IDs are resolved in one `lookup` (batched live).

    The embedder is the caller's, else the one the source was opened with (the run's settings),
    else "auto". A fit is read first by its wording (the lexical embedder, no model to load); a
    reading that settles it (`_Reading.settled`) stands, and only the others are read again with
    the embedder, whose model loads then, once.
    """
    shapes = {c.arxiv_id: check_shape(c.arxiv_id, run_date) for c in citations if c.arxiv_id}
    wanted = [with_version(c.arxiv_id, c.version) for c in citations if c.arxiv_id and shapes[c.arxiv_id] is None]
    found = source.lookup(wanted) if wanted else {}
    judge = _judge_for(source, embedder or getattr(source, "embedder", None))
    wording = _judge_for(source, _lexical())
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
            checks.append(CitationCheck(**base, status="unverifiable", paper=None, reason=f"could not be checked: {lookup.detail}", source=lookup.origin))
            continue
        if lookup.status == "absent":
            checks.append(CitationCheck(**base, status="not_found", paper=None, reason=f"{citation.arxiv_id} is a plausible ID, but {lookup.detail}", source=lookup.origin))
            continue
        paper = lookup.paper
        assert paper is not None
        cocited = [found[i].paper for i in citation.cited_with if i in found and found[i].paper is not None]
        reading = wording.verdict(citation, paper, cocited, ask_live=judge is wording)
        if not reading.settled and judge is not wording:
            reading = judge.verdict(citation, paper, cocited)
        checks.append(CitationCheck(**base, status=reading.status, paper=_ref(paper), reason=reading.reason,
                                    suggested_id=reading.suggested_id, source=lookup.origin,
                                    identity_conflict=reading.identity_conflict))
    return checks


def with_model_fit(check: CitationCheck, fits: ModelFit, reason: str) -> CitationCheck:
    """The check once a model has answered whether its sentence describes its (resolved) paper.

    The model judges the content; code keeps what code checks: the ID's shape and existence, a
    given title / named authors / system name that are not this paper's (`identity_conflict`),
    and the stated year against the v1 date. So "undetermined" leaves the offline status, "no"
    makes a grounded citation `wrong_paper`, and "yes" makes a content-only `wrong_paper`
    `grounded` (or `year_mismatch` when the year is off). Both readings stay in the reason.
    """
    if check.status not in FIT_JUDGED or check.paper is None:
        return check
    if fits == "undetermined" or (fits == "yes" and check.identity_conflict):
        status = check.status
    elif fits == "no":
        status = "wrong_paper"
    else:
        status = "year_mismatch" if year_gap(check) >= YEAR_GAP else "grounded"
    if status == check.status and fits != "no":
        combined = f"{check.reason}; model: {fits}, {reason}"
    else:
        combined = f"model: {fits}, {reason}; offline check: {check.reason}"
    suggested = check.suggested_id if status == "wrong_paper" else None
    return check.model_copy(update={"status": status, "reason": combined, "suggested_id": suggested, "model_fit": fits})


def year_gap(check: CitationCheck) -> int:
    """Years between the stated year (or range) and the paper's v1 date; 0 when none is stated."""
    if check.stated_year is None or check.paper is None:
        return 0
    years = [int(y) for y in re.findall(r"\d{4}", check.stated_years or "")] or [check.stated_year]
    return _gap(min(years), max(years), check.paper.published.year)


def _gap(low: int, high: int, v1_year: int) -> int:
    return low - v1_year if low > v1_year else (v1_year - high if high < v1_year else 0)


def summarize(checks: list[CitationCheck]) -> dict[str, float | int]:
    """Counts per status (all statuses present) plus `coverage`: the share of citations with a checkable ID."""
    summary: dict[str, float | int] = {s: sum(c.status == s for c in checks) for s in CITATION_STATUSES}
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


# --- fit ------------------------------------------------------------------------------------------


@dataclass
class Fit:
    """How one paper fits one citation."""

    paper: Paper
    z: float  # content: similarity in background standard deviations, its best part's
    similarity: float
    z_whole: float = 0.0  # the same for the whole sentence: what a rival must beat
    authors: float | None = None  # share of named surnames among the paper's authors; None when none named
    authors_unknown: bool = False  # the paper's author list is truncated: a missing name proves nothing
    title: float | None = None  # similarity of the given title; None when none given
    terms_held: list[str] = field(default_factory=list)  # the sentence's names this paper mentions
    terms_missing: list[str] = field(default_factory=list)  # names it never mentions that are another paper's
    named_by: list[str] = field(default_factory=list)  # names that are this paper's own (its title's head)
    outnamed: bool = False  # a name it merely mentions is another paper's own name ("xLAM" in APIGen-MT's abstract)
    shared_words: list[str] = field(default_factory=list)  # specific words (rare in the background) the sentence and paper share

    @property
    def title_match(self) -> bool:
        return self.title is not None and self.title >= TITLE_MATCH

    @property
    def title_conflict(self) -> bool:
        return self.title is not None and self.title < TITLE_CONFLICT

    @property
    def author_conflict(self) -> bool:
        return self.authors == 0 and not self.authors_unknown

    @property
    def contradicted(self) -> bool:
        """The sentence's explicit evidence (title, authors, names) speaks against this paper."""
        return self.title_conflict or self.author_conflict or bool(self.terms_missing and not self.terms_held)

    @property
    def identity(self) -> bool:
        """Evidence that names this paper beyond topic: its title, or a system name only it carries."""
        return self.title_match or bool(self.named_by) or bool(self.terms_held and not self.outnamed)

    @property
    def score(self) -> float:
        """For ranking candidates: content plus the explicit evidence for and against."""
        return (
            self.z
            + 2.0 * bool(self.title_match) - 3.0 * bool(self.title_conflict)
            + 1.5 * (self.authors or 0.0) - 2.0 * bool(self.author_conflict)
            + 1.5 * bool(self.terms_held) - 1.5 * bool(self.terms_missing)
        )


@dataclass(frozen=True)
class _Reading:
    """One judge's verdict on a citation's fit."""

    status: CitationStatus
    reason: str
    suggested_id: str | None
    identity_conflict: bool  # the sentence's title, authors or names speak against the paper
    # Whether this verdict needs no second reading: the sentence names the paper (its title, a
    # system only it carries), or restates it clearly (content fit >= CONTENT_CLEAR_Z with a
    # shared specific word). A reading by wording alone cannot say that a sentence does NOT
    # describe a paper — a paraphrase shares few words — so such verdicts are read again by meaning.
    settled: bool


def fit_readings(source: PaperSource) -> dict[str, int]:
    """Fits read so far through `source`, per embedder (the wording's is "lexical")."""
    return {name: judge.readings for name, judge in source.grounding.items()}


def _lexical() -> Embedder:
    from tools.embeddings import get_embedder

    return get_embedder("lexical")


def _judge_for(source: PaperSource, embedder: Embedder | None) -> _Judge:
    """One judge per source and embedder, kept on the source: the background's vectors are
    computed once per run, not once per text."""
    from tools.embeddings import get_embedder

    embedder = embedder or get_embedder("auto")
    judges = source.grounding
    with _JUDGES_LOCK:
        if embedder.name not in judges:
            judges[embedder.name] = _Judge(source, embedder)
        return judges[embedder.name]


_JUDGES_LOCK = threading.Lock()


class _Judge:
    """Fit of a sentence to papers; holds the embedder, the source (for alternatives) and the
    background that calibrates content similarity."""

    def __init__(self, source: PaperSource, embedder: Embedder | None) -> None:
        self.source = source
        self._embedder = embedder
        self._lock = threading.RLock()  # the agent's worker threads share one source, so one judge
        self._background: list[Paper] | None = None
        self._background_matrix: tuple[np.ndarray, np.ndarray] | None = None  # passage vectors, each paper's first row
        self._last_sims: tuple[bytes, np.ndarray] | None = None
        self._passages: dict[str, np.ndarray] = {}
        self._by_id: dict[str, Paper] | None = None
        self._frequency: dict[str, int] | None = None
        self._spread: tuple[float, float] | None = None
        self._stem_df: dict[str, int] | None = None
        self._paper_stems: dict[str, set[str]] = {}
        self.readings = 0  # fits this judge has read (benchmarks/grounding_accuracy.py reports them)

    @property
    def embedder(self) -> Embedder:
        if self._embedder is None:
            from tools.embeddings import get_embedder

            self._embedder = get_embedder("auto")
        return self._embedder

    # --- the verdict ---------------------------------------------------------------------------

    def verdict(self, citation: Citation, paper: Paper, cocited: list[Paper] = (), *, ask_live: bool = True) -> _Reading:
        """`cocited`: papers cited jointly for the same description ("(arXiv:A; arXiv:B)"): the
        sentence may restate either, so another paper must beat the best of them to be the one meant.

        Without `ask_live` (a first reading another judge may repeat), a verdict that would need the
        live source's candidates is left unsettled rather than asking, so the live search is made
        once, by the reading that decides."""
        self.readings += 1
        notes = []
        if citation.version and paper.versions is not None and citation.version > paper.versions:
            notes.append(f"the source lists {paper.versions} version(s) and the citation names v{citation.version}; the paper exists, so the version is a slip, not a fabrication")
        query = self._query(citation)
        exclude = {paper.id, *citation.cited_with}
        candidates = self._candidates(citation, query, exclude)
        cocited = [p for p in cocited if p.id != paper.id]
        citation = self._resolve_guesses(citation, paper, candidates)
        cited, fits, content = self._assess(citation, paper, cocited + candidates)
        needs_live = (cited.contradicted or (content and not self._content_fits(cited))) and not any(self._described(f) for f in fits)
        if needs_live and ask_live:
            # Nothing at hand is what the sentence describes: ask the live source what it may mean.
            held = {f.paper.id for f in fits} | exclude
            extra = [p for p in self.source.candidates(query, citation.authors_named, live=True) if p.id not in held]
            if extra:
                cited, fits, content = self._assess(citation, paper, cocited + candidates + extra)
        partners, fits = fits[: len(cocited)], fits[len(cocited) :]
        status, reason, suggested = self._fit_verdict(citation, paper, cited, fits, content, partners)
        if status != "grounded":
            return _Reading(status, reason, suggested, cited.contradicted, settled=False)
        settled = not (needs_live and not ask_live) and (
            cited.identity or (cited.z_whole >= CONTENT_CLEAR_Z and bool(cited.shared_words)))
        return _Reading(*self._year_verdict(citation, paper, cited, reason, notes), False, settled=settled)

    def _resolve_guesses(self, citation: Citation, paper: Paper, candidates: list[Paper]) -> Citation:
        """A lone word before a year ("Peterson (2024)") is an author when someone at hand has that
        surname (this paper's authors, or another paper's); otherwise it is a system's name."""
        if not citation.author_guesses:
            return citation
        surnames = {fold(a).split()[-1] for p in [paper, *candidates, *self.background()] for a in p.authors if a.split()}
        names = [g for g in citation.author_guesses if fold(g) in surnames and g not in citation.authors_named]
        if not names:
            return citation
        return citation.model_copy(update={"authors_named": [*citation.authors_named, *names]})

    def _fit_verdict(
        self, citation: Citation, paper: Paper, cited: Fit, fits: list[Fit], content: bool, partners: list[Fit]
    ) -> tuple[CitationStatus, str, str | None]:
        it = f"{paper.id} is {paper.title!r}"
        best = max(fits, key=lambda f: f.score, default=None)
        if cited.title_conflict:
            meant = next((f for f in sorted(fits, key=lambda f: -(f.title or 0)) if f.title_match and not f.author_conflict), None)
            meant = meant or (best if best is not None and self._described(best) and best.score > cited.score else None)
            return "wrong_paper", f"{it}, but the title given, {citation.claimed_title!r}, is not its title{self._pointer(meant)}", _id(meant)
        if cited.author_conflict:
            meant = best if best is not None and best.score > cited.score and not best.contradicted and (best.authors or 0) > 0 else None
            names = ", ".join(citation.authors_named)
            return "wrong_paper", f"{it}, but the sentence attributes it to {names}, none of whom is among its authors{self._pointer(meant)}", _id(meant)
        if cited.terms_missing and not cited.terms_held:
            # the paper the name names (in its title), else one that mentions it
            named = sorted((f for f in fits if f.terms_held and not f.contradicted), key=lambda f: (not any(_names_paper(t, f.paper) for t in f.terms_held), -f.score))
            meant = named[0] if named else None
            return "wrong_paper", f"{it}, but the sentence names {', '.join(cited.terms_missing)}, which it never mentions{self._pointer(meant)}", _id(meant)
        if cited.outnamed:
            # the sentence's names are another paper's own, which it restates at least as well
            owners = [f for f in fits if set(f.named_by) & set(cited.terms_held) and not f.contradicted and f.z_whole >= cited.z_whole]
            if owners:
                owner = max(owners, key=lambda f: f.score)
                return "wrong_paper", f"{it}; it mentions {', '.join(owner.named_by)}, but that is {owner.paper.id} ({owner.paper.title!r}, {owner.paper.year}), which the sentence describes", owner.paper.id
        if content:
            # jointly cited papers explain the sentence together: a rival must beat the best of them
            # (whole-sentence fits: a paper matching one generic clause is not the paper meant)
            reference = max([cited, *partners], key=lambda f: f.z_whole)
            rivals = [f for f in fits if not f.contradicted and f.z_whole - reference.z_whole >= self._margin(reference, f)]
            rival = max(rivals, key=lambda f: f.score, default=None)
            if rival is not None and self._described(rival) and not (cited.title_match and not rival.title_match):
                return "wrong_paper", f"{it}, but the sentence restates {rival.paper.id} ({rival.paper.title!r}, {rival.paper.year}) far better{self._shared_authors(cited, rival)}", rival.paper.id
            if not self._content_fits(cited) and not cited.identity:
                meant = best if best is not None and self._described(best) and not best.contradicted else None
                shared = ", sharing no specific word with it" if cited.z >= CONTENT_MIN_Z else ""
                return "wrong_paper", f"{it}, which the sentence does not describe (content fit {cited.z:.1f} sd above unrelated papers{shared}){self._pointer(meant)}", _id(meant)
        evidence = [
            text for held, text in (
                (cited.title_match, "title"),
                ((cited.authors or 0) > 0, "named authors"),
                (bool(cited.terms_held) and not cited.outnamed, f"named system ({', '.join(cited.terms_held)})"),
                (content and self._content_fits(cited), f"content (fit {cited.z:.1f} sd above unrelated papers)"),
            ) if held
        ]
        if not evidence:
            return "grounded", f"{it}; the sentence says nothing more about it to check", None
        return "grounded", f"{it}, matching the sentence's {', '.join(evidence)}", None

    def _margin(self, cited: Fit, rival: Fit) -> float:
        """How much better another paper must fit to be the one meant: more when the cited paper
        is itself clearly described, or carries a name or title the rival lacks."""
        same_group = (cited.authors or 0) > 0 and (rival.authors or 0) > 0  # the named authors wrote both
        if same_group and not cited.identity:
            # the authors say nothing between two papers of one group: the content decides, plainly
            return BETTER_BY_Z
        margin = BETTER_BY_Z * (1 + min(max(cited.z_whole / CONTENT_CLEAR_Z, 0.0), 1.0))
        if cited.identity and not rival.identity:
            margin *= 2
        return margin

    def _content_fits(self, fit: Fit) -> bool:
        """A positive content fit: clearly above unrelated papers, and either sharing a specific
        word with the paper or close enough in meaning to need none."""
        return fit.z >= CONTENT_MIN_Z and (bool(fit.shared_words) or fit.z >= CONTENT_CLEAR_Z)

    def _described(self, fit: Fit) -> bool:
        """The sentence clearly describes this paper: a matching title, or clear content."""
        return not fit.contradicted and (fit.title_match or fit.z_whole >= CONTENT_CLEAR_Z or (fit.identity and fit.z >= CONTENT_MIN_Z))

    def _pointer(self, fit: Fit | None) -> str:
        if fit is None:
            return ""
        return f"; the sentence fits {fit.paper.id} ({fit.paper.title!r}, {fit.paper.year})"

    def _shared_authors(self, cited: Fit, rival: Fit) -> str:
        common = {fold(a) for a in cited.paper.authors} & {fold(a) for a in rival.paper.authors}
        return " (both share authors; the content decides)" if common else ""

    def _year_verdict(self, citation: Citation, paper: Paper, cited: Fit, reason: str, notes: list[str]) -> tuple[CitationStatus, str, str | None]:
        span = citation.year_span
        v1 = paper.published
        month = f"{v1:%Y-%m}" if paper.date_precision == "month" else v1.isoformat()
        if span is not None:
            low, high = span
            gap = _gap(low, high, v1.year)
            if gap >= YEAR_GAP:
                when = "before" if high < v1.year else "after"
                stated = citation.stated_years or str(citation.stated_year)
                return "year_mismatch", f"{paper.id} ({paper.title!r}) was first submitted {month}; the sentence dates it {stated}, {gap} years {when}", None
            if high < v1.year:
                notes.append(f"the sentence dates it {citation.stated_years or citation.stated_year}, before its first version ({month}), within the {YEAR_GAP}-year tolerance")
        return "grounded", reason + "".join(f"; note: {n}" for n in notes), None

    # --- evidence ------------------------------------------------------------------------------

    def _query(self, citation: Citation) -> str:
        return " ".join([citation.claimed_title or "", *citation.named_terms, citation.description])

    def _sentence(self, citation: Citation) -> tuple[str, list[str], np.ndarray]:
        text = _content_text(citation)
        parts = _parts(text, citation)
        return text, parts, self.embedder.encode(parts)

    def _candidates(self, citation: Citation, query: str, exclude: set[str]) -> list[Paper]:
        """Papers the sentence may describe: the background papers it fits best, those carrying its
        names or a title like the one it gives, and what the source finds for its words and authors."""
        _, _, vectors = self._sentence(citation)
        papers = self.background()
        found: dict[str, Paper] = {}
        if papers:
            per_paper = self._background_sims(vectors)
            mean, spread = self._calibration(vectors, exclude)
            zs = ((per_paper - mean) / spread).max(axis=1)
            for index in np.argsort(-zs)[:CANDIDATES]:
                found[papers[index].id] = papers[index]
        names = [*citation.named_terms, *citation.shared_terms]
        for paper in papers:
            if names and any(_term_in(t, fold(paper.title)) or (_coined(t) and _term_in(t, fold(paper.text()))) for t in names):
                found.setdefault(paper.id, paper)
            elif citation.claimed_title and _title_similarity(citation.claimed_title, paper.title) >= TITLE_CONFLICT:
                found.setdefault(paper.id, paper)
        for paper in self.source.candidates(query, citation.authors_named):
            found.setdefault(paper.id, paper)
        return [p for p in found.values() if p.id not in exclude]

    def _assess(self, citation: Citation, paper: Paper, candidates: list[Paper]) -> tuple[Fit, list[Fit], bool]:
        """Fits of the cited paper and every candidate; whether the sentence has content to judge.

        Content is judged per part of the sentence (the whole, and each clause or parenthesis with
        enough words), each part against its own background: a claim that mixes a paper's finding
        with talk about the field ("... as synthetic data crowds out rare patterns") is judged on the
        part that says what the paper found. A paper's fit is its best part's.
        """
        text, parts, vectors = self._sentence(citation)
        content = len(_content_words(text, citation)) >= CONTENT_WORDS
        mean, spread = self._calibration(vectors, exclude={paper.id, *citation.cited_with})
        papers = [paper, *candidates]
        self._encode_papers(papers)
        universe = list({p.id: p for p in [*self.background(), *papers]}.values())  # what a name may name
        terms = self._distinctive_terms(citation.named_terms, universe)
        shared = self._distinctive_terms(citation.shared_terms, universe)
        owners = {t: {p.id for p in universe if _names_paper(t, p)} for t in terms}
        specific = self._specific_stems(text, citation)
        fits = []
        for candidate in papers:
            similarities = np.max(self._paper_vectors(candidate) @ vectors.T, axis=0)
            zs = (similarities - mean) / spread
            best = int(np.argmax(zs))
            fit = Fit(paper=candidate, z=float(zs[best]), similarity=float(similarities[best]), z_whole=float(zs[0]))
            if citation.authors_named:
                fit.authors = _author_share(citation.authors_named, candidate.authors)
                fit.authors_unknown = candidate.authors_truncated
            if citation.claimed_title:
                fit.title = _title_similarity(citation.claimed_title, candidate.title)
            haystack = self._haystack(candidate)
            fit.shared_words = sorted(specific & self._stems(candidate))
            fit.terms_held = [t for t in terms + shared if _term_in(t, haystack)]
            fit.named_by = [t for t in fit.terms_held if _names_paper(t, candidate)]
            # a name counts against a paper only when it is what another paper is called (its
            # title's head): "MBPP" or "FID" name benchmarks many papers use, "ToolFlow" a paper
            fit.terms_missing = [t for t in terms if not _term_in(t, haystack) and owners[t] - {candidate.id}]
            fits.append(fit)
        for fit in fits:
            fit.outnamed = bool(fit.terms_held) and not fit.named_by and any(
                set(other.named_by) & set(fit.terms_held) for other in fits if other is not fit
            )
        cited, *others = fits
        return cited, others, content

    def _paper_vectors(self, paper: Paper) -> np.ndarray:
        self._encode_papers([paper])
        return self._passages[_paper_key(paper)]

    def _encode_papers(self, papers: list[Paper]) -> None:
        """Passage vectors for every paper not yet encoded, in one batch (the embedder caches by text)."""
        with self._lock:
            self._encode_new(papers)

    def _encode_new(self, papers: list[Paper]) -> None:
        todo: dict[str, list[str]] = {}
        for paper in papers:
            key = _paper_key(paper)
            if key in self._passages or key in todo:
                continue
            todo[key] = _passages(paper, self._findings(paper))  # a live record: its abstract plus what our snapshot knows
        if not todo:
            return
        vectors = self.embedder.encode([text for texts in todo.values() for text in texts])
        start = 0
        for key, texts in todo.items():
            self._passages[key] = vectors[start : start + len(texts)]
            start += len(texts)

    def _background_by_id(self) -> dict[str, Paper]:
        if self._by_id is None:
            self._by_id = {p.id: p for p in self.background()}
        return self._by_id

    def background(self) -> list[Paper]:
        if self._background is None:
            self._background = self.source.background(BACKGROUND_SIZE)
        return self._background

    def _background_sims(self, vectors: np.ndarray) -> np.ndarray:
        """(background papers, sentence parts): each paper's best passage similarity to each part."""
        key = vectors.tobytes()
        if (hit := self._last_sims) is not None and hit[0] == key:
            return hit[1]
        papers = self.background()
        with self._lock:
            if self._background_matrix is None:
                self._encode_papers(papers)
                blocks = [self._paper_vectors(p) for p in papers]
                starts = np.cumsum([0] + [len(b) for b in blocks[:-1]])
                self._background_matrix = (np.concatenate(blocks), starts)
        matrix, starts = self._background_matrix
        per_paper = np.maximum.reduceat(matrix @ vectors.T, starts, axis=0)  # passages are stored paper by paper
        self._last_sims = (key, per_paper)
        return per_paper

    def _calibration(self, vectors: np.ndarray, exclude: set[str]) -> tuple[np.ndarray, np.ndarray]:
        """Per sentence part: mean and spread of its similarity to background papers (not the cited ones)."""
        papers = self.background()
        if len(papers) < 10:
            return np.zeros(len(vectors)), np.full(len(vectors), 0.1)  # nothing to calibrate against: cosine in tenths
        per_paper = self._background_sims(vectors)
        keep = np.array([p.id not in exclude for p in papers])
        sims = per_paper[keep]
        # A sentence about nothing in the background has a low, tight similarity to all of it, and
        # one shared word would stand out by many "standard deviations": the level and the spread
        # are at least a typical on-topic sentence's, so a fit means the same similarity for any
        # sentence (a claim from another field cited with one of our papers is not "relatively" close).
        level, spread = self._typical()
        return np.maximum(sims.mean(axis=0), level), np.maximum(sims.std(axis=0), spread)

    def _typical(self) -> tuple[float, float]:
        """The median level and spread of similarity to the background for sentence-length texts
        about the background's own topics (its titles): the embedder's scale, measured, not assumed."""
        with self._lock:
            if self._spread is None:
                papers = self.background()
                probes = papers[:: max(1, len(papers) // 60)]
                per_paper = self._background_sims(self.embedder.encode([p.title for p in probes]))
                index = {p.id: i for i, p in enumerate(papers)}
                levels, spreads = [], []
                for column, probe in enumerate(probes):
                    others = np.delete(per_paper[:, column], index[probe.id])
                    levels.append(float(others.mean()))
                    spreads.append(float(others.std()))
                self._spread = (float(np.median(levels)), max(float(np.median(spreads)), 1e-3))
            return self._spread

    def _distinctive_terms(self, named: list[str], papers: list[Paper]) -> list[str]:
        """The names that single out a paper: present in at least one title at hand, in few of
        them, and holding a word that is rare in the background ('LLM-generated' names no paper;
        'ToolFlow' does)."""
        titles = [fold(p.title) for p in papers]
        frequency = self._word_frequency()
        rare = max(3, int(RARE_WORD_SHARE * len(self.background())))
        terms = []
        for term in named:
            holders = sum(_term_in(term, t) for t in titles)
            if not holders and _coined(term):
                holders = sum(_term_in(term, self._haystack(p)) for p in papers)  # "SynthLLM", named in an abstract
            if 1 <= holders <= RARE_TERM_PAPERS and any(frequency.get(w, 0) <= rare for w in _words(term)):
                terms.append(term)
        return terms

    def _specific_stems(self, text: str, citation: Citation) -> set[str]:
        """Stems of the sentence's content words that few background papers use ('federated',
        'sparsity'; not 'data', 'model', 'training')."""
        frequency = self._stem_frequency()
        limit = SPECIFIC_SHARE * max(1, len(self.background()))
        return {w for w in (_lexical_stem(w) for w in _content_words(text, citation) if len(w) > 3) if frequency.get(w, 0) <= limit}

    def _findings(self, paper: Paper) -> list[str]:
        """The paper's findings, or, for a live record of a paper our snapshot holds, the snapshot's."""
        if paper.findings or paper.source == "snapshot":
            return paper.findings
        held = self._background_by_id().get(paper.id)
        return held.findings if held is not None else []

    def _haystack(self, paper: Paper) -> str:
        return fold(" ".join([paper.title, paper.summary, *self._findings(paper)]))

    def _stems(self, paper: Paper) -> set[str]:
        key = _paper_key(paper)
        if key not in self._paper_stems:
            findings = self._findings(paper)
            self._paper_stems[key] = {_lexical_stem(w) for w in _words(" ".join([paper.title, paper.summary, *findings])) if len(w) > 3}
        return self._paper_stems[key]

    def _stem_frequency(self) -> dict[str, int]:
        with self._lock:
            if self._stem_df is None:
                counts: dict[str, int] = {}
                for paper in self.background():
                    for stem in self._stems(paper):
                        counts[stem] = counts.get(stem, 0) + 1
                self._stem_df = counts
            return self._stem_df

    def _word_frequency(self) -> dict[str, int]:
        with self._lock:
            return self._count_words()

    def _count_words(self) -> dict[str, int]:
        if self._frequency is None:
            counts: dict[str, int] = {}
            for paper in self.background():
                for word in set(_words(f"{paper.title} {paper.summary}")):
                    counts[word] = counts.get(word, 0) + 1
            self._frequency = counts
        return self._frequency


def _coined(term: str) -> bool:
    """A coined name: capitals inside the word or a digit (SynthLLM, xLAM, SIMS, phi-1), not a word."""
    letters = [c for c in term if c.isalpha()]
    return len(letters) >= 3 and (any(c.isupper() for c in term[1:]) or any(c.isdigit() for c in term))


def _paper_key(paper: Paper) -> str:
    return f"{paper.id}|{paper.source}|{len(paper.summary)}|{len(paper.findings)}"


def _names_paper(term: str, paper: Paper) -> bool:
    """`term` is the paper's name: it stands in the title's head (before a colon), or the title is
    short enough to be a name ("Strong Model Collapse", "Phi-4 Technical Report")."""
    head = paper.title.split(":")[0] if ":" in paper.title else paper.title
    if ":" not in paper.title and len(_words(head)) > 4:
        return False
    return _term_in(term, fold(head))


def _id(fit: Fit | None) -> str | None:
    return fit.paper.id if fit is not None else None


def _passages(paper: Paper, findings: list[str]) -> list[str]:
    """What a sentence may restate: title + summary, the title, each summary sentence, each finding."""
    sentences = [s for s in re.split(r"(?<=[.;!?])\s+", paper.summary) if len(s.split()) >= 4]
    return [f"{paper.title}. {paper.summary}", paper.title, *sentences, *findings]


def _parts(text: str, citation: Citation) -> list[str]:
    """The whole text, and its clauses and parentheses that carry enough content words on their own."""
    pieces = re.split(r"[;:()\[\]—–]|,\s+(?=(?:while|whereas|but|and|as|so|even|which|because|although)\b)|\s(?:while|whereas)\s", text)
    parts = [text]
    for piece in pieces:
        piece = piece.strip(" ,.")
        if piece != text and len(_content_words(piece, citation)) >= PART_WORDS and piece not in parts:
            parts.append(piece)
    return parts


def _content_text(citation: Citation) -> str:
    """What the writer says about the paper, without the names of its authors."""
    text = citation.description
    for name in [*citation.authors_named, *citation.shared_authors]:
        text = re.sub(rf"\b{re.escape(name)}\b", " ", text)
    text = re.sub(r"\bet\s+al\.?|\b(?:19|20)\d\d\b", " ", text)
    return " ".join(text.split()) or citation.description


def _lexical_stem(word: str) -> str:
    from tools.embeddings import _stem

    return _stem(word)


def _content_words(text: str, citation: Citation) -> list[str]:
    names = {fold(n) for n in citation.authors_named}
    return [w for w in _words(text) if len(w) > 2 and w not in _STOP_WORDS and w not in names and not w.isdigit()]


def _author_share(named: list[str], authors: list[str]) -> float:
    words = {w for author in authors for w in re.split(r"[\s]+", fold(author)) if w}
    return sum(fold(name) in words for name in named) / len(named)


@lru_cache(maxsize=65_536)
def _title_similarity(claimed: str, title: str) -> float:
    """Word overlap (Jaccard, small words dropped, plural s folded) of a given title with the
    paper's title or with a leading part of it (the short form people cite: the words before a
    colon, question mark or dash). 1.0 for the same words in any case or punctuation."""
    a = _title_words(claimed)
    if not a:
        return 0.0
    leading = [w for w in _words(claimed) if w not in _TITLE_SMALL_WORDS]
    words = [w for w in _words(title) if w not in _TITLE_SMALL_WORDS]
    if len(leading) >= 3 and [_stem(w) for w in words[: len(leading)]] == [_stem(w) for w in leading]:
        return 0.9  # the title's opening words, cut short
    forms = [title] + [m.group(1) for m in re.finditer(r"^(.+?)[:?!—–]", title)]
    best = 0.0
    for form in forms:
        b = _title_words(form)
        if a == b:
            return 1.0
        if len(b) >= 2 or form == title:
            best = max(best, len(a & b) / len(a | b) if a | b else 0.0)
    return best


def _title_words(text: str) -> set[str]:
    return {_stem(w) for w in _words(text) if w not in _TITLE_SMALL_WORDS}


def _stem(word: str) -> str:
    return word[:-1] if len(word) > 3 and word.endswith("s") and not word.endswith("ss") else word


def _words(text: str) -> list[str]:
    return re.findall(r"[^\W_]+", fold(text))


@lru_cache(maxsize=65_536)
def _term_in(term: str, folded_text: str) -> bool:
    words = _words(term)
    return bool(words) and all(re.search(rf"(?<![^\W_]){re.escape(w)}", folded_text) for w in words)

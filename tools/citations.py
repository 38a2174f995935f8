"""Find citations in text, Markdown and BibTeX, and say what the writer claims about each.

Every citation keeps where it was written (line, sentence) and what the writer claimed about it
(stated year or year range, author surnames, a quoted / italic / BibTeX / link title, named terms,
and a description), so grounding can compare the claim with the paper the identifier resolves to.
Identifier rules (shapes, written forms, validity) live in tools.arxiv_id.

A sentence citing several papers is split into what belongs to each: the clause a citation closes
or opens is its description; author names, years, titles and system names go to the citation they
sit next to (inside its bracket part, else the nearest in its clause, preferring the citation that
follows the name, as writers name a thing and then cite it). What two citations share — one
bracket "(arXiv:A; arXiv:B)" after one clause — is `shared_*`: it may support either paper but never
counts against one of them.
"""

from __future__ import annotations

import re
import unicodedata
from bisect import bisect_left
from dataclasses import dataclass, field
from functools import lru_cache

from pydantic import BaseModel

from tools.arxiv_id import Mention, find_mentions, mask, parse

_YEAR = re.compile(r"(?<![\w.])(19[5-9]\d|20[0-4]\d)(?:\s*+[–—-]\s*+(19[5-9]\d|20[0-4]\d))?(?![\w])")
# Atomic up to the first year: when no ')' closes the bracket, trying each later year in it again
# would rescan the same tail (quadratic in a bracket full of years).
_PAREN_YEAR = re.compile(r"\(((?>[^()]*?(?<![\w.])(?:19[5-9]\d|20[0-4]\d)(?![\w.]))[^()]*+)\)")
# Every text pattern here must stay linear in its input (a draft may hold a megabyte-long line):
# - a name is at most 41 characters, starts only where a run of letters starts (`_NAME_START`) and
#   is not given back once read (what follows a name never starts with a name's character); an
#   unbounded `[\w'’-]+` tried from every position of a no-space run made one 16 KB line cost
#   minutes, 1 MB days;
# - a list of names is bounded (`_NAMES_MAX` after the first), so a long comma-separated list is not
#   rescanned from each of its names;
# - `\s*` / `\s+` are possessive (`*+`, `++`) where what follows cannot start with a space, so a
#   long run of whitespace is not split every possible way between two of them.
# On ordinary text the matches are the same as with unbounded patterns.
_NAME = r"(?:[^\W\d_][\w'’-]{1,40}+)"
# ... except before "and" in a lead ("Smith and Jones, arXiv ..."), which may follow a name directly.
_LEAD_NAME = r"(?:[^\W\d_][\w'’-]{1,40})"
_NAME_START = r"(?<![^\W\d_])"
_NAMES_MAX = 15
_AUTHOR_YEAR = re.compile(
    rf"{_NAME_START}(?P<names>{_NAME}(?:\s++{_NAME})?(?:(?:\s*+,\s*+|\s*+&\s*+|\s++and\s++|,\s++and\s++){_NAME}){{0,{_NAMES_MAX}}})"
    rf"(?P<etal>\s++et\s++al\.?)?\s*+(?:\(|,)\s*+(?:19[5-9]\d|20[0-4]\d)"
)
_YEARISH = re.compile(r"19[5-9]\d|20[0-4]\d")  # what `_AUTHOR_YEAR` must find somewhere
_AUTHORS_ET_AL = re.compile(rf"{_NAME_START}(?P<names>{_NAME}(?:\s++{_NAME})?)(?P<etal>\s++et\s++al\b)")
# "Pasarkar & Dieng, arXiv preprint ...", "Bakshi and Chakraborty, “Title” ...": a reference that opens with its authors.
_AUTHORS_LEAD = re.compile(
    rf"^\s*+(?P<names>{_LEAD_NAME}(?:\s*+,\s*+{_LEAD_NAME})*(?:\s*+,?\s*+(?:&|and)\s++{_LEAD_NAME}))(?P<etal>)"
    r"(?=\s*+[,.]\s*+(?:arxiv|preprint|[\"“*_]|\(?(?:19|20)\d\d))",
    re.IGNORECASE,
)
# APA references: "Shumailov, I., Shumaylov, Z., & Anderson, R. (2023). The curse of recursion: ... arXiv ..."
# A surname is at most six words (van der Schaar) of at most 41 characters each.
_APA_SURNAME = r"[^\W\d_][\w'’-]{1,40}(?:\s[^\W\d_][\w'’-]{1,40}){0,5}"
_APA = re.compile(
    rf"^\s*(?P<authors>(?:{_APA_SURNAME},\s(?:[A-Z]\.(?:\s?-?[A-Z]\.)*)(?:,\s|,?\s&\s|\s)?)+(?:…\s*|\.\.\.\s*)?(?:{_APA_SURNAME},\s(?:[A-Z]\.\s?)+)?(?:et al\.\s*)?)"
    r"\((?P<year>(?:19|20)\d\d)[a-z]?\)\.\s+(?P<title>.+?[.?!])(?=\s|$)"
)
_APA_AUTHOR = re.compile(rf"{_NAME_START}({_APA_SURNAME}),\s[A-Z]\.")
_AUTHORS_COLLEAGUES = re.compile(rf"{_NAME_START}(?P<names>{_NAME}(?:\s++{_NAME})?)(?P<etal>\s++and\s++(?:colleagues|coauthors|co-authors)\b)")
# A quotation or link text never holds its own opening mark, so an opening mark with no closing one
# after it fails at the next opening mark instead of scanning to the end of the text (quadratic in a
# line of many “). Titles with nested “ ” use ‘ ’ inside, which stays allowed.
_QUOTED = re.compile(r"“([^“”]{3,})”|\"([^\"]{3,})\"|‘([^‘’]{3,})’|(?<![\w])'([^']{3,}?)'(?![\w])")
# Italics (the convention for titles); bold marks headings and lead-ins, not titles.
_EMPHASIS = re.compile(r"(?<![*\w])\*([^*\s][^*]{4,}?)\*(?![*\w])|(?<![_\w])_([^_\s][^_]{4,}?)_(?![_\w])")
_LINK = re.compile(r"\[(?P<text>[^\[\]]{3,})\]\((?P<url>[^)\s]++)\)")
_TITLE_CUE = re.compile(r"(?:\btitled|\bentitled|\bpaper|\bin|\bwork|\bstudy|\bpreprint|\bthe)\s*+[:,]?\s*+$", re.IGNORECASE)
# The longest cue ("entitled") with room for ": " before a quotation; `_TITLE_CUE` is only tried on
# that much text before it, not on everything before it.
_TITLE_CUE_REACH = 16
_NOT_NAMES = frozenset(
    "a an the in on of and see also cf e.g i.e nature science arxiv preprint proc proceedings journal conference "
    "january february march april may june july august september october november december ieee acm".split()
)
_TITLE_SMALL_WORDS = frozenset("a an and as at by for from in into is of on or the to via vs with without".split())
_SENTENCE_END = re.compile(r"(?<=[.!?])[\"'”’)*_]*\s+(?=[A-Z“\"'(\[•–—*_-])")
_NO_SPLIT_BEFORE = re.compile(r"(?:\bet al|\be\.g|\bi\.e|\bvs|\bcf|\bFig|\bEq|\bSec|\bNo|\bapprox|\b[A-Z])\.[\"'”’)]*$")
_CLAUSE_BREAK = re.compile(
    r";|,\s+(?:while|whereas|whilst|but|and|although|though|yet|which|where|in contrast to|unlike)\b"
    r"|\s(?:while|whereas|whilst)\s|\s[—–]\s|,\s+(?=[A-Z][\w-]+\s+et\s+al)"
)
_NO_SPLIT_REACH = 12  # len("approx.") and the character before it, with room to spare
# The longest sentence `_sentence_citations` reads in one piece (see `_bounded`); written sentences
# in the gold and generated cases stay under 350 characters.
MAX_SENTENCE = 2_000
_NOT_NEWLINE = re.compile(r"[^\n]")
# What every citation needs somewhere in its line: a digit (an ID, a year), or "arXiv" / "CoRR"
# before a broken token (tools.arxiv_id's written forms).
_MAY_CITE = re.compile(r"\d|arxiv|corr", re.IGNORECASE)
# Whitespace runs are entered only at their start (a run not followed by "|" is then given up in one
# step, not retried from each of its characters).
_TABLE_CELL = re.compile(r"(?:(?<!\s)\s++)?\|\s*+")
# A key holds no brace, so a header attempt stops at the next brace (not at the end of the text)
# and the entry's own "{" is the one its closing brace answers.
_BIB_ENTRY = re.compile(r"@(?P<kind>\w++)\s*+\{\s*+(?P<key>[^,\s{}]*+)\s*+,", re.IGNORECASE)
_MARKUP = re.compile(r"^\s*(?:#{1,6}\s+|>\s*|[-*+•–—]\s+|\d+[.)]\s+|\|\s*)+")


class Citation(BaseModel):
    """One citation as written: an arXiv identifier, or a dated claim / author-year citation without one."""

    line: int
    as_written: str
    arxiv_id: str | None  # canonical when the shape parses, else the identifier as written; None for no_id
    version: int | None = None
    context: str  # the sentence (or BibTeX entry) that carries it
    description: str  # what the writer says about this paper: its clause minus citation markup, or a label
    stated_year: int | None = None
    stated_years: str | None = None  # a stated range as written, e.g. "2024–2025"
    authors_named: list[str] = []  # surnames the writer attributes this work to
    author_guesses: list[str] = []  # a lone capitalised word before a year ("Peterson (2024)"): an author, or a system's name
    claimed_title: str | None = None  # a quoted, italic, link-text or BibTeX title given for this paper
    title_source: str | None = None  # "quoted", "emphasis", "link", "bibtex"
    named_terms: list[str] = []  # system names and short quoted phrases next to this citation
    shared_terms: list[str] = []  # names next to a group of citations: support for any of them, never against
    shared_authors: list[str] = []
    cited_with: list[str] = []  # other IDs cited for the same description (joint citations)

    @property
    def year_span(self) -> tuple[int, int] | None:
        if self.stated_year is None:
            return None
        years = [int(y) for y in re.findall(r"\d{4}", self.stated_years or "")] or [self.stated_year]
        return min(years), max(years)


def extract_citations(text: str) -> list[Citation]:
    """Every citation in `text`: BibTeX entries, or sentences of prose / Markdown.

    Each arXiv identifier in a sentence is one citation (repeats of the same ID in a sentence, e.g. a
    Markdown link's text and target, count once); a sentence with a dated parenthesis or an
    author-year citation but no identifier is one `no_id` citation.
    """
    citations, spans = _extract_bibtex(text)
    # Prose around BibTeX entries (a draft with a bibliography pasted in) is read too; blanking the
    # entries keeps every line number where it was.
    # (One pass over the spans, which never overlap: re-joining the whole text once per entry was
    # quadratic in a long bibliography.)
    if spans:
        pieces, at = [], 0
        for start, end in spans:
            pieces += [text[at:start], _NOT_NEWLINE.sub(" ", text[start:end])]
            at = end
        text = "".join([*pieces, text[at:]])
    for line_number, line in enumerate(text.splitlines(), start=1):
        if not _MAY_CITE.search(line):
            continue  # no digit, no "arXiv", no "CoRR": no identifier and no year, so no citation
        table_row = line.lstrip().startswith("|")
        body = _MARKUP.sub("", line)
        if table_row:
            body = _TABLE_CELL.sub(" ; ", body).strip(" ;")
        for sentence in [body] if _APA.match(body) else split_sentences(body):
            for piece in _bounded(sentence):
                citations.extend(_sentence_citations(piece, line_number, citing=table_row))
    return sorted(citations, key=lambda c: c.line)


def split_sentences(text: str) -> list[str]:
    """Split a line into sentences without breaking at 'et al.', 'e.g.' or initials, nor inside an
    open bracket, quotation or emphasis."""
    sentences, start = [], 0
    spans: _OpenSpans | None = None  # built at the first stop: most lines have none
    for match in _SENTENCE_END.finditer(text):
        end = match.start()
        # Only the last few characters can hold "et al." / "e.g." / an initial before the stop.
        if _NO_SPLIT_BEFORE.search(text, max(start, end - _NO_SPLIT_REACH), end):
            continue
        spans = spans or _OpenSpans(text)
        if spans.open_between(start, end):
            continue
        sentences.append(text[start:end].strip())
        start = match.end()
    sentences.append(text[start:].strip())
    return [s for s in sentences if s]


class _OpenSpans:
    """Whether a bracket, quotation or emphasis opened in text[start:end] is still open at its end: a
    title such as *Collapse or Thrive? Perils and ...*, "Is Model Collapse Inevitable? ..." or
    ‘Is Model Collapse Inevitable? ...’ goes on past its "?".

    The marks' positions in the line are found once and each question is answered by bisection, so
    a line with many stops is not recounted from its start at each (quadratic). `split_sentences`
    asks only about text[start:end] that begins after a space (or at 0) and ends at a stop, where a
    mark reads the same in the line as in the slice.
    """

    _PLAIN = frozenset("()[]“”\"‘")
    _NAMES = ("(", ")", "[", "]", "“", "”", '"', "‘", "*", "_", "’", "'open", "'close")

    def __init__(self, text: str) -> None:
        """One pass over the line's mark characters. Emphasis marks count where they can open or
        close (a `*` or `_` not inside a word or a run of them: not after a word character and
        before a non-space, or after a non-space and not before a word character);
        ‘ always opens; ’ or ' closes after a non-space when no letter follows (an apostrophe, as in
        don’t, sits between letters); ' opens before a non-space after no letter."""
        self._at: dict[str, list[int]] = {name: [] for name in self._NAMES}
        for mark in _MARK_CHAR.finditer(text):
            at, char = mark.start(), mark.group()
            if char in self._PLAIN:
                self._at[char].append(at)
                continue
            before = text[at - 1] if at else ""
            after = text[at + 1] if at + 1 < len(text) else ""
            after_text = bool(before) and not before.isspace()  # (?<=\S)
            before_text = bool(after) and not after.isspace()  # (?=\S)
            after_word = bool(before) and (before.isalnum() or before == "_")  # (?<=\w); \w is exactly this
            before_word = bool(after) and (after.isalnum() or after == "_")
            if char == "*":
                opens = not (before == "*" or after_word) and before_text
                closes = after_text and not (after == "*" or before_word)
                if opens or closes:
                    self._at["*"].append(at)
            elif char == "_":
                if (not after_word and before_text) or (after_text and not before_word):
                    self._at["_"].append(at)
            elif char == "’":
                if after_text and not before_word:
                    self._at["’"].append(at)
            else:  # "'"
                if not after_word and before_text:
                    self._at["'open"].append(at)
                if after_text and not before_word:
                    self._at["'close"].append(at)

    def open_between(self, start: int, end: int) -> bool:
        count = lambda name: self._count(name, start, end)  # noqa: E731
        if count("(") > count(")") or count("[") > count("]") or count("“") > count("”"):
            return True
        if count('"') % 2 or count("*") % 2 or count("_") % 2:
            return True
        return self._unclosed("‘", "’", start, end) or self._unclosed("'open", "'close", start, end)

    def _count(self, name: str, start: int, end: int) -> int:
        at = self._at[name]
        return bisect_left(at, end) - bisect_left(at, start)

    def _unclosed(self, opener: str, closer: str, start: int, end: int) -> bool:
        """The last `opener` in [start, end) has no `closer` after it before `end`."""
        opens = self._at[opener]
        index = bisect_left(opens, end) - 1
        if index < 0 or opens[index] < start:
            return False
        return self._count(closer, opens[index] + 1, end) == 0


_MARK_CHAR = re.compile("[()\\[\\]“”\"‘’'*_]")


def _bounded(sentence: str) -> list[str]:
    """`sentence` in pieces of at most MAX_SENTENCE characters, cut after the last '; ', ', ' or
    space before the limit (anywhere, when there is none).

    A written sentence, even one citing many papers, is a few hundred characters; a longer "sentence"
    is a table, a list or a dump run together. Cutting it bounds the work (and the description each
    citation carries) per citation, so a megabyte line costs what a megabyte of prose does.
    """
    if len(sentence) <= MAX_SENTENCE:
        return [sentence]
    pieces, start = [], 0
    while len(sentence) - start > MAX_SENTENCE:
        limit = start + MAX_SENTENCE
        cut = max(sentence.rfind("; ", start, limit), sentence.rfind(", ", start, limit))
        cut = cut + 1 if cut > start else sentence.rfind(" ", start, limit)
        cut = cut if cut > start else limit
        pieces.append(sentence[start:cut].strip())
        start = cut
    pieces.append(sentence[start:].strip())
    return [piece for piece in pieces if piece]


# --- one sentence --------------------------------------------------------------------------------


# Plain dataclasses, not models: a sentence makes many of these and validating each cost more than
# the rest of its reading.
@dataclass
class _Item:
    kind: str  # "author", "term", "title", "year"
    value: str
    start: int
    end: int
    source: str | None = None  # for titles: quoted / emphasis / link


@dataclass
class _Group:
    """Mentions that stand together: one bracket "(2024, arXiv:A; 2026, arXiv:B)", or one bare mention."""

    start: int
    end: int
    members: list[int]  # indices into the sentence's unique citations
    slots: dict[int, tuple[int, int]] = field(default_factory=dict)  # member -> its ';'-part of the bracket


def _sentence_citations(sentence: str, line: int, *, citing: bool = False) -> list[Citation]:
    if not _MAY_CITE.search(sentence):
        return []  # as for a line: no digit, no "arXiv", no "CoRR", no citation
    mentions = find_mentions(sentence, citing=citing)
    masked = mask(sentence, mentions)
    if not mentions:
        years = _dated_parentheses(masked) or _author_years(masked)
        return _no_id_citation(sentence, masked, _items(sentence, masked), line, years) if years else []
    items = _items(sentence, masked)
    unique: list[Mention] = []
    positions: list[list[Mention]] = []
    for mention in mentions:
        key = mention.key
        for index, seen in enumerate(unique):
            if seen.key == key:
                positions[index].append(mention)
                break
        else:
            unique.append(mention)
            positions.append([mention])
    groups = _groups(masked, positions)
    segments = _segments(masked, groups)
    owned: dict[int, dict[str, list[_Item]]] = {i: {} for i in range(len(unique))}
    shared: dict[int, dict[str, list[_Item]]] = {i: {} for i in range(len(unique))}
    for item in items:
        members, exclusive = _owners(item, groups, segments)
        for member in members:
            (owned if exclusive else shared)[member].setdefault(item.kind, []).append(item)
    citations = []
    for index, mention in enumerate(unique):
        parsed = parse(mention.token)
        group = next(g for g in groups if index in g.members)
        segment = segments[groups.index(group)]
        mine, common = owned[index], shared[index]
        year_item = _year_for(index, group, mine, common, items, segment)
        titles = mine.get("title", [])
        title = max(titles, key=lambda t: len(t.value)) if titles else None
        description = _description(sentence, mentions, segment if len(groups) > 1 else None)
        citations.append(
            Citation(
                line=line, as_written=mention.written, arxiv_id=parsed.canonical if parsed else mention.token,
                version=parsed.version if parsed else None, context=sentence, description=description,
                stated_year=int(year_item.value[:4]) if year_item else None,
                stated_years=year_item.value if year_item and len(year_item.value) > 4 else None,
                authors_named=_values(mine.get("author", [])), author_guesses=_values(mine.get("author_guess", [])),
                claimed_title=title.value if title else None, title_source=title.source if title else None,
                named_terms=_values(mine.get("term", [])) + [t.value for t in titles if t is not title],
                shared_terms=_values(common.get("term", []) + common.get("title", [])),
                shared_authors=_values(common.get("author", [])),
                cited_with=[unique[m].key for m in group.members if m != index],
            )
        )
    return citations


def _no_id_citation(sentence: str, masked: str, items: list[_Item], line: int, years: list[tuple[int, str]]) -> list[Citation]:
    """The one `no_id` citation of a sentence that states `years` (its dated parentheses, else its
    author-year citations) but cites no identifier."""
    first, span = years[0]
    titles = [i for i in items if i.kind == "title"]
    title = max(titles, key=lambda t: len(t.value)) if titles else None
    return [
        Citation(
            line=line, as_written=span, arxiv_id=None, context=sentence, description=_description(sentence, [], None),
            stated_year=first, stated_years=span if "–" in span or "-" in span else None,
            authors_named=_values([i for i in items if i.kind == "author"]),
            claimed_title=title.value if title else None, title_source=title.source if title else None,
            named_terms=_values([i for i in items if i.kind == "term"]),
        )
    ]


# What may stand between two mentions that are cited together: "A, B", "A and B", "[A](B)".
# Possessive, so a long run of spaces and commas between two mentions is not split every way.
_JOINED = re.compile(r"[\s,;]*+(?:(?:and|&)[\s,;]*+)?|\]?\(?")


def _values(items: list[_Item]) -> list[str]:
    return list(dict.fromkeys(i.value for i in items))


def _groups(masked: str, positions: list[list[Mention]]) -> list[_Group]:
    """Bracket groups (mentions inside one pair of brackets) and lone mentions; a Markdown link's
    text and target, or "arXiv:A, arXiv:B" with nothing between, stand together."""
    spans: list[tuple[int, int, int]] = []  # (start, end, member)
    brackets = _BracketPairs(masked)
    for member, mentions in enumerate(positions):
        for mention in mentions:
            start, end = brackets.enclosing(mention.start, mention.end) or (mention.start, mention.end)
            spans.append((start, end, member))
    spans.sort()
    groups: list[_Group] = []
    for start, end, member in spans:
        if groups and (start <= groups[-1].end or _JOINED.fullmatch(masked, groups[-1].end, start)):
            group = groups[-1]
            group.end = max(group.end, end)
            if member not in group.members:
                group.members.append(member)
        else:
            groups.append(_Group(start=start, end=end, members=[member]))
    # the same citation in two places (link text and, later, a URL) belongs to its first group
    seen: set[int] = set()
    for group in groups:
        group.members = [m for m in group.members if m not in seen]
        seen.update(group.members)
    groups = [g for g in groups if g.members]
    for group in groups:
        for member in group.members:
            first = positions[member][0]
            cut_start = max(group.start, masked.rfind(";", group.start, first.start) + 1)
            next_cut = masked.find(";", first.end, group.end)
            group.slots[member] = (cut_start, group.end if next_cut == -1 else next_cut)
    return groups


class _BracketPairs:
    """The brackets of a text, paired in one pass, so that finding the bracket around each of many
    mentions is a bisection rather than a scan back and forth per mention (quadratic).

    `enclosing(start, end)`: the innermost bracket still open at `start`, either kind counting
    against either (as a reader scanning back from `start` would close them), when the bracket of
    its own kind that closes it does so at or after `end`: (its index, its closer's index + 1).
    """

    def __init__(self, text: str) -> None:
        self._at: list[int] = []  # each bracket's position, in order
        self._open_after: list[int | None] = []  # the innermost open bracket after that one
        self._closes: dict[int, int] = {}  # opener -> its closer of the same kind
        either: list[int] = []
        own: dict[str, list[int]] = {"(": [], "[": []}
        for bracket in _BRACKET.finditer(text):
            char, at = bracket.group(), bracket.start()
            if char in "([":
                either.append(at)
                own[char].append(at)
            else:
                if either:
                    either.pop()
                kind = own["(" if char == ")" else "["]
                if kind:
                    self._closes[kind.pop()] = at
            self._at.append(at)
            self._open_after.append(either[-1] if either else None)

    def enclosing(self, start: int, end: int) -> tuple[int, int] | None:
        before = bisect_left(self._at, start) - 1
        opener = self._open_after[before] if before >= 0 else None
        if opener is None:
            return None
        close = self._closes.get(opener)
        return (opener, close + 1) if close is not None and close >= end else None


_BRACKET = re.compile(r"[()\[\]]")


def _segments(masked: str, groups: list[_Group]) -> list[tuple[int, int]]:
    """Per group, the clause(s) of the sentence that belong to it. One group: the whole sentence."""
    if len(groups) == 1:
        return [(0, len(masked))]
    cuts = [0]
    for match in _CLAUSE_BREAK.finditer(masked):
        if not any(g.start <= match.start() < g.end for g in groups) and _depth(masked, match.start()) == 0:
            cuts.append(match.start())
    cuts.append(len(masked))
    clauses = [(a, b) for a, b in zip(cuts, cuts[1:]) if b > a]
    owner = [[i for i, g in enumerate(groups) if a <= g.start < b] for a, b in clauses]
    # clauses without a citation join the next clause that has one (writers cite at the clause end);
    # trailing ones join the last
    segments: list[list[int]] = [[] for _ in groups]
    pending: list[int] = []
    last: int | None = None
    for index, holders in enumerate(owner):
        if not holders:
            pending.append(index)
            continue
        for holder in holders:
            segments[holder] += [*pending, index]
        pending, last = [], holders[-1]
    if pending and last is not None:
        segments[last] += pending
    spans = []
    for group_index, clause_indices in enumerate(segments):
        if not clause_indices:
            spans.append((groups[group_index].start, groups[group_index].end))
            continue
        spans.append((min(clauses[i][0] for i in clause_indices), max(clauses[i][1] for i in clause_indices)))
    return spans


def _depth(text: str, position: int) -> int:
    before = text[:position]
    return max(0, before.count("(") - before.count(")")) + max(0, before.count("[") - before.count("]"))


def _owners(item: _Item, groups: list[_Group], segments: list[tuple[int, int]]) -> tuple[list[int], bool]:
    """Which citations an author / term / title / year belongs to, and whether to them alone."""
    for group in groups:
        if group.start <= item.start and item.end <= group.end:
            for member, (a, b) in group.slots.items():
                if a <= item.start and item.end <= b and (len(group.members) == 1 or _slot_holds_mention(group, member, a, b)):
                    return [member], True
            return list(group.members), len(group.members) == 1
    holders = [i for i, (a, b) in enumerate(segments) if a <= item.start < b] or list(range(len(groups)))

    def distance(index: int) -> float:
        group = groups[index]
        if item.end <= group.start:
            return group.start - item.end
        return (item.start - group.end) * 2 + 5 if item.start >= group.end else 0

    nearest = groups[min(holders, key=distance)]
    return list(nearest.members), len(nearest.members) == 1


def _slot_holds_mention(group: _Group, member: int, a: int, b: int) -> bool:
    return sum(1 for (x, y) in group.slots.values() if (x, y) == (a, b)) == 1


def _year_for(index: int, group: _Group, mine: dict, common: dict, items: list[_Item], segment: tuple[int, int]) -> _Item | None:
    """The year the writer attaches to this citation: in its own bracket part, else one attributed to
    it, else one its group shares, else the first year of its clause."""
    if mine.get("year"):
        slot = group.slots.get(index)
        in_slot = [y for y in mine["year"] if slot and slot[0] <= y.start < slot[1]]
        return (in_slot or mine["year"])[0]
    if common.get("year"):
        return common["year"][0]
    in_segment = [i for i in items if i.kind == "year" and segment[0] <= i.start < segment[1]]
    return in_segment[0] if in_segment else None


def _items(sentence: str, masked: str) -> list[_Item]:
    """Authors, years, titles and named terms of a sentence, with their positions."""
    items: list[_Item] = []
    for match in _YEAR.finditer(masked):
        items.append(_Item(kind="year", value=match.group(0), start=match.start(), end=match.end()))
    names: set[str] = set()
    author_starts: set[int] = set()
    if apa := _APA.match(masked):
        for surname in _APA_AUTHOR.finditer(apa["authors"]):
            name = surname.group(1).split()[-1]
            items.append(_Item(kind="author", value=name, start=surname.start(1), end=surname.end(1)))
            names.add(name)
            author_starts.add(surname.start(1))
    # Each pattern is tried only when the words it needs occur (a substring test costs far less than
    # a pattern tried at every word), and once: its matches serve every use below.
    author_year = list(_AUTHOR_YEAR.finditer(masked)) if _YEARISH.search(masked) else []
    et_al = list(_AUTHORS_ET_AL.finditer(masked)) if "et" in masked and "al" in masked else []
    colleagues = list(_AUTHORS_COLLEAGUES.finditer(masked)) if "colleagues" in masked or "authors" in masked else []
    quoted = list(_QUOTED.finditer(masked)) if any(mark in masked for mark in "“\"‘'") else []
    for match in author_year:
        # "Peterson (2024)" or "Magpie (2024)": one word before a year may be an author or a system;
        # grounding decides, from who wrote what
        single = _clean_names(match, True)
        if len(single) == 1 and not match["etal"] and not _clean_names(match, False) and not any(c.isupper() for c in single[0][0][1:]):
            name, start = single[0]
            items.append(_Item(kind="author_guess", value=name, start=start, end=start + len(name)))
    for pattern, matches in ((_AUTHOR_YEAR, author_year), (_AUTHORS_ET_AL, et_al), (_AUTHORS_COLLEAGUES, colleagues),
                             (_AUTHORS_LEAD, list(_AUTHORS_LEAD.finditer(masked)))):
        for match in matches:
            found = _clean_names(match, bool(match["etal"]) or pattern is _AUTHORS_LEAD)
            if pattern is _AUTHORS_LEAD and any(c.isupper() for name, _ in found for c in name[1:]):
                continue  # "ToolFlow and Magpie, arXiv ..." names systems, not people
            for name, start in found:
                if start not in author_starts:
                    items.append(_Item(kind="author", value=name, start=start, end=start + len(name)))
                    names.add(name)
                    author_starts.add(start)
    titles = _titles(sentence, masked, quoted)
    if apa and not any(t.source in ("quoted", "emphasis") for t in titles):
        titles.append(_Item(kind="title", value=apa["title"].rstrip("."), start=apa.start("title"), end=apa.end("title"), source="reference"))
    items += titles
    title_spans = [(t.start, t.end) for t in titles]
    quoted_spans = []
    for match in quoted:
        group_index = next(i for i, g in enumerate(match.groups(), start=1) if g)
        quoted_spans.append((match.start(), match.end()))
        if not any(a <= match.start(group_index) < b for a, b in title_spans):
            items.append(_Item(kind="term", value=match.group(group_index), start=match.start(), end=match.end()))
    for term, start in _named_terms(masked, names):
        if not any(a <= start < b for a, b in title_spans + quoted_spans):
            items.append(_Item(kind="term", value=term, start=start, end=start + len(term)))
    return sorted(items, key=lambda i: i.start)


def _titles(sentence: str, masked: str, quoted: list[re.Match]) -> list[_Item]:
    """Titles the writer gives: quoted (`quoted`: the `_QUOTED` matches) or emphasised (*Title*,
    **Title**) title-cased phrases, a quoted phrase after "titled", and Markdown link text that is
    not an identifier."""
    found: list[_Item] = []
    for match in quoted:
        group_index = next(i for i, g in enumerate(match.groups(), start=1) if g)
        raw = match.group(group_index).strip()
        phrase = raw.rstrip(",.")
        cue = _cue_before(masked, match.start()) or raw.endswith((",", "."))  # “Title,” as references write it
        if len(phrase.split()) >= 3 and (_title_cased(phrase) or (cue and len(phrase.split()) >= 4)):
            found.append(_Item(kind="title", value=phrase, start=match.start(), end=match.end(), source="quoted"))
    for match in _EMPHASIS.finditer(masked) if "*" in masked or "_" in masked else ():
        group_index = next(i for i, g in enumerate(match.groups(), start=1) if g)
        phrase = match.group(group_index).strip().rstrip(",.")
        if len(phrase.split()) >= 3 and _title_cased(phrase) and not _AUTHORS_ET_AL.search(phrase) and not _YEAR.search(phrase):
            found.append(_Item(kind="title", value=phrase, start=match.start(), end=match.end(), source="emphasis"))
    for match in _LINK.finditer(sentence) if "](" in sentence else ():
        text = match["text"].strip().strip("*_").strip()
        if "arxiv" in match["url"].lower() and len(text.split()) >= 3 and not find_mentions(text) and not _YEAR.search(text):
            if not any(f.start <= match.start() < f.end for f in found):
                found.append(_Item(kind="title", value=text, start=match.start(), end=match.start() + len(match["text"]) + 2, source="link"))
    return found


def _cue_before(masked: str, at: int) -> bool:
    """Whether a title cue ("titled", "the paper", ...) ends just before `at`, give or take ': '.

    Only the few characters that can hold the cue are searched, so each quotation costs the same
    however long the text before it is.
    """
    end = at
    while end > 0 and masked[end - 1].isspace():
        end -= 1
    if end > 0 and masked[end - 1] in ":,":
        end -= 1
    while end > 0 and masked[end - 1].isspace():
        end -= 1
    return bool(_TITLE_CUE.search(masked, max(0, end - _TITLE_CUE_REACH), at))


def _title_cased(phrase: str) -> bool:
    words = [w for w in re.findall(r"[^\W\d_][\w'’-]*", phrase) if w.lower() not in _TITLE_SMALL_WORDS]
    if len(words) < 2:
        return False
    return sum(w[0].isupper() for w in words) / len(words) >= 0.75


def _description(sentence: str, mentions: list[Mention], segment: tuple[int, int] | None) -> str:
    """What the writer says about the paper: for 'arXiv:ID (2023): label' the label; else the
    sentence (or this citation's clauses) without identifiers, links and empty parentheses."""
    if mentions and segment is None:
        after = sentence[mentions[0].end :]
        label = _LABEL.match(after)
        if label and len({m.key for m in mentions}) == 1 and not sentence[: mentions[0].start].strip(" *_[(>-–—•"):
            return label["label"].strip()
    text = mask(sentence, mentions)
    if segment is not None:
        text = text[segment[0] : segment[1]]
    text = _LINK.sub(lambda m: m["text"], text)
    text = _ARXIV_WORD.sub(" ", text)
    text = _MARKS.sub("", text)
    text = _EMPTY_BRACKETS.sub(" ", text)
    return " ".join(text.split()).strip(" ;,")


# "arXiv:ID (2023): label" -> "label"; possessive, so a long run of spaces after the ID is one step.
_LABEL = re.compile(r"^\s*+(?:\([^()]*+\))?\s*+[:–—-]\s*+(?P<label>.+)$")
_ARXIV_WORD = re.compile(r"\barxiv\s*(?:preprint)?\s*:?\s*(?=[\s;,)\]]|$)", re.IGNORECASE)
_MARKS = re.compile(r"[*_`]{1,2}")
# A bracket left empty once its IDs are gone; `[,;\s]*+` (not `\s*[,;\s]*`, which splits a run of
# spaces every possible way before failing).
_EMPTY_BRACKETS = re.compile(r"[(\[][,;\s]*+[)\]]")


def _dated_parentheses(masked: str) -> list[tuple[int, str]]:
    found = []
    for paren in _PAREN_YEAR.finditer(masked):
        if year := _YEAR.search(paren.group(1)):
            found.append((int(year.group(1)), year.group(0)))
    return found


def _author_years(masked: str) -> list[tuple[int, str]]:
    found = []
    for match in _AUTHOR_YEAR.finditer(masked):
        if _clean_names(match, bool(match["etal"])) and (year := _YEAR.search(masked, match.end() - 4)):
            found.append((int(year.group(1)), year.group(0)))
    return found


def _clean_names(match: re.Match, et_al: bool) -> list[tuple[str, int]]:
    """Surnames (with positions) from 'Shumailov', 'Friedman & Dieng', 'Racca, Valko & Sanyal'; []
    when these are not names.

    A single name counts only with 'et al.' / 'and colleagues': a system's name ("MAUVE (2021)") or
    a month ("December 2027") before a year is not an author.
    """
    raw, offset = match["names"], match.start("names")
    parts, at = [], 0
    for separator in [*_NAME_SEPARATOR.finditer(raw), None]:
        cut = separator.start() if separator else len(raw)
        part = raw[at:cut]
        if part.strip():
            parts.append((part.strip(), at + len(part) - len(part.lstrip())))
        at = separator.end() if separator else at
    surnames = []
    for part, start in parts:
        words = part.split()
        surname = words[-1]
        if not surname[0].isupper() or surname.isupper() or surname.lower() in _NOT_NAMES:
            continue
        surnames.append((surname, offset + start + part.rfind(surname)))
    return surnames if et_al or len(parts) > 1 else []


# What stands between two names in a list: ", and", ",", "&", "and", with any spaces around them. A
# run of spaces is entered only at its start, so a long run costs its length, not its length squared.
_NAME_SEPARATOR = re.compile(r"(?:(?<!\s)\s++)?(?:,\s*+and\s++|,\s*+|&\s*+)|(?<!\s)\s++and\s++")


def _named_terms(masked: str, names: set[str]) -> list[tuple[str, int]]:
    """Words that name a system or method: mixed case (ToolFlow, TarGEN), with digits (phi-1), or
    capitalised mid-sentence words that are not authors (Vendi, Magpie, Simula)."""
    terms: list[tuple[str, int]] = []
    seen: set[str] = set()
    for index, match in enumerate(_WORD.finditer(masked)):
        word = match.group(0)
        if word.islower() and not _DIGIT.search(word):
            continue  # the common case, settled without the checks below: no capital, no digit
        if word in names or word.lower() in _NOT_NAMES or len(word) < 3 or word.isdigit() or word in seen:
            continue
        inner_caps = any(c.isupper() for c in word[1:])
        with_digit = any(c.isdigit() for c in word) and any(c.isalpha() for c in word)
        capitalised_inside = False
        if not (inner_caps or with_digit) and word[0].isupper():
            before = match.start()  # the last non-space character before the word, looked up in place
            while before > 0 and masked[before - 1].isspace():
                before -= 1
            follows_break = index == 0 or masked[before - 1 : before] in (":", ".", "(", "", "*", "_", "[", "—", "–", "-", ";")
            capitalised_inside = not follows_break
        if inner_caps or with_digit or capitalised_inside:
            terms.append((word, match.start()))
            seen.add(word)
    return terms


_WORD = re.compile(r"[^\W_][\w-]*[\w]|[^\W\d_]")
_DIGIT = re.compile(r"\d")


# --- BibTeX --------------------------------------------------------------------------------------


def _extract_bibtex(text: str) -> tuple[list[Citation], list[tuple[int, int]]]:
    """Citations from BibTeX entries, and the (start, end) span of every entry."""
    citations, spans = [], []
    entries = list(_BIB_ENTRY.finditer(text))
    line, counted_to = 1, 0
    for index, entry in enumerate(entries):
        # An entry ends at its closing brace or, when that is missing, where the next entry begins:
        # a broken entry neither swallows the entries after it nor makes each later one rescan the
        # rest of the file (quadratic).
        stop = entries[index + 1].start() if index + 1 < len(entries) else len(text)
        body, end = _braced_body(text, entry.end(), stop)
        spans.append((entry.start(), end))
        fields = _bib_fields(body)
        line += text.count("\n", counted_to, entry.start())
        counted_to = entry.start()
        title = _bib_text(fields.get("title", "")) or None
        year_text = fields.get("year", "") or fields.get("date", "")
        year = int(found.group(0)) if (found := re.search(r"\d{4}", year_text)) else None
        authors = [_bib_surname(a) for a in _BIB_AND.split(_bib_text(fields.get("author", ""))) if a.strip()]
        context = " ".join(_bib_text(text[entry.start() : end]).split())
        abstract = _bib_text(fields.get("abstract", ""))
        common = dict(
            line=line, context=context, description=" ".join(p for p in (title, abstract) if p) or context,
            stated_year=year, authors_named=[a for a in authors if a and a.lower() != "others"], claimed_title=title,
            title_source="bibtex" if title else None,
        )
        eprint = fields.get("eprint", "").strip()
        prefix = (fields.get("archiveprefix", "") or fields.get("eprinttype", "")).strip().lower()
        if eprint and prefix in ("", "arxiv"):
            parsed = parse(eprint)
            citations.append(
                Citation(as_written=eprint, arxiv_id=parsed.canonical if parsed else eprint, version=parsed.version if parsed else None, **common)
            )
            continue
        places = [fields.get(key, "") for key in ("doi", "url", "journal", "note", "howpublished", "volume", "number")]
        places.append(f"{fields.get('journal', '')} {fields.get('volume', '')}")
        found_mentions = [m for place in places if place.strip() for m in find_mentions(place, citing="corr" in place.lower() or "arxiv" in place.lower())]
        if found_mentions:
            mention = found_mentions[0]
            parsed = parse(mention.token)
            citations.append(
                Citation(as_written=mention.written, arxiv_id=parsed.canonical if parsed else mention.token, version=parsed.version if parsed else None, **common)
            )
        elif year is not None:
            citations.append(Citation(as_written=entry["key"] or context[:40], arxiv_id=None, **common))
    return citations, spans


def _braced_body(text: str, start: int, stop: int | None = None) -> tuple[str, int]:
    """The text from `start` up to the brace that closes one opened just before it, and the index
    after that brace; unclosed by `stop` (default: the end), the text up to `stop`, and `stop`."""
    stop = len(text) if stop is None else stop
    depth = 1
    for brace in _BRACE.finditer(text, start, stop):
        depth += 1 if brace.group() == "{" else -1
        if depth == 0:
            return text[start : brace.start()], brace.end()
    return text[start:stop], stop


def _bib_fields(body: str) -> dict[str, str]:
    """`key = {value}` / `"value"` / bare pairs, scanned in order so '=' inside a value is no field."""
    fields: dict[str, str] = {}
    position = 0
    while match := _BIB_FIELD.match(body, position):
        rest_at = match.end()
        if body.startswith("{", rest_at):
            value, position = _braced_body(body, rest_at + 1)
        elif body.startswith('"', rest_at):
            close = body.find('"', rest_at + 1)
            close = len(body) if close == -1 else close
            value, position = body[rest_at + 1 : close], close + 1
        else:
            bare = _BIB_BARE.match(body, rest_at)
            value, position = bare.group(0), bare.end()
        fields.setdefault(match["key"].lower(), value.strip())
    return fields


_BRACE = re.compile(r"[{}]")
# Possessive: a long run of spaces or commas is not split every way between the two `\s*`.
_BIB_FIELD = re.compile(r"\s*+,?\s*+(?P<key>\w++)\s*+=\s*+")
_BIB_BARE = re.compile(r"[^,\n}]*+")
_BIB_AND = re.compile(r"(?<!\s)\s++and\s++")
_LATEX_ACCENT = re.compile(r"\\[`'^\"~=.uvHckbdrt]\s*\{?([A-Za-z])\}?")
_LATEX_MARKS = {"`": "\u0300", "'": "\u0301", "^": "\u0302", '"': "\u0308", "~": "\u0303", "=": "\u0304", ".": "\u0307",
                "u": "\u0306", "v": "\u030c", "H": "\u030b", "c": "\u0327", "k": "\u0328", "r": "\u030a"}


def _bib_text(value: str) -> str:
    def accent(match: re.Match) -> str:
        mark = _LATEX_MARKS.get(match.group(0)[1], "")
        return unicodedata.normalize("NFC", match.group(1) + mark)

    value = _LATEX_ACCENT.sub(accent, value)
    value = re.sub(r"\\(?:textit|emph|textbf|textsc|mbox)\s*", "", value)
    return " ".join(value.replace("{", "").replace("}", "").replace("\\&", "&").split())


def _bib_surname(author: str) -> str:
    """'von Neumann, John' or 'John von Neumann' -> 'Neumann'; '' when no family name is written
    (an author field such as '{, John}')."""
    family = author.split(",")[0] if "," in author else author
    words = family.split()
    return words[-1] if words else ""


@lru_cache(maxsize=16_384)
def fold(text: str) -> str:
    """Lower case without accents, for comparing names and titles."""
    return "".join(c for c in unicodedata.normalize("NFKD", text.casefold()) if not unicodedata.combining(c))

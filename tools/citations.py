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
from functools import lru_cache

from pydantic import BaseModel

from tools.arxiv_id import Mention, find_mentions, mask, parse

_YEAR = re.compile(r"(?<![\w.])(19[5-9]\d|20[0-4]\d)(?:\s*[–—-]\s*(19[5-9]\d|20[0-4]\d))?(?![\w])")
_PAREN_YEAR = re.compile(r"\(([^()]*?(?<![\w.])(?:19[5-9]\d|20[0-4]\d)(?![\w.])[^()]*?)\)")
_NAME = r"(?:[^\W\d_][\w'’-]+)"
_AUTHOR_YEAR = re.compile(
    rf"(?P<names>{_NAME}(?:\s+{_NAME})?(?:(?:\s*,\s*|\s*&\s*|\s+and\s+|,\s+and\s+){_NAME})*)"
    rf"(?P<etal>\s+et\s+al\.?)?\s*(?:\(|,)\s*(?:19[5-9]\d|20[0-4]\d)"
)
_AUTHORS_ET_AL = re.compile(rf"(?P<names>{_NAME}(?:\s+{_NAME})?)(?P<etal>\s+et\s+al\b)")
# "Pasarkar & Dieng, arXiv preprint ...", "Bakshi and Chakraborty, “Title” ...": a reference that opens with its authors.
_AUTHORS_LEAD = re.compile(
    rf"^\s*(?P<names>{_NAME}(?:\s*,\s*{_NAME})*(?:\s*,?\s*(?:&|and)\s+{_NAME}))(?P<etal>)(?=\s*[,.]\s*(?:arxiv|preprint|[\"“*_]|\(?(?:19|20)\d\d))",
    re.IGNORECASE,
)
# APA references: "Shumailov, I., Shumaylov, Z., & Anderson, R. (2023). The curse of recursion: ... arXiv ..."
_APA = re.compile(
    r"^\s*(?P<authors>(?:[^\W\d_][\w'’-]+(?:\s[^\W\d_][\w'’-]+)*,\s(?:[A-Z]\.(?:\s?-?[A-Z]\.)*)(?:,\s|,?\s&\s|\s)?)+(?:…\s*|\.\.\.\s*)?(?:[^\W\d_][\w'’-]+,\s(?:[A-Z]\.\s?)+)?(?:et al\.\s*)?)"
    r"\((?P<year>(?:19|20)\d\d)[a-z]?\)\.\s+(?P<title>.+?[.?!])(?=\s|$)"
)
_AUTHORS_COLLEAGUES = re.compile(rf"(?P<names>{_NAME}(?:\s+{_NAME})?)(?P<etal>\s+and\s+(?:colleagues|coauthors|co-authors)\b)")
_QUOTED = re.compile(r"“([^”]{3,})”|\"([^\"]{3,})\"|‘([^’]{3,})’|(?<![\w])'([^']{3,}?)'(?![\w])")
# Italics (the convention for titles); bold marks headings and lead-ins, not titles.
_EMPHASIS = re.compile(r"(?<![*\w])\*([^*\s][^*]{4,}?)\*(?![*\w])|(?<![_\w])_([^_\s][^_]{4,}?)_(?![_\w])")
_LINK = re.compile(r"\[(?P<text>[^\]]{3,})\]\((?P<url>[^)\s]+)\)")
_TITLE_CUE = re.compile(r"(?:\btitled|\bentitled|\bpaper|\bin|\bwork|\bstudy|\bpreprint|\bthe)\s*[:,]?\s*$", re.IGNORECASE)
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
_BIB_ENTRY = re.compile(r"@(?P<kind>\w+)\s*\{\s*(?P<key>[^,\s]*)\s*,", re.IGNORECASE)
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
    for start, end in spans:
        text = text[:start] + re.sub(r"[^\n]", " ", text[start:end]) + text[end:]
    for line_number, line in enumerate(text.splitlines(), start=1):
        table_row = line.lstrip().startswith("|")
        body = _MARKUP.sub("", line)
        if table_row:
            body = re.sub(r"\s*\|\s*", " ; ", body).strip(" ;")
        for sentence in [body] if _APA.match(body) else split_sentences(body):
            citations.extend(_sentence_citations(sentence, line_number, citing=table_row))
    return sorted(citations, key=lambda c: c.line)


def split_sentences(text: str) -> list[str]:
    """Split a line into sentences without breaking at 'et al.', 'e.g.' or initials."""
    sentences, start = [], 0
    for match in _SENTENCE_END.finditer(text):
        if _NO_SPLIT_BEFORE.search(text[start : match.start()]) or _inside_span(text[start : match.start()]):
            continue
        sentences.append(text[start : match.start()].strip())
        start = match.end()
    sentences.append(text[start:].strip())
    return [s for s in sentences if s]


def _inside_span(text: str) -> bool:
    """An open bracket, italics or quotation at the end of `text`: a title such as *Collapse or
    Thrive? Perils and ...* or "Is Model Collapse Inevitable? ..." goes on past its "?"."""
    if text.count("(") > text.count(")") or text.count("[") > text.count("]"):
        return True
    if text.count("“") > text.count("”") or text.count('"') % 2:
        return True
    return len(re.findall(r"(?<![*\w])\*(?=\S)|(?<=\S)\*(?![*\w])", text)) % 2 == 1


# --- one sentence --------------------------------------------------------------------------------


class _Item(BaseModel):
    kind: str  # "author", "term", "title", "year"
    value: str
    start: int
    end: int
    source: str | None = None  # for titles: quoted / emphasis / link


class _Group(BaseModel):
    """Mentions that stand together: one bracket "(2024, arXiv:A; 2026, arXiv:B)", or one bare mention."""

    start: int
    end: int
    members: list[int]  # indices into the sentence's unique citations
    slots: dict[int, tuple[int, int]] = {}  # member -> its ';'-part of the bracket


def _sentence_citations(sentence: str, line: int, *, citing: bool = False) -> list[Citation]:
    mentions = find_mentions(sentence, citing=citing)
    masked = mask(sentence, mentions)
    items = _items(sentence, masked)
    if not mentions:
        return _no_id_citation(sentence, masked, items, line)
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


def _no_id_citation(sentence: str, masked: str, items: list[_Item], line: int) -> list[Citation]:
    years = _dated_parentheses(masked) or _author_years(masked)
    if not years:
        return []
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


def _values(items: list[_Item]) -> list[str]:
    return list(dict.fromkeys(i.value for i in items))


def _groups(masked: str, positions: list[list[Mention]]) -> list[_Group]:
    """Bracket groups (mentions inside one pair of brackets) and lone mentions; a Markdown link's
    text and target, or "arXiv:A, arXiv:B" with nothing between, stand together."""
    spans: list[tuple[int, int, int]] = []  # (start, end, member)
    for member, mentions in enumerate(positions):
        for mention in mentions:
            start, end = _enclosing_bracket(masked, mention.start, mention.end) or (mention.start, mention.end)
            spans.append((start, end, member))
    spans.sort()
    groups: list[_Group] = []
    for start, end, member in spans:
        if groups and (start <= groups[-1].end or re.fullmatch(r"[\s,;]*(?:and|&)?[\s,;]*|\]?\(?", masked[groups[-1].end : start])):
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


def _enclosing_bracket(text: str, start: int, end: int) -> tuple[int, int] | None:
    depth = 0
    for index in range(start - 1, -1, -1):
        char = text[index]
        if char in ")]":
            depth += 1
        elif char in "([":
            if depth == 0:
                close = _matching(text, index)
                if close is not None and close >= end:
                    return index, close + 1
                return None
            depth -= 1
    return None


def _matching(text: str, open_at: int) -> int | None:
    pairs = {"(": ")", "[": "]"}
    opener, closer = text[open_at], pairs[text[open_at]]
    depth = 0
    for index in range(open_at, len(text)):
        if text[index] == opener:
            depth += 1
        elif text[index] == closer:
            depth -= 1
            if depth == 0:
                return index
    return None


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
    if apa := _APA.match(masked):
        for surname in re.finditer(r"([^\W\d_][\w'’-]+(?:\s[^\W\d_][\w'’-]+)*),\s[A-Z]\.", apa["authors"]):
            name = surname.group(1).split()[-1]
            items.append(_Item(kind="author", value=name, start=surname.start(1), end=surname.end(1)))
            names.add(name)
    for match in _AUTHOR_YEAR.finditer(masked):
        # "Peterson (2024)" or "Magpie (2024)": one word before a year may be an author or a system;
        # grounding decides, from who wrote what
        single = _clean_names(match, True)
        if len(single) == 1 and not match["etal"] and not _clean_names(match, False) and not any(c.isupper() for c in single[0][0][1:]):
            name, start = single[0]
            items.append(_Item(kind="author_guess", value=name, start=start, end=start + len(name)))
    for pattern in (_AUTHOR_YEAR, _AUTHORS_ET_AL, _AUTHORS_COLLEAGUES, _AUTHORS_LEAD):
        for match in pattern.finditer(masked):
            found = _clean_names(match, bool(match["etal"]) or pattern is _AUTHORS_LEAD)
            if pattern is _AUTHORS_LEAD and any(c.isupper() for name, _ in found for c in name[1:]):
                continue  # "ToolFlow and Magpie, arXiv ..." names systems, not people
            for name, start in found:
                if not any(i.kind == "author" and i.start == start for i in items):
                    items.append(_Item(kind="author", value=name, start=start, end=start + len(name)))
                    names.add(name)
    titles = _titles(sentence, masked)
    if apa and not any(t.source in ("quoted", "emphasis") for t in titles):
        titles.append(_Item(kind="title", value=apa["title"].rstrip("."), start=apa.start("title"), end=apa.end("title"), source="reference"))
    items += titles
    title_spans = [(t.start, t.end) for t in titles]
    quoted_spans = []
    for match in _QUOTED.finditer(masked):
        group_index = next(i for i, g in enumerate(match.groups(), start=1) if g)
        quoted_spans.append((match.start(), match.end()))
        if not any(a <= match.start(group_index) < b for a, b in title_spans):
            items.append(_Item(kind="term", value=match.group(group_index), start=match.start(), end=match.end()))
    for term, start in _named_terms(masked, names):
        if not any(a <= start < b for a, b in title_spans + quoted_spans):
            items.append(_Item(kind="term", value=term, start=start, end=start + len(term)))
    return sorted(items, key=lambda i: i.start)


def _titles(sentence: str, masked: str) -> list[_Item]:
    """Titles the writer gives: quoted or emphasised (*Title*, **Title**) title-cased phrases, a
    quoted phrase after "titled", and Markdown link text that is not an identifier."""
    found: list[_Item] = []
    for match in _QUOTED.finditer(masked):
        group_index = next(i for i, g in enumerate(match.groups(), start=1) if g)
        raw = match.group(group_index).strip()
        phrase = raw.rstrip(",.")
        cue = bool(_TITLE_CUE.search(masked[: match.start()])) or raw.endswith((",", "."))  # “Title,” as references write it
        if len(phrase.split()) >= 3 and (_title_cased(phrase) or (cue and len(phrase.split()) >= 4)):
            found.append(_Item(kind="title", value=phrase, start=match.start(), end=match.end(), source="quoted"))
    for match in _EMPHASIS.finditer(masked):
        group_index = next(i for i, g in enumerate(match.groups(), start=1) if g)
        phrase = match.group(group_index).strip().rstrip(",.")
        if len(phrase.split()) >= 3 and _title_cased(phrase) and not _AUTHORS_ET_AL.search(phrase) and not _YEAR.search(phrase):
            found.append(_Item(kind="title", value=phrase, start=match.start(), end=match.end(), source="emphasis"))
    for match in _LINK.finditer(sentence):
        text = match["text"].strip().strip("*_").strip()
        if "arxiv" in match["url"].lower() and len(text.split()) >= 3 and not find_mentions(text) and not _YEAR.search(text):
            if not any(f.start <= match.start() < f.end for f in found):
                found.append(_Item(kind="title", value=text, start=match.start(), end=match.start() + len(match["text"]) + 2, source="link"))
    return found


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
        label = re.match(r"^\s*(?:\([^()]*\))?\s*[:–—-]\s*(?P<label>.+)$", after)
        if label and len({m.key for m in mentions}) == 1 and not sentence[: mentions[0].start].strip(" *_[(>-–—•"):
            return label["label"].strip()
    text = mask(sentence, mentions)
    if segment is not None:
        text = text[segment[0] : segment[1]]
    text = _LINK.sub(lambda m: m["text"], text)
    text = re.sub(r"\barxiv\s*(?:preprint)?\s*:?\s*(?=[\s;,)\]]|$)", " ", text, flags=re.IGNORECASE)
    text = re.sub(r"[*_`]{1,2}", "", text)
    text = re.sub(r"[(\[]\s*[,;\s]*[)\]]", " ", text)
    return " ".join(text.split()).strip(" ;,")


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
    parts = [(m.group(0), m.start()) for m in re.finditer(r"(?:(?!\s*,\s*and\s+|\s*,\s*|\s*&\s*|\s+and\s+).)+", raw)]
    parts = [(p.strip(), s + (len(p) - len(p.lstrip()))) for p, s in parts if p.strip()]
    surnames = []
    for part, start in parts:
        words = part.split()
        surname = words[-1]
        if not surname[0].isupper() or surname.isupper() or surname.lower() in _NOT_NAMES:
            continue
        surnames.append((surname, offset + start + part.rfind(surname)))
    return surnames if et_al or len(parts) > 1 else []


def _named_terms(masked: str, names: set[str]) -> list[tuple[str, int]]:
    """Words that name a system or method: mixed case (ToolFlow, TarGEN), with digits (phi-1), or
    capitalised mid-sentence words that are not authors (Vendi, Magpie, Simula)."""
    terms: list[tuple[str, int]] = []
    words = list(re.finditer(r"[^\W_][\w-]*[\w]|[^\W\d_]", masked))
    for index, match in enumerate(words):
        word = match.group(0)
        if word in names or word.lower() in _NOT_NAMES or len(word) < 3 or word.isdigit():
            continue
        inner_caps = any(c.isupper() for c in word[1:])
        with_digit = any(c.isdigit() for c in word) and any(c.isalpha() for c in word)
        follows_break = index == 0 or masked[: match.start()].rstrip()[-1:] in (":", ".", "(", "", "*", "_", "[", "—", "–", "-", ";")
        capitalised_inside = not follows_break and word[0].isupper()
        if (inner_caps or with_digit or capitalised_inside) and word not in (t for t, _ in terms):
            terms.append((word, match.start()))
    return terms


# --- BibTeX --------------------------------------------------------------------------------------


def _extract_bibtex(text: str) -> tuple[list[Citation], list[tuple[int, int]]]:
    """Citations from BibTeX entries, and the (start, end) span of every entry."""
    citations, spans = [], []
    for entry in _BIB_ENTRY.finditer(text):
        body, end = _braced_body(text, entry.end())
        spans.append((entry.start(), end))
        fields = _bib_fields(body)
        line = text.count("\n", 0, entry.start()) + 1
        title = _bib_text(fields.get("title", "")) or None
        year_text = fields.get("year", "") or fields.get("date", "")
        year = int(found.group(0)) if (found := re.search(r"\d{4}", year_text)) else None
        authors = [_bib_surname(a) for a in re.split(r"\s+and\s+", _bib_text(fields.get("author", ""))) if a.strip()]
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


def _braced_body(text: str, start: int) -> tuple[str, int]:
    depth, index = 1, start
    while index < len(text) and depth:
        depth += {"{": 1, "}": -1}.get(text[index], 0)
        index += 1
    return text[start : index - 1], index


def _bib_fields(body: str) -> dict[str, str]:
    """`key = {value}` / `"value"` / bare pairs, scanned in order so '=' inside a value is no field."""
    fields: dict[str, str] = {}
    position = 0
    while match := re.compile(r"\s*,?\s*(?P<key>\w+)\s*=\s*").match(body, position):
        rest_at = match.end()
        if body.startswith("{", rest_at):
            value, position = _braced_body(body, rest_at + 1)
        elif body.startswith('"', rest_at):
            close = body.find('"', rest_at + 1)
            close = len(body) if close == -1 else close
            value, position = body[rest_at + 1 : close], close + 1
        else:
            bare = re.compile(r"[^,\n}]*").match(body, rest_at)
            value, position = bare.group(0), bare.end()
        fields.setdefault(match["key"].lower(), value.strip())
    return fields


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
    author = author.strip()
    return author.split(",")[0].strip().split()[-1] if "," in author else (author.split()[-1] if author.split() else "")


@lru_cache(maxsize=16_384)
def fold(text: str) -> str:
    """Lower case without accents, for comparing names and titles."""
    return "".join(c for c in unicodedata.normalize("NFKD", text.casefold()) if not unicodedata.combining(c))

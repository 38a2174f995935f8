"""Find citations in text, Markdown and BibTeX, and check each arXiv identifier's shape offline.

Every citation keeps where it was written (line, sentence) and what the writer claimed about it
(stated year or year range, author surnames, a quoted title or named terms, and a description), so
grounding can compare the claim with the paper the identifier resolves to.

Identifier rules: arXiv's identifier scheme (info.arxiv.org/help/arxiv_identifier.html) and
arXiv/arxiv-browse `browse/domain/identifier.py`, summarised in shared/notes/api_notes.md §4.
"""

from __future__ import annotations

import re
import unicodedata
from datetime import date
from typing import Literal

from pydantic import BaseModel

ShapeStatus = Literal["nonexistent", "malformed"]

# arXiv's monthly new submissions (https://arxiv.org/stats/get_monthly_submissions, copied from a
# 2025-09 snapshot of that CSV; yearly totals match arXiv's annual reports). Sequence numbers are
# assigned in submission order, so a month's largest number is about its submission count.
MONTHLY_SUBMISSIONS: dict[int, tuple[int, ...]] = {
    2015: (7912, 8054, 9191, 8367, 8172, 9217, 8995, 7983, 9318, 9223, 9472, 9376),
    2016: (8251, 9142, 9746, 8948, 9792, 9644, 8911, 9016, 9869, 10100, 10362, 9599),
    2017: (9186, 8910, 11008, 9029, 11194, 10297, 9980, 9854, 10517, 11627, 11589, 10332),
    2018: (10609, 10593, 11560, 11352, 12595, 11568, 11938, 10870, 11171, 13446, 12941, 11973),
    2019: (11537, 11302, 12654, 13396, 13750, 12350, 13634, 11868, 13881, 14675, 13302, 13517),
    2020: (12010, 12932, 14415, 15025, 14719, 17000, 16208, 13781, 14827, 16418, 15130, 15864),
    2021: (12747, 13656, 17273, 15141, 15205, 16248, 14803, 14006, 15322, 15960, 15673, 15596),
    2022: (13452, 14038, 17276, 14274, 16008, 15478, 14814, 15003, 15640, 17551, 17271, 14887),
    2023: (13870, 14863, 18249, 15010, 20092, 17848, 16897, 16912, 17453, 20710, 18841, 17748),
    2024: (18085, 19481, 20332, 19761, 21076, 20099, 21794, 17451, 20569, 24226, 19951, 21206),
    2025: (19407, 21321, 24391, 21857, 24878, 24129, 23787, 21825),
}
# The count is not an exact maximum (2410.24258 exists; October 2024 counted 24,226), so allow 5 %
# plus a constant before calling a number impossible: a real paper must never be called fake.
CEILING_SLACK, CEILING_CONSTANT = 1.05, 200
# Months after the table: submissions ran about 24k a month in early 2026; stay generous.
CEILING_AFTER_TABLE = 35_000
# 2007-04 .. 2014-12 used four digits; every month then stayed below 9,000 submissions.
CEILING_FOUR_DIGIT = 9_999

# Old-style archives (1991-08 .. 2007-03), from arXiv's identifier documentation.
OLD_ARCHIVES = frozenset(
    "acc-phys adap-org alg-geom ao-sci astro-ph atom-ph bayes-an chao-dyn chem-ph cmp-lg comp-gas cond-mat cs "
    "dg-ga funct-an gr-qc hep-ex hep-lat hep-ph hep-th math math-ph mtrl-th nlin nucl-ex nucl-th patt-sol physics "
    "plasm-ph q-alg q-bio quant-ph solv-int supr-con".split()
)

NEW_ID = re.compile(r"^(?P<yy>\d\d)(?P<mm>\d\d)\.(?P<num>\d{4,5})(?:v(?P<v>[1-9]\d*))?$")
OLD_ID = re.compile(
    r"^(?P<archive>[a-z]+(?:-[a-z]{2,})?)(?:\.(?P<subject>[A-Za-z-]{2,}))?/(?P<yy>\d\d)(?P<mm>\d\d)(?P<num>\d{3})"
    r"(?:v(?P<v>[1-9]\d*))?$"
)


class ArxivId(BaseModel):
    """A parsed identifier. `canonical` has no version and no old-style subject class."""

    canonical: str
    version: int | None
    year: int
    month: int
    number: int
    style: Literal["new", "old"]
    archive: str | None = None


class Citation(BaseModel):
    """One citation as written: an arXiv identifier, or a dated claim / author-year citation without one."""

    line: int
    as_written: str
    arxiv_id: str | None  # canonical when the shape parses, else the identifier as written; None for no_id
    version: int | None = None
    context: str  # the sentence (or BibTeX entry) that carries it
    description: str  # what the writer says about the paper: the sentence minus citation markup, or a label
    stated_year: int | None = None
    stated_years: str | None = None  # a stated range as written, e.g. "2024–2025"
    authors_named: list[str] = []  # surnames the writer attributes the work to
    claimed_title: str | None = None
    named_terms: list[str] = []  # system names and short quoted phrases, e.g. "ToolFlow", "Artificial Hivemind"
    shape_status: ShapeStatus | None = None
    shape_reason: str | None = None

    @property
    def year_span(self) -> tuple[int, int] | None:
        if self.stated_year is None:
            return None
        years = [int(y) for y in re.findall(r"\d{4}", self.stated_years or "")] or [self.stated_year]
        return min(years), max(years)


class ShapeError(BaseModel):
    status: ShapeStatus
    reason: str


def parse_arxiv_id(text: str) -> ArxivId | None:
    """The identifier's parts, or None when `text` is not an arXiv identifier shape at all."""
    raw = re.sub(r"^arxiv:\s*", "", text.strip(), flags=re.IGNORECASE)
    if match := NEW_ID.match(raw):
        yy, mm, num = int(match["yy"]), int(match["mm"]), match["num"]
        canonical = f"{match['yy']}{match['mm']}.{num}"
        return ArxivId(
            canonical=canonical, version=_int(match["v"]), year=2000 + yy, month=mm, number=int(num), style="new"
        )
    if match := OLD_ID.match(raw):
        yy, mm = int(match["yy"]), int(match["mm"])
        return ArxivId(
            canonical=f"{match['archive']}/{match['yy']}{match['mm']}{match['num']}",
            version=_int(match["v"]),
            year=(1900 if yy >= 91 else 2000) + yy,
            month=mm,
            number=int(match["num"]),
            style="old",
            archive=match["archive"],
        )
    return None


def check_shape(written: str, run_date: date) -> ShapeError | None:
    """Offline plausibility: None when the identifier could exist, else `malformed` or `nonexistent` and why."""
    parsed = parse_arxiv_id(written)
    if parsed is None:
        return ShapeError(status="malformed", reason=f"'{written}' is not an arXiv identifier shape (YYMM.NNNNN or archive/YYMMNNN)")
    if not 1 <= parsed.month <= 12:
        return ShapeError(status="nonexistent", reason=f"month {parsed.month:02d} does not exist, so {written} cannot be an arXiv ID")
    if (parsed.year, parsed.month) > (run_date.year, run_date.month):
        return ShapeError(status="nonexistent", reason=f"{parsed.year}-{parsed.month:02d} is after the run date ({run_date}), so no paper can have this ID yet")
    if parsed.number == 0:
        return ShapeError(status="nonexistent", reason="sequence number 0 is never assigned")
    return _check_old(parsed, written) if parsed.style == "old" else _check_new(parsed, written)


def _check_new(parsed: ArxivId, written: str) -> ShapeError | None:
    digits = len(parsed.canonical.split(".")[1])
    yymm = (parsed.year, parsed.month)
    if yymm < (2007, 4):
        return ShapeError(status="nonexistent", reason=f"new-style IDs start in 2007-04; {parsed.year}-{parsed.month:02d} used old-style IDs (archive/YYMMNNN)")
    if digits == 5 and yymm < (2015, 1):
        return ShapeError(status="nonexistent", reason=f"five-digit sequence numbers start in 2015-01; {parsed.year}-{parsed.month:02d} IDs have four digits")
    if digits == 4 and yymm >= (2015, 1):
        return ShapeError(status="nonexistent", reason=f"since 2015-01 sequence numbers have five digits; {written} has four")
    ceiling = month_ceiling(parsed.year, parsed.month)
    if parsed.number > ceiling:
        return ShapeError(
            status="nonexistent",
            reason=f"sequence number {parsed.number} is beyond anything arXiv assigned in {parsed.year}-{parsed.month:02d} (ceiling {ceiling} from its monthly submission count)",
        )
    return None


def _check_old(parsed: ArxivId, written: str) -> ShapeError | None:
    if parsed.archive not in OLD_ARCHIVES:
        return ShapeError(status="nonexistent", reason=f"'{parsed.archive}' is not one of arXiv's old-style archives")
    if (parsed.year, parsed.month) < (1991, 8) or (parsed.year, parsed.month) > (2007, 3):
        return ShapeError(status="nonexistent", reason=f"old-style IDs were used from 1991-08 to 2007-03, not {parsed.year}-{parsed.month:02d}")
    return None


def month_ceiling(year: int, month: int) -> int:
    """The largest sequence number a month can plausibly hold."""
    if year < 2015:
        return CEILING_FOUR_DIGIT
    counts = MONTHLY_SUBMISSIONS.get(year, ())
    if month <= len(counts):
        return int(counts[month - 1] * CEILING_SLACK) + CEILING_CONSTANT
    return CEILING_AFTER_TABLE


# --- extraction ----------------------------------------------------------------------------------

_ID_TOKEN = r"[\w./-]*[\w]"  # greedy, then trimmed: the written token, however broken
_PREFIXED = re.compile(rf"\barxiv\s*(?::\s*|\s+)(?P<id>(?=[\w./-]*\d){_ID_TOKEN})", re.IGNORECASE)
_URL = re.compile(r"(?:https?://)?(?:www\.|export\.)?arxiv\.org/(?:abs|pdf)/(?P<id>[\w./-]+?)(?:\.pdf)?(?=[\s)\]>,;\"'#?]|\.?$|\.\s)", re.IGNORECASE)
_BARE_NEW = re.compile(r"(?<![\w./:])(?P<id>\d{4}\.\d{4,5}(?:v[1-9]\d*)?)(?![\w/]|\.\d)")
_OLD_ARCHIVE_ALT = "|".join(sorted((re.escape(a) for a in OLD_ARCHIVES), key=len, reverse=True))
_BARE_OLD = re.compile(rf"(?<![\w/])(?P<id>(?:{_OLD_ARCHIVE_ALT})(?:\.[A-Za-z-]{{2,}})?/\d{{7}}(?:v[1-9]\d*)?)(?![\w/])")
_YEAR = re.compile(r"(?<![\w.])(19[5-9]\d|20[0-4]\d)(?:\s*[–—-]\s*(19[5-9]\d|20[0-4]\d))?(?![\w])")
_PAREN_YEAR = re.compile(r"\(([^()]*?(?<![\w.])(?:19[5-9]\d|20[0-4]\d)(?![\w.])[^()]*?)\)")
_NAME = r"(?:[^\W\d_][\w'’-]+)"
_AUTHOR_YEAR = re.compile(
    rf"(?P<names>{_NAME}(?:\s+{_NAME})?(?:(?:\s*,\s*|\s*&\s*|\s+and\s+|,\s+and\s+){_NAME})*)"
    rf"(?P<etal>\s+et\s+al\.?)?\s*(?:\(|,)\s*(?:19[5-9]\d|20[0-4]\d)"
)
_AUTHORS_ET_AL = re.compile(rf"(?P<names>{_NAME}(?:\s+{_NAME})?)(?P<etal>\s+et\s+al\b)")
_QUOTED = re.compile(r"“([^”]{3,})”|\"([^\"]{3,})\"|‘([^’]{3,})’|(?<![\w])'([^']{3,}?)'(?![\w])")
_NOT_NAMES = frozenset(
    "a an the in on of and see also cf e.g i.e nature science arxiv preprint proc proceedings journal conference "
    "january february march april may june july august september october november december ieee acm".split()
)
_SENTENCE_END = re.compile(r"(?<=[.!?])[\"'”’)]*\s+(?=[A-Z“\"'(\[•–—*-])")
_NO_SPLIT_BEFORE = re.compile(r"(?:\bet al|\be\.g|\bi\.e|\bvs|\bcf|\bFig|\bEq|\bSec|\bNo|\b[A-Z])\.[\"'”’)]*$")
_BIB_ENTRY = re.compile(r"@(?P<kind>\w+)\s*\{\s*(?P<key>[^,\s]*)\s*,", re.IGNORECASE)
_MARKUP = re.compile(r"^\s*(?:[-*+•–—]|\d+[.)])\s+")


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
        for sentence in split_sentences(_MARKUP.sub("", line)):
            citations.extend(_sentence_citations(sentence, line_number))
    return sorted(citations, key=lambda c: c.line)


def split_sentences(text: str) -> list[str]:
    """Split a line into sentences without breaking at 'et al.', 'e.g.' or initials."""
    sentences, start = [], 0
    for match in _SENTENCE_END.finditer(text):
        if _NO_SPLIT_BEFORE.search(text[start : match.start()]):
            continue
        sentences.append(text[start : match.start()].strip())
        start = match.end()
    sentences.append(text[start:].strip())
    return [s for s in sentences if s]


class _Mention(BaseModel):
    start: int
    end: int
    written: str  # the whole mention, e.g. "arXiv:2305.17493" or a URL
    token: str  # the identifier part as written


def _find_mentions(sentence: str) -> list[_Mention]:
    mentions: list[_Mention] = []

    def add(match: re.Match, token: str) -> None:
        if any(m.start < match.end() and match.start() < m.end for m in mentions):
            return
        token = token.rstrip(".")
        written = sentence[match.start() : match.start("id") + len(token)] if match.re is not _URL else match.group(0).rstrip(".")
        mentions.append(_Mention(start=match.start(), end=match.start() + len(written), written=written, token=token))

    for match in _URL.finditer(sentence):
        add(match, match["id"])
    for match in _PREFIXED.finditer(sentence):
        if sentence[match.end("id") :].startswith(".org"):
            continue  # "arxiv.org/..." without the scheme: a URL, handled above
        add(match, match["id"])
    in_citation_context = bool(re.search(r"arxiv|preprint|\beprint\b", sentence, re.IGNORECASE))
    for match in _BARE_NEW.finditer(sentence):
        if in_citation_context or _inside_brackets(sentence, match.start()):
            add(match, match["id"])
    for match in _BARE_OLD.finditer(sentence):
        add(match, match["id"])
    return sorted(mentions, key=lambda m: m.start)


def _inside_brackets(sentence: str, position: int) -> bool:
    before = sentence[:position]
    return before.count("(") > before.count(")") or before.count("[") > before.count("]")


def _sentence_citations(sentence: str, line: int) -> list[Citation]:
    mentions = _find_mentions(sentence)
    masked = _mask(sentence, mentions)
    names = _named_authors(masked)
    quoted = [next(g for g in match.groups() if g) for match in _QUOTED.finditer(masked)]
    title = max((q for q in quoted if len(q.split()) >= 4), key=len, default=None)
    terms = _named_terms(masked, names) + [q for q in quoted if q != title]
    description = _description(sentence, mentions)
    if not mentions:
        years = _dated_parentheses(masked) or _author_years(masked)
        if not years:
            return []
        first, span = years[0]
        return [
            Citation(
                line=line, as_written=span, arxiv_id=None, context=sentence, description=description,
                stated_year=first, stated_years=span if "–" in span or "-" in span else None,
                authors_named=names, claimed_title=title, named_terms=terms,
            )
        ]
    citations, seen = [], set()
    for mention in mentions:
        parsed = parse_arxiv_id(mention.token)
        key = parsed.canonical if parsed else mention.token
        if key in seen:
            continue
        seen.add(key)
        year, span = _stated_year(sentence, masked, mention, mentions)
        citations.append(
            Citation(
                line=line, as_written=mention.written, arxiv_id=key, version=parsed.version if parsed else None,
                context=sentence, description=description, stated_year=year,
                stated_years=span if span and ("–" in span or "-" in span) else None,
                authors_named=names, claimed_title=title, named_terms=terms,
            )
        )
    return citations


def _mask(sentence: str, mentions: list[_Mention]) -> str:
    """The sentence with identifiers blanked out, so '2012.12345' is never read as the year 2012."""
    chars = list(sentence)
    for mention in mentions:
        chars[mention.start : mention.end] = " " * (mention.end - mention.start)
    return "".join(chars)


def _stated_year(sentence: str, masked: str, mention: _Mention, mentions: list[_Mention]) -> tuple[int | None, str | None]:
    """The year the writer attaches to this identifier.

    Inside a parenthesis, the ';'-separated part that holds the identifier wins ("(2024, arXiv:A;
    2026, arXiv:B)"); otherwise a year of the sentence, the closest preceding one when there are
    several identifiers.
    """
    open_at = masked.rfind("(", 0, mention.start)
    close_at = masked.find(")", mention.end)
    if open_at != -1 and close_at != -1 and masked.find(")", open_at, mention.start) == -1:
        part_start = max(open_at, masked.rfind(";", open_at, mention.start))
        next_semicolon = masked.find(";", mention.end, close_at)
        part_end = close_at if next_semicolon == -1 else next_semicolon
        if found := _YEAR.search(masked, part_start, part_end):
            return int(found.group(1)), found.group(0)
    years = list(_YEAR.finditer(masked))
    if not years:
        return None, None
    if len(mentions) > 1:
        before = [y for y in years if y.start() < mention.start]
        chosen = before[-1] if before else years[0]
    else:
        chosen = years[0]
    return int(chosen.group(1)), chosen.group(0)


def _dated_parentheses(masked: str) -> list[tuple[int, str]]:
    found = []
    for paren in _PAREN_YEAR.finditer(masked):
        if year := _YEAR.search(paren.group(1)):
            found.append((int(year.group(1)), year.group(0)))
    return found


def _author_years(masked: str) -> list[tuple[int, str]]:
    found = []
    for match in _AUTHOR_YEAR.finditer(masked):
        if _clean_names(match["names"], bool(match["etal"])) and (year := _YEAR.search(masked, match.end() - 4)):
            found.append((int(year.group(1)), year.group(0)))
    return found


def _named_authors(masked: str) -> list[str]:
    names: list[str] = []
    for match in [*_AUTHOR_YEAR.finditer(masked), *_AUTHORS_ET_AL.finditer(masked)]:
        for name in _clean_names(match["names"], bool(match["etal"])):
            if name not in names:
                names.append(name)
    return names


def _clean_names(raw: str, et_al: bool) -> list[str]:
    """Surnames from 'Shumailov', 'Friedman & Dieng', 'Racca, Valko & Sanyal'; [] when these are not names.

    A single name counts only with 'et al.': a system's name ("MAUVE (2021)") or a month
    ("December 2027") before a year is not an author.
    """
    parts = [p.strip() for p in re.split(r"\s*,\s*and\s+|\s*,\s*|\s*&\s*|\s+and\s+", raw) if p.strip()]
    surnames = []
    for part in parts:
        words = part.split()
        surname = words[-1]
        if not surname[0].isupper() or surname.isupper() or surname.lower() in _NOT_NAMES:
            continue
        surnames.append(surname)
    return surnames if et_al or len(parts) > 1 else []


def _named_terms(masked: str, names: list[str]) -> list[str]:
    """Words that name a system or method: mixed case (ToolFlow, TarGEN), with digits (phi-1), or
    capitalised mid-sentence words that are not authors (Vendi, Magpie, Simula)."""
    terms: list[str] = []
    words = list(re.finditer(r"[^\W_][\w-]*[\w]|[^\W\d_]", masked))
    for index, match in enumerate(words):
        word = match.group(0)
        if word in names or word.lower() in _NOT_NAMES or len(word) < 3 or word.isdigit():
            continue
        inner_caps = any(c.isupper() for c in word[1:])
        with_digit = any(c.isdigit() for c in word) and any(c.isalpha() for c in word)
        follows_break = index == 0 or masked[: match.start()].rstrip()[-1:] in (":", ".", "(", "")
        capitalised_inside = not follows_break and word[0].isupper()
        if (inner_caps or with_digit or capitalised_inside or word[0].isupper() and index == 0 and inner_caps) and word not in terms:
            terms.append(word)
    return terms


def _description(sentence: str, mentions: list[_Mention]) -> str:
    """What the writer says about the paper: for 'arXiv:ID (2023): label' the label; else the
    sentence without identifiers, links and empty parentheses."""
    if mentions:
        after = sentence[mentions[0].end :]
        label = re.match(r"^\s*(?:\([^()]*\))?\s*:\s*(?P<label>.+)$", after)
        if label and len(mentions) == 1 and not sentence[: mentions[0].start].strip():
            return label["label"].strip()
    text = _mask(sentence, mentions)
    text = re.sub(r"\barxiv\s*:?\s*(?=[\s;,)])", " ", text, flags=re.IGNORECASE)
    text = re.sub(r"\(\s*[,;\s]*\)", " ", text)
    return " ".join(text.split())


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
        year_text = fields.get("year", "")
        year = int(found.group(0)) if (found := re.search(r"\d{4}", year_text)) else None
        authors = [_bib_surname(a) for a in re.split(r"\s+and\s+", _bib_text(fields.get("author", ""))) if a.strip()]
        context = " ".join(_bib_text(text[entry.start() : end]).split())
        common = dict(
            line=line, context=context, description=title or context, stated_year=year,
            authors_named=[a for a in authors if a and a.lower() != "others"], claimed_title=title,
        )
        eprint = fields.get("eprint", "").strip()
        prefix = fields.get("archiveprefix", "").strip().lower()
        if eprint and prefix in ("", "arxiv"):
            parsed = parse_arxiv_id(eprint)
            citations.append(
                Citation(as_written=eprint, arxiv_id=parsed.canonical if parsed else eprint, version=parsed.version if parsed else None, **common)
            )
            continue
        found = [m for key in ("journal", "note", "url", "howpublished", "volume", "doi") for m in _find_mentions(fields.get(key, ""))]
        if found:
            parsed = parse_arxiv_id(found[0].token)
            citations.append(
                Citation(as_written=found[0].written, arxiv_id=parsed.canonical if parsed else found[0].token, version=parsed.version if parsed else None, **common)
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


def _bib_text(value: str) -> str:
    return " ".join(value.replace("{", "").replace("}", "").split())


def _bib_surname(author: str) -> str:
    author = author.strip()
    return author.split(",")[0].strip().split()[-1] if "," in author else (author.split()[-1] if author.split() else "")


def fold(text: str) -> str:
    """Lower case without accents, for comparing names and titles."""
    return "".join(c for c in unicodedata.normalize("NFKD", text.casefold()) if not unicodedata.combining(c))


def _int(value: str | None) -> int | None:
    return int(value) if value else None

"""Every arXiv identifier rule, in one place: shapes, versions, the forms people write, validity.

Sources: arXiv's identifier scheme (info.arxiv.org/help/arxiv_identifier.html) and
arXiv/arxiv-browse `browse/domain/identifier.py`, summarised in shared/notes/api_notes.md §4.

- Shapes: new style `YYMM.NNNN` (2007-04 .. 2014-12) / `YYMM.NNNNN` (2015-01 on), old style
  `archive[.SubjectClass]/YYMMNNN` (1991-08 .. 2007-03); an optional version `vN` (N >= 1).
- Written forms (`find_mentions`): `arXiv:ID`, `arXiv ID`, arxiv.org URLs (`abs/`, `pdf/`, `html/`,
  with or without a version or `.pdf`), the arXiv DOI `10.48550/arXiv.ID` (what arXiv's own BibTeX
  export writes) with or without `https://doi.org/`, DBLP's `CoRR abs/ID`, and bare IDs where the
  text says it is citing arXiv (the words arXiv / preprint / eprint / CoRR), inside brackets, or
  when the text is the identifier alone. Old-style IDs with a known archive count anywhere.
- Canonical form (`canonical`): no prefix, no version, old-style IDs without their subject class
  (`math.GT/0309136v2` -> `math/0309136`), which is how arXiv and the Kaggle metadata key papers.
  The written form is NFKC-normalised first, so full-width digits (`２４０４.０１４１３`, as CJK input
  methods type them) name the same paper; digits of other scripts are no identifier.
- Hostile values: a version has at most four digits (arXiv's highest is in the dozens), so a
  thousands-digit version is `malformed` rather than a number Python refuses to convert.
- Validity (`check_shape`): `malformed` when the text is no identifier shape at all; `nonexistent`
  when the shape is right but no paper can have it (month 00 or 13+, a sequence number beyond what
  the month ever reached, four/five digits in the wrong era, a month after the run date, an
  unknown old-style archive). Everything else is plausible and only a source can say more.

Every other module takes these rules from here.
"""

from __future__ import annotations

import re
import unicodedata
from bisect import bisect_left
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

# ASCII digits only: `parse` has normalised full-width ones already (`\d` would take any script's).
_VERSION = r"(?:v(?P<v>[1-9][0-9]{0,3}))?"
NEW_ID = re.compile(rf"^(?P<yy>[0-9]{{2}})(?P<mm>[0-9]{{2}})\.(?P<num>[0-9]{{4,5}}){_VERSION}$")
OLD_ID = re.compile(
    r"^(?P<archive>[a-z]+(?:-[a-z]{2,})?)(?:\.(?P<subject>[A-Za-z-]{2,}))?/(?P<yy>[0-9]{2})(?P<mm>[0-9]{2})(?P<num>[0-9]{3})"
    rf"{_VERSION}$"
)
_PDF_END = re.compile(r"\.pdf$", re.IGNORECASE)
_SPACE = re.compile(r"\s")
# Prefixes that may stand before an identifier; stripped by `parse`.
_PREFIX = re.compile(
    r"^(?:(?:https?://)?(?:dx\.)?doi\.org/|doi:\s*)?10\.48550/arxiv\.|^(?:https?://)?(?:www\.|export\.)?arxiv\.org/(?:abs|pdf|html)/"
    r"|^arxiv\s*[:.]?\s*|^corr\s+abs/",
    re.IGNORECASE,
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


class ShapeError(BaseModel):
    status: ShapeStatus
    reason: str


def parse(text: str) -> ArxivId | None:
    """The identifier's parts, or None when `text` is not an arXiv identifier shape at all.

    Takes the identifier alone or with one of its written prefixes: `arXiv:`, an arxiv.org URL,
    the arXiv DOI `10.48550/arXiv.`; a URL's `.pdf` ending is dropped. Full-width characters count
    as their ASCII forms (NFKC).
    """
    raw = (text if text.isascii() else unicodedata.normalize("NFKC", text)).strip()  # ASCII is NFKC already
    raw = _PREFIX.sub("", raw, count=1).strip()
    raw = _PDF_END.sub("", raw)
    if match := NEW_ID.match(raw):
        yy, mm, num = int(match["yy"]), int(match["mm"]), match["num"]
        return ArxivId(
            canonical=f"{match['yy']}{match['mm']}.{num}", version=_int(match["v"]), year=2000 + yy, month=mm,
            number=int(num), style="new",
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


def canonical(text: str) -> str:
    """`arXiv:2305.17493v2` -> `2305.17493`; `math.GT/0309136v1` -> `math/0309136`; a text that is
    no identifier shape comes back stripped, as written."""
    parsed = parse(text)
    return parsed.canonical if parsed else text.strip()


def with_version(arxiv_id: str, version: int | None) -> str:
    return f"{arxiv_id}v{version}" if version else arxiv_id


def check_shape(written: str, run_date: date) -> ShapeError | None:
    """Offline plausibility: None when the identifier could exist, else `malformed` or `nonexistent` and why."""
    parsed = parse(written)
    if parsed is None:
        return ShapeError(status="malformed", reason=f"'{_shown(written)}' is not an arXiv identifier shape (YYMM.NNNNN or archive/YYMMNNN)")
    if not 1 <= parsed.month <= 12:
        return ShapeError(status="nonexistent", reason=f"month {parsed.month:02d} does not exist, so {_shown(written)} cannot be an arXiv ID")
    if (parsed.year, parsed.month) > (run_date.year, run_date.month):
        return ShapeError(status="nonexistent", reason=f"{parsed.year}-{parsed.month:02d} is after the run date ({run_date}), so no paper can have this ID yet")
    if parsed.number == 0:
        return ShapeError(status="nonexistent", reason="sequence number 0 is never assigned")
    return _check_old(parsed) if parsed.style == "old" else _check_new(parsed, written)


def is_plausible(written: str, run_date: date) -> bool:
    return check_shape(written, run_date) is None


def _check_new(parsed: ArxivId, written: str) -> ShapeError | None:
    digits = len(parsed.canonical.split(".")[1])
    yymm = (parsed.year, parsed.month)
    if yymm < (2007, 4):
        return ShapeError(status="nonexistent", reason=f"new-style IDs start in 2007-04; {parsed.year}-{parsed.month:02d} used old-style IDs (archive/YYMMNNN)")
    if digits == 5 and yymm < (2015, 1):
        return ShapeError(status="nonexistent", reason=f"five-digit sequence numbers start in 2015-01; {parsed.year}-{parsed.month:02d} IDs have four digits")
    if digits == 4 and yymm >= (2015, 1):
        return ShapeError(status="nonexistent", reason=f"since 2015-01 sequence numbers have five digits; {_shown(written)} has four")
    ceiling = month_ceiling(parsed.year, parsed.month)
    if parsed.number > ceiling:
        return ShapeError(
            status="nonexistent",
            reason=f"sequence number {parsed.number} is beyond anything arXiv assigned in {parsed.year}-{parsed.month:02d} (ceiling {ceiling} from its monthly submission count)",
        )
    return None


def _check_old(parsed: ArxivId) -> ShapeError | None:
    if parsed.archive not in OLD_ARCHIVES:
        return ShapeError(status="nonexistent", reason=f"'{_shown(parsed.archive or '')}' is not one of arXiv's old-style archives")
    if (parsed.year, parsed.month) < (1991, 8) or (parsed.year, parsed.month) > (2007, 3):
        return ShapeError(status="nonexistent", reason=f"old-style IDs were used from 1991-08 to 2007-03, not {parsed.year}-{parsed.month:02d}")
    return None


def _shown(written: str, limit: int = 60) -> str:
    """`written` as a reason quotes it: a hostile megabyte "identifier" is cut, not echoed whole."""
    return written if len(written) <= limit else written[: limit - 1] + "…"


def month_ceiling(year: int, month: int) -> int:
    """The largest sequence number a month can plausibly hold."""
    if year < 2015:
        return CEILING_FOUR_DIGIT
    counts = MONTHLY_SUBMISSIONS.get(year, ())
    if month <= len(counts):
        return int(counts[month - 1] * CEILING_SLACK) + CEILING_CONSTANT
    return CEILING_AFTER_TABLE


# --- finding identifiers in text ---------------------------------------------------------------

_TOKEN = r"[\w./-]*\w"  # greedy, then trimmed: the written token, however broken
_OLD_ARCHIVE_ALT = "|".join(sorted((re.escape(a) for a in OLD_ARCHIVES), key=len, reverse=True))
# The identifier part of a URL is at most 100 characters (the longest real one is about 30): an
# unbounded lazy scan tried from every "arxiv.org/abs/" of one long run was quadratic.
_URL = re.compile(
    r"(?:https?://)?(?:www\.|export\.)?arxiv\.org/(?:abs|pdf|html)/(?P<id>[\w./-]{1,100}?)(?:\.pdf)?"
    r"(?=[\s)\]>,;\"'#?*_`|]|\.?$|\.\s|\.[)\]\"'])",
    re.IGNORECASE,
)
_DOI = re.compile(
    rf"(?:(?:https?://)?(?:dx\.)?doi\.org/|\bdoi:\s*)?\b10\.48550/arxiv\.(?P<id>{_TOKEN})", re.IGNORECASE
)
# Possessive spaces: "arXiv" followed by a long run of spaces is not split every way between them.
_PREFIXED = re.compile(rf"\barxiv\s*+(?::\s*+|\s++(?:id\s*+:?\s*+|no\.?\s*+)?)(?P<id>(?=[\w./-]*\d){_TOKEN})", re.IGNORECASE)
_CORR = re.compile(rf"\bCoRR\W{{0,3}}\s*(?:abs/)(?P<id>{_TOKEN})")
_BARE_NEW = re.compile(r"(?<![\w./:-])(?P<id>\d{4}\.\d{4,5}(?:v[1-9]\d*)?)(?![\w/]|\.\d)")
_BARE_OLD = re.compile(rf"(?<![\w/])(?P<id>(?:{_OLD_ARCHIVE_ALT})(?:\.[A-Za-z-]{{2,}})?/\d{{7}}(?:v[1-9]\d*)?)(?![\w/])")
_CITING_ARXIV = re.compile(r"arxiv|preprint|\beprint\b|\bCoRR\b", re.IGNORECASE)
# For masking years: anything shaped like an identifier, cited or not.
_ANY_ID = re.compile(r"(?<![\w.])\d{4}\.\d{4,5}(?:v\d+)?(?![\w])")

# An identifier as written, for grammars that embed one (inquiry anchor lines): optional prefix,
# the identifier shape (month unchecked: validity is check_shape's job), optional version.
ID_AS_WRITTEN = (
    r"(?:arxiv\s*:\s*|(?:https?://)?(?:www\.)?arxiv\.org/(?:abs|pdf)/|(?:https?://doi\.org/)?10\.48550/arxiv\.)?"
    rf"(?:\d{{4}}\.\d{{4,5}}|(?:{_OLD_ARCHIVE_ALT})(?:\.[A-Za-z-]{{2,}})?/\d{{7}})(?:v[1-9]\d*)?(?:\.pdf)?"
)


class Mention(BaseModel):
    """One identifier written in a text: where, the whole written form, and the identifier part."""

    start: int
    end: int
    written: str  # e.g. "arXiv:2305.17493", "https://arxiv.org/pdf/2305.17493v2.pdf", "10.48550/arXiv.2305.17493"
    token: str  # the identifier part as written, e.g. "2305.17493v2"

    @property
    def parsed(self) -> ArxivId | None:
        return parse(self.token)

    @property
    def key(self) -> str:
        """Canonical ID when the token parses, else the token as written."""
        return canonical(self.token)


def find_mentions(text: str, *, citing: bool = False) -> list[Mention]:
    """Every identifier written in `text` (one sentence or a short field), in order of position.

    Prefixed, URL and DOI forms count even when the token is broken (`arXiv:2305.174` is a
    citation with a malformed ID); a bare new-style number counts only when the text is citing
    arXiv (or the caller says so with `citing`, e.g. for a table of references), the number sits in
    brackets, or the text is nothing but the identifier.
    """
    mentions: list[Mention] = []
    # Mentions never overlap, so kept sorted by start a new one can only collide with the last one
    # starting before its end: one bisection, not a pass over all (quadratic in a long list of IDs).
    starts: list[int] = []
    ends: list[int] = []

    def add(match: re.Match, token: str, written: str | None = None) -> None:
        before = bisect_left(starts, match.end()) - 1
        if before >= 0 and ends[before] > match.start():
            return
        token = token.rstrip(".")
        if written is None:
            written = text[match.start() : match.start("id") + len(token)]
        mention = Mention(start=match.start(), end=match.start() + len(written), written=written, token=token)
        at = bisect_left(starts, mention.start)
        starts.insert(at, mention.start)
        ends.insert(at, mention.end)
        mentions.append(mention)

    # Each written form is looked for only where its fixed part occurs at all (a substring test is far
    # cheaper than a pattern tried at every position, and most sentences hold none of them). Outside
    # ASCII, case-insensitive matching knows more equivalences than lower() (Kelvin sign, dotted I),
    # so there every pattern is tried.
    lowered = text.lower() if text.isascii() else None
    has_arxiv = lowered is None or "arxiv" in lowered
    if has_arxiv:
        for match in _URL.finditer(text):
            add(match, match["id"], match.group(0).rstrip("."))
    if "10.48550" in text:
        for match in _DOI.finditer(text):
            add(match, match["id"])
    if has_arxiv:
        for match in _PREFIXED.finditer(text):
            if text.startswith(".org", match.end("id")):
                continue  # "arxiv.org/..." without a scheme: a URL, handled above
            add(match, match["id"])
    if "CoRR" in text:
        for match in _CORR.finditer(text):
            add(match, match["id"])
    alone = not _SPACE.search(text.strip()) and parse(text) is not None
    may_cite = lowered is None or "arxiv" in lowered or "eprint" in lowered or "corr" in lowered  # "preprint" holds "eprint"
    citing = citing or alone or (may_cite and bool(_CITING_ARXIV.search(text)))
    brackets = _Brackets(text)
    for match in _BARE_NEW.finditer(text):
        if citing or brackets.open_at(match.start()):
            add(match, match["id"])
    for match in _BARE_OLD.finditer(text):
        add(match, match["id"])
    return sorted(mentions, key=lambda m: m.start)


def find_ids(text: str) -> list[str]:
    """Canonical IDs of the well-shaped identifiers in `text`, in order, each once (month unchecked)."""
    ids: list[str] = []
    for mention in find_mentions(text):
        parsed = mention.parsed
        if parsed is not None and parsed.canonical not in ids:
            ids.append(parsed.canonical)
    return ids


def mask(text: str, mentions: list[Mention] | None = None) -> str:
    """`text` with identifiers blanked (same length), so '2012.12345' is never read as the year 2012."""
    pieces, at = [], 0
    for mention in sorted(find_mentions(text) if mentions is None else mentions, key=lambda m: m.start):
        start, end = max(mention.start, at), min(mention.end, len(text))
        if end > start:
            pieces += [text[at:start], " " * (end - start)]
            at = end
    blanked = "".join([*pieces, text[at:]])
    return _ANY_ID.sub(lambda m: " " * len(m.group(0)), blanked)


class _Brackets:
    """Whether more "(" than ")" (or "[" than "]") stand before a position, by bisection over the
    brackets' positions (found on first use), not by recounting the text before each position."""

    def __init__(self, text: str) -> None:
        self._text = text
        self._at: dict[str, list[int]] | None = None

    def open_at(self, position: int) -> bool:
        if self._at is None:
            self._at = {c: [m.start() for m in re.finditer(re.escape(c), self._text)] for c in "()[]"}
        before = {c: bisect_left(at, position) for c, at in self._at.items()}
        return before["("] > before[")"] or before["["] > before["]"]


def _int(value: str | None) -> int | None:
    return int(value) if value else None

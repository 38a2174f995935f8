"""Inquiry prompt -> structured, dated claims.

The parser reads the *shape* of an inquiry prompt, not one particular text:

- question: in the first paragraph (headings skipped), the sentence that mentions a "question"
  (e.g. "The core question remains open: does ...?"); else its first sentence ending in "?"; else
  the whole paragraph.
- claims: bullet lines (•, -, *, –, —, ·, ▪, ◦, ‣) after the first heading that mentions what was
  found ("What ... found", "Findings", "Claims", "Results") — or from the top when no such heading
  exists — and before the numbered task list. Bullets shaped like anchors, and bullets under an
  "Anchor papers" / "References" / "Sources" heading, are never claims. A bullet runs on over
  wrapped lines until a blank line, another bullet, a heading or a task item. Markdown code fences
  (``` or ~~~ up to the closing fence) and table rows ("| ... |") are neither claims nor
  continuation lines: a bullet stops before them.
- claim dates: every year expression inside a parenthetical or bracket of the bullet, e.g.
  "(2023, arXiv:2305.17493)", "(2024–2025)", "(Smith et al., 2021)". ``dated`` keeps the
  expressions as written, joined by "; " ("2024; 2026"); ``year_start``/``year_end`` are the
  earliest and latest years they name.
- citations: the arXiv IDs the citation checker reads in the bullet (tools.citations, rules in
  tools.arxiv_id: prefixes, URLs, the arXiv DOI, bare IDs where arXiv is cited), in order, canonical
  (no prefix, no version); an impossible ID such as 2313.04567 is kept, for grounding to flag.
- anchors: lines "[bullet] arXiv:ID (YEAR): label" (year optional; ':' or a dash before the label).
- tasks: items "(1) ..." / "1. ..." / "1) ..." with lettered sub-items "(a) ...", inline or on their
  own lines -> Task ids "1", "1a", "1b", ...; the parent keeps the text before its first sub-item.
- tags: the keyword vocabulary ``TAG_PATTERNS`` below, matched on word stems.
- durability: an explicit "[durable]" / "[perishable]" marker ending a bullet wins. Otherwise, when
  the prompt names "the durable claim (X)" and "the perishable one (Y)" (or quotes X and Y), each
  description marks the claim(s) it matches best: score = shared tags + shared content-word stems,
  highest score wins (score 0 marks nothing; a claim best matching both descriptions equally stays
  "unassessed").
"""

from __future__ import annotations

import re
from importlib import resources
from pathlib import Path

from agent.models import Anchor, Claim, Durability, Inquiry, Task
from tools.arxiv_id import ID_AS_WRITTEN, canonical, mask, parse
from tools.citations import extract_citations


class InquiryError(ValueError):
    """The inquiry cannot be parsed; the message is one line saying what to fix."""


# Identifiers follow tools.arxiv_id (the one home for identifier rules): what the citation checker
# reads as an arXiv citation is exactly what a claim cites, impossible IDs included (grounding flags
# them), so `2313.04567` is cited here and reported nonexistent there.
_YEAR_EXPR_RE = re.compile(r"(?<!\d)((?:19|20)\d{2})(?:\s*[–—-]\s*((?:19|20)?\d{2}))?(?!\d)")
_GROUP_RE = re.compile(r"[(\[]([^()\[\]]*)[)\]]")

_BULLET_RE = re.compile(r"^\s*[•\-*–—·▪◦‣]\s+(\S.*)$")
_TASK_RE = re.compile(r"^\s*(?:\((\d{1,2})\)|(\d{1,2})[.)])\s+(\S.*)$")
_SUBTASK_LINE_RE = re.compile(r"^\s*(?:\(([a-z])\)|([a-z])[.)])\s+(\S.*)$")
_SUBTASK_INLINE_RE = re.compile(r"\(([a-z])\)\s+")
_TASK_INLINE_RE = re.compile(r"\((\d{1,2})\)\s+")
_MD_HEADING_RE = re.compile(r"^\s*#{1,6}\s+(.*)$")
# Possessive spaces: a long run of spaces after an ID is not split every way between the two `\s*`.
_ANCHOR_RE = re.compile(
    r"^(?:[•\-*–—·▪◦‣]\s++)?(" + ID_AS_WRITTEN + r")\s*+(?:\(((?:19|20)\d{2})\))?\s*+[:–—-]\s*+(\S.*)$",
    re.IGNORECASE,
)
_FENCE_RE = re.compile(r"^(`{3,}|~{3,})")
_CLAIMS_HEADING_RE = re.compile(r"\b(found|findings?|claims?|results?)\b", re.IGNORECASE)
_REFERENCES_HEADING_RE = re.compile(r"\b(anchors?|references?|sources|bibliography|reading list)\b", re.IGNORECASE)
_MARKER_RE = re.compile(r"\s*\[(durable|perishable)\]\s*$", re.IGNORECASE)
# "the durable claim (X)", "the perishable one (Y)", 'durable finding "X"': the description follows
# the word within a few words, in parentheses or quotes. A quoted description holds no opening
# quote, so an unclosed “ ends the attempt at the next quote mark, not at the end of the text.
_DESCRIPTION_RE = {
    kind: re.compile(rf"\b{kind}\b[^()\n\"“]{{0,40}}?(?:\(([^()]+)\)|[\"“]([^\"“”]+)[\"”])", re.IGNORECASE)
    for kind in ("durable", "perishable")
}
# A prompt describes its durable and perishable claims once or twice; more descriptions than this
# (each scored against every claim) are not read, so a hostile prompt cannot make the work quadratic.
MAX_DESCRIPTIONS = 20

# Tag -> patterns matched at word starts on the lower-cased text. Broad ML themes, so that claims on
# other topics get the tags that fit them, and none when nothing fits.
TAG_PATTERNS: dict[str, tuple[str, ...]] = {
    "ratio": (r"ratios?\b", r"proportion", r"fraction", r"mix(?:es|ing|ture)?\b", r"share of\b"),
    "diversity": (r"divers", r"variety", r"varied\b", r"homogen", r"mode collapse"),
    "tails": (r"tails?\b", r"long[- ]tail", r"rare\b", r"rarer\b", r"rarest\b", r"outlier"),
    "representation": (r"representation", r"activation", r"embedding", r"internal structure", r"sparsity"),
    "quality": (r"qualit", r"filter", r"curat", r"verif"),
    "complexity": (r"complex", r"difficult"),
    "synthetic-generation": (r"synthetic", r"model[- ]generated", r"self[- ]generated", r"ai[- ]generated", r"synthes"),
    "recursion": (r"recurs", r"self[- ]consum", r"iterat", r"retrain", r"feedback loop", r"closed[- ]loop"),
    "collapse": (r"collaps", r"degenera"),
    "generalization": (r"generali[sz]", r"out[- ]of[- ]distribution", r"ood\b", r"transfer"),
    "evaluation": (r"metric", r"benchmark", r"evaluat", r"measur"),
    "scaling": (r"scal(?:e|es|ing)\b", r"scaling law", r"model size", r"parameter count"),
    "theory": (r"theor", r"provabl", r"proof", r"prove[sn]?\b", r"bound\b"),
    "alignment": (r"rlhf", r"reward", r"preference", r"dpo\b", r"alignment"),
    "distillation": (r"distill", r"teacher", r"student"),
    "in-context-learning": (r"in[- ]context", r"few[- ]shot", r"prompt"),
}
_TAG_RES = {tag: re.compile(r"\b(?:" + "|".join(p) + ")") for tag, p in TAG_PATTERNS.items()}

# Function words, and the filler verbs durability descriptions end on ("X happens", "Y is what matters").
_STOPWORDS = frozenset(
    "a an the of to in on for and or but is are was were be been being it its this that these those "
    "with by from as at not no than then so such what which who whom when where why how does do did "
    "one ones claim happens happen matters matter only just more most less very can could may might".split()
)


def find_arxiv_ids(text: str) -> list[str]:
    """arXiv IDs in ``text``, in order of first appearance, canonical (no prefix, no version): the
    well-shaped identifiers the citation checker finds there (tools.citations / tools.arxiv_id)."""
    ids: list[str] = []
    for citation in extract_citations(text):
        if citation.arxiv_id and parse(citation.arxiv_id) is not None and citation.arxiv_id not in ids:
            ids.append(citation.arxiv_id)
    return ids


def tag_text(text: str) -> list[str]:
    """Tags of ``TAG_PATTERNS`` that ``text`` mentions, in vocabulary order."""
    lowered = text.lower()
    return [tag for tag, pattern in _TAG_RES.items() if pattern.search(lowered)]


def parse_dates(text: str) -> tuple[str | None, int | None, int | None]:
    """(dated, year_start, year_end) from the year expressions inside parentheses/brackets of ``text``."""
    expressions: list[str] = []
    years: list[int] = []
    for group in _GROUP_RE.findall(text):
        for match in _YEAR_EXPR_RE.finditer(mask(group)):
            start = int(match.group(1))
            end = start
            if match.group(2):
                end = int(match.group(2)) if len(match.group(2)) == 4 else start // 100 * 100 + int(match.group(2))
            if end < start:  # "2024-23" is not a range; keep only the year
                expression, end = match.group(1), start
            else:
                expression = match.group(0)
            if expression not in expressions:
                expressions.append(expression)
            years += [start, end]
    if not years:
        return None, None, None
    return "; ".join(expressions), min(years), max(years)


def parse_date_expression(dated: str) -> tuple[int, int]:
    """(year_start, year_end) of a date as a user writes it: "2024", "2024–2025", "2023; 2026".

    Unlike a date read from prose (where "2024-23" is a year and a page), a range the user writes
    must run forwards: "2025-2023" is refused rather than read as 2025.
    """
    shown = dated if len(dated) <= 60 else dated[:59] + "…"
    for match in _YEAR_EXPR_RE.finditer(mask(dated)):
        if match.group(2):
            start, end = int(match.group(1)), int(match.group(2))
            end = end if len(match.group(2)) == 4 else start // 100 * 100 + end
            if end < start:
                raise InquiryError(f"date range {match.group(0)!r} runs backwards: write the earlier year first, e.g. {end}-{start}")
    _, start, end = parse_dates(f"({dated})")
    if start is None or end is None:
        raise InquiryError(f"date {shown!r} names no year: write it as 2024 or 2024-2025")
    return start, end


def claim_from_text(text: str, claim_id: str, origin: str = "inquiry") -> Claim:
    """One claim from its sentence(s): dates, citations, tags and an explicit durability marker."""
    text = " ".join(text.split())
    durability: Durability = "unassessed"
    marker = _MARKER_RE.search(text)
    if marker:
        durability = marker.group(1).lower()  # type: ignore[assignment]
        text = text[: marker.start()]
    dated, year_start, year_end = parse_dates(text)
    return Claim(
        id=claim_id,
        text=text,
        dated=dated,
        year_start=year_start,
        year_end=year_end,
        citations=find_arxiv_ids(text),
        tags=tag_text(text),
        durability=durability,
        origin=origin,  # type: ignore[arg-type]
    )


def parse_inquiry(text: str) -> Inquiry:
    """Parse an inquiry prompt of the default's shape; raise InquiryError when it holds no claims."""
    if "\x00" in text:
        raise InquiryError("the inquiry looks like binary data: give a UTF-8 text/markdown file")
    if not text.strip():
        raise InquiryError("the inquiry is empty: write a question, then the dated claims as bullets")
    lines = text.splitlines()
    kinds = _line_kinds(lines)

    task_start = next((i for i, kind in enumerate(kinds) if kind == "task"), len(lines))
    claims_from = next(
        (i + 1 for i, kind in enumerate(kinds[:task_start]) if kind == "heading" and _CLAIMS_HEADING_RE.search(lines[i])),
        0,
    )
    claim_texts, in_references = [], False
    for i in range(claims_from, task_start):
        if kinds[i] == "heading":
            in_references = bool(_REFERENCES_HEADING_RE.search(lines[i]))
        elif kinds[i] == "bullet" and not in_references:
            claim_texts.append(_run_on(lines, kinds, i))
    if not claim_texts:
        raise InquiryError(
            "no claims found: list each dated claim as a bullet line ('• claim (2023, arXiv:2305.17493)')"
            " under a heading such as 'What the library found:'"
        )
    claims = [claim_from_text(body, f"C{n}") for n, body in enumerate(claim_texts, start=1)]
    _mark_durability(claims, text)
    return Inquiry(
        title=_title(lines, kinds),
        question=_question(lines, kinds),
        claims=claims,
        anchors=[_anchor(lines[i]) for i, kind in enumerate(kinds) if kind == "anchor"],
        tasks=[task for i, kind in enumerate(kinds) if kind == "task" for task in _tasks(lines, kinds, i)],
    )


def load_inquiry(path: Path) -> Inquiry:
    """Read and parse an inquiry file; every failure is an InquiryError saying what to fix."""
    try:
        raw = Path(path).read_bytes()
    except OSError as error:
        raise InquiryError(f"cannot read inquiry {path}: {error.strerror or error}; check the path") from error
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        raise InquiryError(f"inquiry {path} is not UTF-8 text (byte {error.start}); save it as UTF-8") from error
    try:
        return parse_inquiry(text)
    except InquiryError as error:
        raise InquiryError(f"{path}: {error}") from error


def default_inquiry_text() -> str:
    """The shipped default inquiry, prompts/inquiry.md."""
    return resources.files("prompts").joinpath("inquiry.md").read_text(encoding="utf-8")


def load_default_inquiry() -> Inquiry:
    return parse_inquiry(default_inquiry_text())


def _line_kinds(lines: list[str]) -> list[str]:
    """Each line's kind; lines of a Markdown code fence (its fences included) are "code", whatever
    they hold, up to the closing fence (the same character, at least as many) or the end."""
    kinds: list[str] = []
    fence: str | None = None
    for line in lines:
        opening = _FENCE_RE.match(line.strip())
        if fence is not None:
            kinds.append("code")
            if opening and opening.group(1)[0] == fence[0] and len(opening.group(1)) >= len(fence) and not line.strip().strip(fence[0]):
                fence = None
        elif opening:
            kinds.append("code")
            fence = opening.group(1)
        else:
            kinds.append(_line_kind(line))
    return kinds


def _line_kind(line: str) -> str:
    stripped = line.strip()
    if not stripped:
        return "blank"
    if _ANCHOR_RE.match(stripped):
        return "anchor"
    if _MD_HEADING_RE.match(stripped):
        return "heading"
    if stripped.startswith("|"):
        return "table"  # a Markdown table row: its cells are not a claim's wrapped text
    if _BULLET_RE.match(stripped):
        return "bullet"
    if _TASK_RE.match(stripped):
        return "task"
    if _SUBTASK_LINE_RE.match(stripped):
        return "subtask"
    if stripped.endswith(":") and len(stripped) <= 200:
        return "heading"
    return "text"


def _run_on(lines: list[str], kinds: list[str], start: int, extra: tuple[str, ...] = ()) -> str:
    """The item starting at line ``start`` joined with its wrapped continuation lines."""
    match = _BULLET_RE.match(lines[start]) if kinds[start] == "bullet" else None
    parts = [match.group(1) if match else lines[start].strip()]
    for i in range(start + 1, len(lines)):
        if kinds[i] == "text":
            parts.append(lines[i].strip())
        elif kinds[i] in extra:
            sub = _SUBTASK_LINE_RE.match(lines[i].strip())
            assert sub is not None
            parts.append(f"({sub.group(1) or sub.group(2)}) {sub.group(3)}")
        else:
            break
    return " ".join(" ".join(parts).split())


_AUDITING = re.compile(r"\baudit(?:ing|s)?\s+(?:what is known about\s+|claims\s+)?(?P<topic>(?:about|on|of)\s+[^.?!]+)", re.I)


def _title(lines: list[str], kinds: list[str]) -> str:
    """The inquiry's own name for itself: its first heading, else what its opening sentence says it
    audits ("... auditing claims about X." -> "Claims about X"), else its question."""
    for line, kind in zip(lines, kinds):
        if kind == "heading":
            return line.strip().lstrip("#").strip()
        if kind == "text":
            first = re.split(r"(?<=[.?!])\s", line.strip(), maxsplit=1)[0]
            audited = _AUDITING.search(first)
            if audited:
                return "Claims " + " ".join(audited.group("topic").split()).rstrip(".:")
            break
    return ""


def _question(lines: list[str], kinds: list[str]) -> str:
    intro: list[str] = []
    for line, kind in zip(lines, kinds):
        if kind == "text":
            intro.append(line.strip())
        elif intro or kind not in ("blank", "heading", "code", "table"):
            break
    paragraph = " ".join(" ".join(intro).split())
    sentences = re.split(r"(?<=[.?!])\s+(?=[A-Z*\"“(])", paragraph)
    for sentence in sentences:
        if re.search(r"\bquestions?\b", sentence, re.IGNORECASE):
            return sentence
    return next((s for s in sentences if s.endswith("?")), paragraph)


def _anchor(line: str) -> Anchor:
    match = _ANCHOR_RE.match(line.strip())
    assert match is not None
    year = int(match.group(2)) if match.group(2) else None
    return Anchor(arxiv_id=canonical(match.group(1)), year=year, label=match.group(3).strip())


def _tasks(lines: list[str], kinds: list[str], start: int) -> list[Task]:
    """The task item at line ``start``, items numbered inline after it ("(2) ..."), and sub-items."""
    match = _TASK_RE.match(lines[start].strip())
    assert match is not None
    number = match.group(1) or match.group(2)
    body = _TASK_RE.sub(r"\3", _run_on(lines, kinds, start, extra=("subtask",)), count=1)
    lead, *inline_items = _split_sequence(body, _TASK_INLINE_RE, str(int(number) + 1))
    tasks: list[Task] = []
    for task_number, text in [(number, lead[1]), *inline_items]:
        (_, task_text), *subtasks = _split_sequence(text, _SUBTASK_INLINE_RE, "a")
        tasks.append(Task(id=task_number, text=task_text))
        tasks += [Task(id=f"{task_number}{letter}", text=sub_text) for letter, sub_text in subtasks]
    return tasks


def _split_sequence(text: str, marker: re.Pattern[str], first: str) -> list[tuple[str, str]]:
    """Split ``text`` at markers that follow in sequence from ``first`` ("a", "b", ... or "2", "3", ...).

    Returns [("", text before the first marker), (label, item text), ...]; an out-of-sequence
    marker such as a lone "(c)" stays part of the text.
    """
    cuts, expected = [], first
    for found in marker.finditer(text):
        if found.group(1) == expected:
            cuts.append(found)
            expected = str(int(expected) + 1) if expected.isdigit() else chr(ord(expected) + 1)
    pieces = [("", text[: cuts[0].start()] if cuts else text)]
    for k, cut in enumerate(cuts):
        end = cuts[k + 1].start() if k + 1 < len(cuts) else len(text)
        pieces.append((cut.group(1), text[cut.end() : end]))
    return [(label, piece.strip()) for label, piece in pieces]


def _stems(text: str) -> set[str]:
    words = re.findall(r"[a-z]+", text.lower())
    return {re.sub(r"(?:ing|ed|es|s)$", "", w) for w in words if w not in _STOPWORDS and len(w) > 2}


def _mark_durability(claims: list[Claim], text: str) -> None:
    """Mark the claims the prompt's "durable claim (X)" / "perishable one (Y)" descriptions match best."""
    # claim id -> durability -> best score among the descriptions that picked this claim
    picked: dict[str, dict[str, int]] = {}
    claim_words = {c.id: (set(c.tags), _stems(c.text)) for c in claims}  # once, not per description
    for durability, pattern in _DESCRIPTION_RE.items():
        for number, found in enumerate(pattern.finditer(text)):
            if number == MAX_DESCRIPTIONS:
                break
            description = found.group(1) or found.group(2)
            tags, stems = set(tag_text(description)), _stems(description)
            scores = {cid: len(tags & claim_tags) + len(stems & claim_stems) for cid, (claim_tags, claim_stems) in claim_words.items()}
            top = max(scores.values())
            for claim_id, score in scores.items():
                if score == top > 0:
                    by_kind = picked.setdefault(claim_id, {})
                    by_kind[durability] = max(score, by_kind.get(durability, 0))
    for claim in claims:
        by_kind = picked.get(claim.id)
        if claim.durability != "unassessed" or not by_kind:
            continue
        ranked = sorted(by_kind.items(), key=lambda item: item[1], reverse=True)
        if len(ranked) == 1 or ranked[0][1] > ranked[1][1]:
            claim.durability = ranked[0][0]  # type: ignore[assignment]

"""The user's own claims: a JSON-lines file of Claim records, origin "user", ids U1, U2, ...

Each audit has its own store (agent/projects.py says which). A claim is the same claim when its text
is, compared by ``claim_key`` (case-folded, whitespace collapsed), so adding or importing it again
into an audit that holds it already, in its store or in its inquiry, adds nothing.

Nothing is lost silently: `remove` moves a claim to a sibling archive ("claims.removed.jsonl"), and
ids are numbered past every id in the store and the archive, so a removed id is never reused.
Claims files for `import`/`validate` are .jsonl (one Claim object per line) or .json (a list of
Claim objects, or an object with a "claims" list such as a dumped Inquiry); any other file is read as
an inquiry prompt (agent/inquiry.py).

What a user gives is checked before it is stored (`user_claim`): an arXiv ID no paper can have
(tools.arxiv_id.check_shape, e.g. 2313.04567 with its month 13), a date after today or a range that
runs backwards, and an empty tag are refused, each with one line saying what to write instead. A
claims file is flat JSON records; nesting deeper than `MAX_JSON_DEPTH` is refused as such rather
than left to blow Python's recursion limit.

Writes replace the file in one step (simulations.files.atomic_write): an interrupted `add`, `import` or
`remove` leaves the store as it was.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Sequence
from datetime import date
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from agent.inquiry import claim_from_text, find_arxiv_ids, load_inquiry, parse_date_expression
from agent.models import Claim
from tools.arxiv_id import check_shape
from simulations.files import atomic_write

CLAIMS_FILE_SUFFIXES = (".jsonl", ".json")
# At most 18 digits: an id such as "U" + 5,000 digits is no user id (and no int Python converts).
_USER_ID_RE = re.compile(r"^U([0-9]{1,18})$")
# A Claim record nests two levels (a list of claims, a claim's lists); a dumped Inquiry a few more.
MAX_JSON_DEPTH = 32


class ClaimsStoreError(ValueError):
    """A claims store or claims file cannot be used; the message is one line saying what to fix."""


def user_claim(
    text: str,
    claim_id: str,
    *,
    dated: str | None = None,
    tags: list[str] | None = None,
    durability: str | None = None,
    citations: list[str] | None = None,
    today: date | None = None,
) -> Claim:
    """A user claim: what is not given explicitly is read from the text, as the inquiry parser does.

    Refused (ClaimsStoreError, one line): an empty text or tag, a date after `today` (default: the
    system date) or a range that runs backwards, and a cited arXiv ID no paper can have.
    """
    today = today or date.today()
    if not text.strip():
        raise ClaimsStoreError("the claim text is empty: write the claim as one or more sentences")
    fields = claim_from_text(text, claim_id, origin="user").model_dump()
    if dated is not None:
        try:
            fields["year_start"], fields["year_end"] = parse_date_expression(dated)
        except ValueError as error:
            raise ClaimsStoreError(str(error)) from error
        fields["dated"] = " ".join(dated.split())
    if fields["year_end"] is not None and fields["year_end"] > today.year:
        raise ClaimsStoreError(
            f"the claim is dated {_shown(fields['dated'])}, after today ({today.isoformat()}): date it by when it was"
            " claimed, e.g. --date 2024"
        )
    if tags is not None:
        if any(not tag.strip() for tag in tags):
            raise ClaimsStoreError("a tag is empty: give each tag a word, e.g. --tag ratio")
        fields["tags"] = list(dict.fromkeys(tag.strip().lower() for tag in tags))
    if durability is not None:
        fields["durability"] = durability
    if citations is not None:
        normalised = [find_arxiv_ids(citation) for citation in citations]
        bad = [citation for citation, ids in zip(citations, normalised) if len(ids) != 1]
        if bad:
            raise ClaimsStoreError(f"citation {_shown(bad[0])} is not one arXiv ID: write it as 2305.17493 or arXiv:2305.17493")
        fields["citations"] = list(dict.fromkeys(ids[0] for ids in normalised))
    for arxiv_id in fields["citations"]:
        # A user adding a claim wants it checked, so an ID no paper can have is a typo to fix now
        # (an inquiry keeps one for grounding to report; see agent/inquiry.py).
        if (shape := check_shape(arxiv_id, today)) is not None:
            raise ClaimsStoreError(f"arXiv ID {_shown(arxiv_id)} is refused: {shape.reason}; check the number")
    try:
        return Claim.model_validate(fields)
    except ValidationError as error:
        raise ClaimsStoreError(_first_error(error)) from error


def read_claims_file(path: Path) -> list[Claim]:
    """Claims from a .jsonl/.json claims file, or from an inquiry prompt; ids as given or C1..Cn."""
    path = Path(path)
    if path.suffix.lower() not in CLAIMS_FILE_SUFFIXES:
        try:
            return load_inquiry(path).claims
        except ValueError as error:
            raise ClaimsStoreError(str(error)) from error
    try:
        text = path.read_text(encoding="utf-8-sig")
    except OSError as error:
        raise ClaimsStoreError(f"cannot read {path}: {error.strerror or error}; check the path") from error
    except UnicodeDecodeError as error:
        raise ClaimsStoreError(f"{path} is not UTF-8 text; save it as UTF-8") from error
    records = _jsonl_records(path, text) if path.suffix.lower() == ".jsonl" else _json_records(path, text)
    claims = [_claim_from_record(path, where, record, f"C{n}") for n, (where, record) in enumerate(records, start=1)]
    if not claims:
        raise ClaimsStoreError(f"{path} holds no claims: write one JSON object with a \"text\" field per line")
    return claims


def load_user_claims(path: Path) -> list[Claim]:
    """The user claims an audit adds to the inquiry's: the store, or any claims file / inquiry.

    A missing or empty claims file (a store whose claims were all removed) means no user claims. Claims keep their ids when they are all distinct "U<n>" ids
    (as in the store); otherwise they are numbered U1..Un in order, so they never clash with the
    inquiry's C ids.
    """
    path = Path(path)
    if not path.exists() or (path.suffix.lower() in CLAIMS_FILE_SUFFIXES and not path.read_bytes().strip()):
        return []
    claims = read_claims_file(path)
    ids = [claim.id for claim in claims]
    keep_ids = len(set(ids)) == len(ids) and all(_USER_ID_RE.match(claim_id) for claim_id in ids)
    return [
        claim.model_copy(update={"origin": "user", "id": claim.id if keep_ids else f"U{n}"})
        for n, claim in enumerate(claims, start=1)
    ]


def claims_file_warnings(claims: list[Claim]) -> list[str]:
    """What an auditor would want fixed but can work around: undated, uncited or duplicate claims."""
    warnings: list[str] = []
    seen: dict[str, str] = {}
    for claim in claims:
        if claim.dated is None:
            warnings.append(f"{claim.id} has no date: add the year it was claimed, e.g. '(2024, arXiv:...)'")
        if not claim.citations:
            warnings.append(f"{claim.id} cites no arXiv ID: it can only be checked by literature search")
        key = claim_key(claim.text)
        if key in seen:
            warnings.append(f"{claim.id} repeats {seen[key]}")
        seen.setdefault(key, claim.id)
    uses = Counter(claim.id for claim in claims)  # one pass: ids.count() per id was quadratic
    warnings += [f"id {claim_id} is used more than once" for claim_id, count in uses.items() if count > 1]
    return warnings


class ClaimsStore:
    """The JSON-lines store of one audit's user claims at ``path``.

    ``known`` claims (the audit's inquiry's) count as already there when adding or importing.
    """

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.removed_path = self.path.with_name(f"{self.path.stem}.removed.jsonl")

    def list_claims(self) -> list[Claim]:
        return self._read(self.path)

    def add(
        self,
        text: str,
        *,
        dated: str | None = None,
        tags: list[str] | None = None,
        durability: str | None = None,
        known: Sequence[Claim] = (),
    ) -> Claim:
        """Store a new claim; refuses a claim that is already there."""
        claim = user_claim(text, self._next_id(), dated=dated, tags=tags, durability=durability)
        present = self.present(known).get(claim_key(claim.text))
        if present:
            raise ClaimsStoreError(f"this claim is already in this audit as {present}")
        self._append(self.path, [claim])
        return claim

    def present(self, known: Sequence[Claim] = ()) -> dict[str, str]:
        """``claim_key`` -> id of every claim already there: ``known`` ones first, then the stored ones."""
        return {claim_key(c.text): c.id for c in reversed([*known, *self.list_claims()])}

    def remove(self, claim_id: str) -> Claim:
        """Move a claim to the archive file; its id is not given out again."""
        claims = self.list_claims()
        match = next((c for c in claims if c.id.lower() == claim_id.strip().lower()), None)
        if match is None:
            known = ", ".join(c.id for c in claims) or "none"
            raise ClaimsStoreError(f"no user claim {claim_id!r} (stored: {known}); see `claims list`")
        self._append(self.removed_path, [match])
        self._rewrite([c for c in claims if c is not match])
        return match

    def import_claims(self, claims: list[Claim], known: Sequence[Claim] = ()) -> tuple[list[Claim], list[tuple[Claim, str]]]:
        """Store copies of ``claims`` under new user ids, once each: importing again adds nothing.

        Returns (the added claims, each claim already there with the id it is there as).
        """
        present = self.present(known)
        first = self._next_number()
        added: list[Claim] = []
        already: list[tuple[Claim, str]] = []
        for claim in claims:
            key = claim_key(claim.text)
            if key in present:
                already.append((claim, present[key]))
                continue
            added.append(claim.model_copy(update={"id": f"U{first + len(added)}", "origin": "user"}))
            present[key] = added[-1].id
        self._append(self.path, added)
        return added, already

    def _next_id(self) -> str:
        return f"U{self._next_number()}"

    def _next_number(self) -> int:
        numbers = [int(m.group(1)) for c in self.list_claims() + self._read(self.removed_path) if (m := _USER_ID_RE.match(c.id))]
        return max(numbers, default=0) + 1

    def _read(self, path: Path) -> list[Claim]:
        if not path.exists():
            return []
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as error:
            raise ClaimsStoreError(f"cannot read the claims store {path}: {error}") from error
        claims = []
        for where, record in _jsonl_records(path, text):
            try:
                claims.append(Claim.model_validate(record))
            except ValidationError as error:
                raise ClaimsStoreError(f"{path}:{where}: {_first_error(error)}; fix or delete that line") from error
        return claims

    def _append(self, path: Path, claims: list[Claim]) -> None:
        """Add records to `path` by replacing it whole (simulations.files.atomic_write): an append cut
        short would leave half a record, which makes the whole store unreadable."""
        if not claims:
            return
        old = path.read_bytes() if path.exists() else b""
        # A hand-edited store may lack its final newline; never glue a record onto the last line.
        if old and not old.endswith(b"\n"):
            old += b"\n"
        atomic_write(path, old + "".join(claim.model_dump_json() + "\n" for claim in claims).encode("utf-8"))

    def _rewrite(self, claims: list[Claim]) -> None:
        """Replace the store in one step, so that an interrupted write leaves the old file intact."""
        atomic_write(self.path, "".join(claim.model_dump_json() + "\n" for claim in claims))


def claim_key(text: str) -> str:
    """What makes two claims the same claim: their text, case-folded, whitespace collapsed."""
    return " ".join(text.casefold().split())


def _jsonl_records(path: Path, text: str) -> list[tuple[str, Any]]:
    records = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            records.append((str(number), _loads(line)))
        except json.JSONDecodeError as error:
            raise ClaimsStoreError(f"{path}:{number}: not JSON ({error.msg}); write one JSON object per line") from error
        except ValueError as error:
            raise ClaimsStoreError(f"{path}:{number}: {error}") from error
    return records


def _json_records(path: Path, text: str) -> list[tuple[str, Any]]:
    try:
        data = _loads(text)
    except json.JSONDecodeError as error:
        raise ClaimsStoreError(f"{path}:{error.lineno}: not JSON ({error.msg})") from error
    except ValueError as error:
        raise ClaimsStoreError(f"{path}: {error}") from error
    if isinstance(data, dict) and isinstance(data.get("claims"), list):
        data = data["claims"]
    if not isinstance(data, list):
        raise ClaimsStoreError(f"{path}: expected a list of claims or an object with a \"claims\" list")
    return [(f"claim {n}", record) for n, record in enumerate(data, start=1)]


def _loads(text: str) -> Any:
    """json.loads, with the ways it fails on hostile input turned into ValueErrors that say so: a
    number of more than 4,300 digits (Python refuses to convert it) and nesting too deep to parse
    or to use (RecursionError)."""
    try:
        data = json.loads(text)
    except RecursionError:
        raise ValueError(f"nested deeper than {MAX_JSON_DEPTH} levels; a claims file holds flat records") from None
    except json.JSONDecodeError:
        raise
    except ValueError as error:  # int conversion limit
        raise ValueError(f"holds a number too long to read ({str(error).split(':')[0]}); write numbers as numbers, ids as strings") from None
    if _depth(data) > MAX_JSON_DEPTH:
        raise ValueError(f"nested deeper than {MAX_JSON_DEPTH} levels; a claims file holds flat records")
    return data


def _depth(data: Any) -> int:
    """How deeply lists and objects nest in `data`, without recursion (so it cannot overflow)."""
    deepest, stack = 0, [(data, 1)]
    while stack:
        value, level = stack.pop()
        if isinstance(value, (list, dict)):
            deepest = max(deepest, level)
            if level > MAX_JSON_DEPTH:
                break
            stack.extend((item, level + 1) for item in (value.values() if isinstance(value, dict) else value))
    return deepest


def _shown(value: Any, limit: int = 60) -> str:
    """A value as a one-line error message quotes it: its repr (no raw newline), cut to `limit`
    characters, never a megabyte echoed."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _claim_from_record(path: Path, where: str, record: Any, default_id: str) -> Claim:
    """A Claim from one JSON record: "text" is required; what is missing is read from the text."""
    if not isinstance(record, dict) or not isinstance(record.get("text"), str):
        raise ClaimsStoreError(f"{path}:{where}: each claim needs a \"text\" string, e.g. {{\"text\": \"...\"}}")
    unknown = sorted(set(record) - set(Claim.model_fields))
    if unknown:
        raise ClaimsStoreError(f"{path}:{where}: unknown field {_shown(unknown[0])}; allowed: {', '.join(Claim.model_fields)}")
    for field, expected in (("dated", str), ("durability", str), ("tags", list), ("citations", list)):
        value = record.get(field)
        if value is not None and not isinstance(value, expected):
            raise ClaimsStoreError(f"{path}:{where}: {field!r} must be a {expected.__name__}, got {_shown(value)}")
    if isinstance(record.get("id"), bool) or (record.get("id") is not None and not isinstance(record["id"], (str, int))):
        raise ClaimsStoreError(f"{path}:{where}: \"id\" must be a string such as \"C1\", got {_shown(record['id'])}")
    if record.get("dated") is None and isinstance(record.get("year_start"), int):
        start, end = record["year_start"], record.get("year_end") or record["year_start"]
        record = record | {"dated": str(start) if end == start else f"{start}–{end}"}
    if any(not isinstance(item, str) for field in ("tags", "citations") for item in record.get(field) or []):
        raise ClaimsStoreError(f"{path}:{where}: \"tags\" and \"citations\" must be lists of strings")
    try:
        claim = user_claim(
            record["text"],
            str(record.get("id") or default_id),
            dated=record.get("dated"),
            tags=record.get("tags"),
            durability=record.get("durability"),
            citations=record.get("citations"),
        )
        return Claim.model_validate(claim.model_dump() | {"origin": record.get("origin", "user")})
    except ValidationError as error:
        raise ClaimsStoreError(f"{path}:{where}: {_first_error(error)}") from error
    except ClaimsStoreError as error:
        raise ClaimsStoreError(f"{path}:{where}: {error}") from error


def _first_error(error: ValidationError) -> str:
    first = error.errors()[0]
    field = ".".join(str(part) for part in first["loc"]) or "record"
    return f"{field}: {first['msg']}"

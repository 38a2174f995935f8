"""Which audit a command works on: an inquiry and the claims registry that belongs to it.

Claims belong to an audit, so that claims added for one inquiry never join another's runs:

- a *project* (`collapse-audit init DIR`) is a directory holding ``collapse-audit.toml``, which names
  its inquiry file, its claims registry and its runs directory (paths relative to the project);
- any other inquiry file has a registry in the data dir keyed by its resolved path,
  ``$COLLAPSE_AUDIT_HOME/audits/<stem>-<hash>/claims.jsonl``; the packaged default inquiry's is
  ``audits/default/claims.jsonl``.

A command without ``--inquiry`` works on the project found by walking up from the working directory
(as git finds its repository), else on the default inquiry's audit. An inquiry file belongs to a
project when the nearest project at or above its directory names it; a run stores only its inquiry
path, so a resumed run finds the same registry from any working directory.

The single registry of earlier versions (``$COLLAPSE_AUDIT_HOME/claims.jsonl`` and its removal
archive) is moved, ids unchanged, to the default inquiry's registry the first time that is used.
"""

from __future__ import annotations

import hashlib
import os
import re
import tomllib
from dataclasses import dataclass
from pathlib import Path

from agent.claims_store import ClaimsStore, load_user_claims, read_claims_file
from agent.config import Settings
from agent.inquiry import default_inquiry_text, load_default_inquiry, load_inquiry
from agent.models import Inquiry
from agent.state import RunConfig

PROJECT_FILE = "collapse-audit.toml"
DEFAULT_AUDIT_KEY = "default"
# What init names the project's files; a project file may name others (the inquiry inside the project).
PROJECT_NAMES = {"inquiry": "inquiry.md", "claims": "claims.jsonl", "runs": "runs"}


class AuditError(ValueError):
    """A project or an audit's inquiry cannot be used; the message is one line saying what to fix."""


@dataclass(frozen=True)
class Project:
    directory: Path
    inquiry_path: Path
    claims_path: Path
    runs_dir: Path


@dataclass(frozen=True)
class Audit:
    """One audit: the inquiry it audits and the registry of claims its runs add to the inquiry's."""

    inquiry_path: Path | None  # None: the packaged default inquiry
    claims_path: Path
    project: Project | None = None
    notice: str | None = None  # one line the user should see once, e.g. that a legacy registry moved

    @property
    def store(self) -> ClaimsStore:
        return ClaimsStore(self.claims_path)

    def load_inquiry(self) -> Inquiry:
        return load_inquiry(self.inquiry_path) if self.inquiry_path else load_default_inquiry()

    def describe(self) -> str:
        if self.project:
            return f"project {self.project.directory} (inquiry {self.project.inquiry_path.name})"
        if self.inquiry_path:
            return f"inquiry {self.inquiry_path}"
        return "the default inquiry (packaged prompts/inquiry.md)"


def current_audit(inquiry: Path | None) -> Audit:
    """The audit a command works on: ``--inquiry``'s, else the project around the working directory,
    else the default inquiry's."""
    if inquiry is not None:
        return audit_of_inquiry(inquiry)
    directory = find_project(Path.cwd())
    return project_audit(load_project(directory)) if directory else audit_of_inquiry(None)


def audit_of_inquiry(inquiry: Path | None) -> Audit:
    """The audit an inquiry file belongs to: its project's, else its own registry in the data dir."""
    settings = Settings()
    if inquiry is None:
        return _default_audit(settings)
    path = Path(inquiry).resolve()
    if not path.is_file():
        why = "it is a directory; give an inquiry file" if path.is_dir() else "no such file; check the path"
        raise AuditError(f"cannot read inquiry {inquiry}: {why}")
    directory = find_project(path.parent)
    if directory:
        project = load_project(directory)
        if project.inquiry_path == path:
            return project_audit(project)
    return Audit(path, settings.audits_dir / _inquiry_key(path) / "claims.jsonl")


def inquiry_for_run(run: RunConfig) -> Inquiry:
    """A run's inquiry with the user's claims appended: ``--claims``' file, else its audit's registry.
    A recorded run and a replay read the inquiry and claims recorded when the run started (agent/replay.py)."""
    from agent.replay import session_for

    session = session_for(run.run_id)
    if session is not None:
        return session.inquiry.model_copy(deep=True)
    audit = audit_of_inquiry(run.inquiry_path)
    inquiry = audit.load_inquiry()
    extra = read_claims_file(run.claims_path) if run.claims_path else load_user_claims(audit.claims_path)
    return inquiry.model_copy(update={"claims": inquiry.claims + extra})


def project_audit(project: Project) -> Audit:
    return Audit(project.inquiry_path, project.claims_path, project)


def find_project(start: Path) -> Path | None:
    """The nearest directory at or above ``start`` that holds a project file."""
    start = start.resolve()
    return next((d for d in (start, *start.parents) if (d / PROJECT_FILE).is_file()), None)


def load_project(directory: Path) -> Project:
    file = directory / PROJECT_FILE
    try:
        data = tomllib.loads(file.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as error:
        raise AuditError(f"cannot read the project file {file}: {error}") from error
    except tomllib.TOMLDecodeError as error:
        raise AuditError(f"{file} is not valid TOML ({error}); fix it, or run `collapse-audit init` elsewhere") from error
    for key, example in PROJECT_NAMES.items():
        if not isinstance(data.get(key), str) or not data[key].strip():
            raise AuditError(f"{file}: {key!r} must be a path relative to the project, e.g. {key} = \"{example}\"")
    inquiry, claims, runs = ((directory / data[key]).resolve() for key in PROJECT_NAMES)
    # A run records only its inquiry path and finds the project by walking up from it (module docstring).
    if not inquiry.is_relative_to(directory.resolve()):
        raise AuditError(f"{file}: the inquiry {data['inquiry']!r} lies outside the project; copy it into {directory}")
    return Project(directory.resolve(), inquiry, claims, runs)


def init_project(directory: Path, inquiry: Path | None) -> tuple[Project, bool]:
    """Make a project in ``directory``; returns (the project, whether it was created now).

    An existing project is returned untouched; an existing file that init would write is an error,
    never overwritten. The inquiry is copied in (the packaged default when none is given), so the
    project holds everything its audits read.
    """
    if directory.exists() and not directory.is_dir():
        raise AuditError(f"{directory} is a file; give a directory for the project")
    if (directory / PROJECT_FILE).is_file():
        return load_project(directory), False
    if inquiry is not None:
        load_inquiry(inquiry)  # refuse an unusable inquiry before writing anything
        # The copy keeps a plain suffix (.md, .txt), so its name needs no quoting in the project file.
        suffix = inquiry.suffix.lower() if re.fullmatch(r"\.[a-z0-9]+", inquiry.suffix.lower()) else ".md"
        text, name = inquiry.read_bytes(), f"inquiry{suffix}"
    else:
        text, name = default_inquiry_text().encode("utf-8"), PROJECT_NAMES["inquiry"]
    claims, runs = directory / PROJECT_NAMES["claims"], directory / PROJECT_NAMES["runs"]
    taken = [path for path in (directory / name, claims) if path.exists()] + ([runs] if runs.is_file() else [])
    if taken:
        raise AuditError(f"{taken[0]} already exists and init never overwrites: move it, or choose another directory")
    try:
        directory.mkdir(parents=True, exist_ok=True)
        (directory / name).write_bytes(text)
        claims.touch()
        runs.mkdir(exist_ok=True)
        # Written last, so that an interrupted init leaves no project pointing at missing files.
        with (directory / PROJECT_FILE).open("x", encoding="utf-8") as out:
            out.write(
                "# An audit project (collapse-audit init). Paths are relative to this directory.\n"
                f'inquiry = "{name}"  # the inquiry prompt this project audits\n'
                f'claims = "{claims.name}"  # this audit\'s claims: `collapse-audit claims add|import ...`\n'
                f'runs = "{runs.name}"  # where `collapse-audit run` writes its reports\n'
            )
    except OSError as error:
        raise AuditError(f"cannot write the project in {directory}: {error.strerror or error}; choose a writable directory") from error
    return load_project(directory), True


def _default_audit(settings: Settings) -> Audit:
    store = ClaimsStore(settings.audits_dir / DEFAULT_AUDIT_KEY / "claims.jsonl")
    return Audit(None, store.path, notice=_migrate_legacy(settings, store))


def _migrate_legacy(settings: Settings, target: ClaimsStore) -> str | None:
    """Move the pre-audit registry (store and removal archive) to the default audit, ids unchanged."""
    legacy = ClaimsStore(settings.legacy_claims_path)
    moves = [(old, new) for old, new in ((legacy.removed_path, target.removed_path), (legacy.path, target.path)) if old.exists()]
    if not moves:
        return None
    if target.path.exists() or target.removed_path.exists():
        # Merging could give two claims one id; leave both files for the user to reconcile.
        return (f"{legacy.path} predates audits and was left in place because {target.path} exists: "
                f"`collapse-audit claims import {legacy.path}` merges it, then delete it")
    target.path.parent.mkdir(parents=True, exist_ok=True)
    for old, new in moves:  # the archive first: a second try still moves the store
        os.replace(old, new)
    return f"moved your claims from {legacy.path} to the default inquiry's audit, {target.path} (ids unchanged)"


def _inquiry_key(path: Path) -> str:
    """A readable, stable directory name for an inquiry file's registry: its stem and a path hash."""
    slug = re.sub(r"[^a-z0-9]+", "-", path.stem.lower()).strip("-")[:40] or "inquiry"
    return f"{slug}-{hashlib.sha256(str(path).encode()).hexdigest()[:12]}"

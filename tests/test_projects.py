"""Audit projects: claims belong to an audit (a project, or an inquiry file's registry), `init` never
overwrites, import is idempotent, a legacy registry migrates, and a run reads its own audit's claims."""

from __future__ import annotations

import json
import tomllib
from datetime import date
from pathlib import Path

import pytest
from typer.testing import CliRunner

from agent.claims_store import ClaimsStore
from agent.cli import app
from agent.inquiry import default_inquiry_text
from agent.projects import PROJECT_FILE, inquiry_for_run
from agent.state import RunConfig
from tests.subprocess_cli import run_cli

INQUIRIES = Path(__file__).parent / "data" / "inquiries"


@pytest.fixture
def home(tmp_path, monkeypatch) -> Path:
    monkeypatch.setenv("COLLAPSE_AUDIT_HOME", str(tmp_path / "home"))
    (tmp_path / "elsewhere").mkdir()
    monkeypatch.chdir(tmp_path / "elsewhere")  # no project around: the default inquiry's audit
    return tmp_path / "home"


def cli(*args: str):
    return CliRunner().invoke(app, [str(arg) for arg in args])


def user_claims(*args: str) -> tuple[list[str], str]:
    """The user claims `claims list` shows (their texts) and the audit it says it shows."""
    result = cli("claims", "list", "--format", "json", *args)
    assert result.exit_code == 0, result.output
    return [c["text"] for c in json.loads(result.stdout) if c["origin"] == "user"], result.stderr


def files(directory: Path) -> dict[str, bytes]:
    return {str(p.relative_to(directory)): p.read_bytes() for p in sorted(directory.rglob("*")) if p.is_file()}


def test_init_makes_the_layout_and_never_overwrites(home, tmp_path, monkeypatch):
    result = cli("init", tmp_path / "proj")
    assert result.exit_code == 0, result.output
    project = tmp_path / "proj"
    assert tomllib.loads((project / PROJECT_FILE).read_text()) == {"inquiry": "inquiry.md", "claims": "claims.jsonl", "runs": "runs"}
    assert (project / "inquiry.md").read_text() == default_inquiry_text()
    assert (project / "claims.jsonl").read_text() == "" and (project / "runs").is_dir()

    monkeypatch.chdir(project)
    assert cli("claims", "add", "Tails vanish first (2023)").exit_code == 0
    (project / "inquiry.md").write_text((project / "inquiry.md").read_text() + "\n- An edited claim (2026).\n")
    before = files(project)
    again = cli("init", ".", "--inquiry", INQUIRIES / "reward_hacking.txt")
    assert again.exit_code == 0 and "already an audit project; nothing was changed" in again.stdout
    assert files(project) == before

    (tmp_path / "rh").mkdir()
    monkeypatch.chdir(tmp_path / "rh")
    assert cli("init", "--inquiry", INQUIRIES / "reward_hacking.txt").exit_code == 0  # DIR defaults to here
    assert (tmp_path / "rh" / "inquiry.txt").read_bytes() == (INQUIRIES / "reward_hacking.txt").read_bytes()
    listed = cli("claims", "list", "--format", "json")
    assert [c["id"] for c in json.loads(listed.stdout)] == ["C1", "C2", "C3", "C4"]
    assert f"audit: project {tmp_path / 'rh'} (inquiry inquiry.txt)" in listed.stderr


def test_claims_stay_in_their_audit(home, tmp_path, monkeypatch):
    a, b, other = tmp_path / "a", tmp_path / "b", tmp_path / "other.md"
    other.write_bytes((INQUIRIES / "in_context_learning.md").read_bytes())
    assert cli("init", a).exit_code == 0 and cli("init", b).exit_code == 0
    monkeypatch.chdir(a)
    assert cli("claims", "add", "Claim of project A (2024)").exit_code == 0
    monkeypatch.chdir(b)
    assert cli("claims", "add", "Claim of project B (2024)").exit_code == 0
    assert cli("claims", "add", "Claim of the other inquiry (2024)", "--inquiry", other).exit_code == 0

    (a / "notes" / "deep").mkdir(parents=True)
    monkeypatch.chdir(a / "notes" / "deep")  # found by walking up, as git finds its repository
    assert user_claims() == (["Claim of project A (2024)"], f"audit: project {a} (inquiry inquiry.md)\n")
    monkeypatch.chdir(tmp_path / "elsewhere")
    texts, audit = user_claims()
    assert texts == [] and "the default inquiry" in audit
    assert user_claims("--inquiry", a / "inquiry.md")[0] == ["Claim of project A (2024)"]  # a project's inquiry is the project
    assert user_claims("--inquiry", other) == (["Claim of the other inquiry (2024)"], f"audit: inquiry {other}\n")
    monkeypatch.chdir(b)
    assert user_claims()[0] == ["Claim of project B (2024)"]
    table = cli("claims", "list")
    assert table.stdout.startswith(f"audit: project {b} (inquiry inquiry.md)\n") and "Claim of project A" not in table.stdout
    removed = cli("claims", "remove", "U1", "--inquiry", other)
    assert removed.exit_code == 0 and user_claims("--inquiry", other)[0] == []
    assert user_claims()[0] == ["Claim of project B (2024)"]


def test_import_twice_adds_once(home, tmp_path, monkeypatch):
    assert cli("init", tmp_path / "proj").exit_code == 0
    monkeypatch.chdir(tmp_path / "proj")
    batch = tmp_path / "batch.jsonl"
    batch.write_text('{"text": "Seeds help (2024)"}\n{"text": "Ratio matters (2025)"}\n{"text": "  RATIO   matters (2025)"}\n')

    first = cli("claims", "import", batch)
    assert first.exit_code == 0 and "added 2 claims, 1 already there" in first.stdout, first.output
    assert "already there as U2: " in first.stdout  # same text up to case and spacing: the same claim
    second = cli("claims", "import", batch)
    assert second.exit_code == 0 and "added 0 claims, 3 already there" in second.stdout
    assert len((tmp_path / "proj" / "claims.jsonl").read_text().splitlines()) == 2
    own = cli("claims", "import", "inquiry.md")  # the inquiry's own claims are there already
    assert own.exit_code == 0 and "added 0 claims, 4 already there" in own.stdout
    validated = cli("claims", "validate", batch)
    assert validated.exit_code == 0 and "3 claims; 3 already in project" in validated.stdout


def _legacy(home: Path) -> tuple[Path, Path]:
    store = ClaimsStore(home / "claims.jsonl")
    for text in ("First legacy claim (2023)", "Second legacy claim (2024)", "Third legacy claim (2025)"):
        store.add(text)
    store.remove("U2")
    return store.path, store.removed_path


def test_a_legacy_registry_moves_to_the_default_audit_with_its_ids(home):
    legacy, archive = _legacy(home)
    contents = legacy.read_bytes(), archive.read_bytes()
    result = cli("claims", "list", "--format", "json")
    assert result.exit_code == 0
    notes = [line for line in result.stderr.splitlines() if line.startswith("note:")]
    assert len(notes) == 1 and "moved your claims" in notes[0]
    assert [c["id"] for c in json.loads(result.stdout) if c["origin"] == "user"] == ["U1", "U3"]
    assert not legacy.exists() and not archive.exists()
    default = home / "audits" / "default"
    assert ((default / "claims.jsonl").read_bytes(), (default / "claims.removed.jsonl").read_bytes()) == contents

    added = cli("claims", "add", "A new claim (2026)")
    assert added.exit_code == 0 and added.stdout.startswith("added U4") and "note:" not in added.stderr


def test_a_legacy_registry_is_never_merged_over_an_existing_one(home):
    assert cli("claims", "add", "A claim made after the upgrade (2026)").exit_code == 0
    legacy, _ = _legacy(home)
    result = cli("claims", "list", "--format", "json")
    assert result.exit_code == 0 and "left in place" in result.stderr and "claims import" in result.stderr
    assert legacy.exists()


def test_a_run_reads_its_own_audits_claims(home, tmp_path, monkeypatch):
    """What the first stage reads, for the configs `run` makes, from any working directory."""
    other = tmp_path / "other.md"
    other.write_bytes((INQUIRIES / "reward_hacking.txt").read_bytes())
    assert cli("init", tmp_path / "proj").exit_code == 0
    monkeypatch.chdir(tmp_path / "proj")
    assert cli("claims", "add", "Project claim (2024)").exit_code == 0
    monkeypatch.chdir(tmp_path / "elsewhere")
    assert cli("claims", "add", "Default claim (2024)").exit_code == 0
    assert cli("claims", "add", "Other claim (2024)", "--inquiry", other).exit_code == 0

    def users(inquiry: Path | None) -> list[str]:
        config = RunConfig(run_id="r", run_date=date(2026, 1, 1), inquiry_path=inquiry, arxiv_url="http://x", out_dir=tmp_path)
        return [c.text for c in inquiry_for_run(config).claims if c.origin == "user"]

    assert users(tmp_path / "proj" / "inquiry.md") == ["Project claim (2024)"]
    assert users(None) == ["Default claim (2024)"]
    assert users(other.resolve()) == ["Other claim (2024)"]


def test_run_in_a_project_reports_its_claims(tmp_path):
    home, project = tmp_path / "home", tmp_path / "proj"
    assert run_cli("init", str(project), home=home).returncode == 0
    claim = "Accumulating real data bounds test error (2024, arXiv:2404.01413)."
    assert run_cli("claims", "add", claim, home=home, cwd=project).returncode == 0
    # which claims a run audits does not depend on the embedder: the fast lexical one will do
    result = run_cli("run", "--sim-budget", "none", "--source", "snapshot", home=home, cwd=project,
                     env={"COLLAPSE_AUDIT_EMBEDDINGS": "lexical"})
    assert result.returncode == 0, result.stderr
    [report] = (project / "runs").glob("*/report.json")  # the project's runs directory is the default --out
    claims = json.loads(report.read_text())["claims"]
    assert [(c["id"], c["text"]) for c in claims][-1] == ("U1", claim) and len(claims) == 5


@pytest.mark.parametrize(
    ("setup", "message"),
    [
        (lambda d: ["init", _touch(d / "a-file")], "is a file; give a directory"),
        (lambda d: ["init", d / "p", "--inquiry", d / "missing.md"], "cannot read inquiry"),
        (lambda d: ["init", d / "p", "--inquiry", INQUIRIES / "no_bullets.md"], "no claims found"),
        (lambda d: ["init", _touch(d / "p" / "inquiry.md").parent], "init never overwrites"),
        (lambda d: ["claims", "list", "--inquiry", d], "it is a directory"),
        (lambda d: ["claims", "add", "x", "--inquiry", d / "missing.md"], "no such file"),
    ],
)
def test_bad_input_exits_2_with_one_line(home, tmp_path, setup, message):
    assert_one_error_line(cli(*setup(tmp_path)), message)


@pytest.mark.parametrize(
    ("project_file", "args", "message"),
    [
        ("inquiry = \n", ["claims", "list"], "not valid TOML"),
        ('inquiry = "inquiry.md"\n', ["claims", "import", "batch.jsonl"], "'claims' must be a path"),
        ('inquiry = "../x.md"\nclaims = "c"\nruns = "r"\n', ["claims", "add", "x"], "lies outside the project"),
    ],
)
def test_an_unusable_project_file_exits_2_with_one_line(home, tmp_path, monkeypatch, project_file, args, message):
    (tmp_path / PROJECT_FILE).write_text(project_file)
    monkeypatch.chdir(tmp_path)
    assert_one_error_line(cli(*args), message)


def assert_one_error_line(result, message: str) -> None:
    assert result.exit_code == 2, result.output
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:") and message in lines[0], result.stderr


def _touch(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("- a claim (2024)\n")
    return path

"""`collapse-audit claims ...`: a round trip through the user store, and every bad input exits 2 in one line."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from agent.cli import app

INQUIRIES = Path(__file__).parent / "data" / "inquiries"


@pytest.fixture
def home(tmp_path, monkeypatch) -> Path:
    monkeypatch.setenv("COLLAPSE_AUDIT_HOME", str(tmp_path / "home"))
    monkeypatch.chdir(tmp_path)  # outside any project: the commands work on the default inquiry's audit
    return tmp_path / "home"


def registry(home: Path, name: str = "claims.jsonl") -> Path:
    return home / "audits" / "default" / name


def claims(*args: str):
    return CliRunner().invoke(app, ["claims", *args])


def listed(*args: str) -> list[dict]:
    result = claims("list", "--format", "json", *args)
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def test_add_list_remove_round_trip(home):
    assert [c["id"] for c in listed()] == ["C1", "C2", "C3", "C4"]  # the shipped inquiry, no user claims yet

    result = claims(
        "add", "Collapse scales with the synthetic ratio at fixed diversity (arXiv:2404.01413v2).",
        "--date", "2025", "--tag", "ratio", "--durability", "perishable",
    )
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith("added U1")
    assert claims("add", "Tail erasure is slower when real data accumulates (2024).").exit_code == 0

    user = [c for c in listed() if c["origin"] == "user"]
    assert [(c["id"], c["dated"], c["citations"], c["tags"], c["durability"]) for c in user] == [
        ("U1", "2025", ["2404.01413"], ["ratio"], "perishable"),
        ("U2", "2024", [], ["tails"], "unassessed"),
    ]

    result = claims("remove", "U1")
    assert result.exit_code == 0 and "removed U1" in result.stdout
    assert claims("add", "A third claim (2026).").exit_code == 0
    assert [c["id"] for c in listed() if c["origin"] == "user"] == ["U2", "U3"]  # U1 is never reused
    archived = [json.loads(line) for line in registry(home, "claims.removed.jsonl").read_text().splitlines()]
    assert [c["id"] for c in archived] == ["U1"]

    table = claims("list")
    assert table.exit_code == 0 and "U3" in table.stdout and "C4" in table.stdout


def test_list_another_inquiry(home):
    ids = [c["id"] for c in listed("--inquiry", str(INQUIRIES / "in_context_learning.md"))]
    assert ids == ["C1", "C2", "C3", "C4", "C5", "C6"]


def test_validate_inquiries_and_claims_files(home, tmp_path):
    result = claims("validate", str(INQUIRIES / "in_context_learning.md"))
    assert result.exit_code == 0
    assert "6 claims, 3 anchors, 5 tasks" in result.stdout
    assert "C6 has no date" in result.stderr  # warnings do not fail validation

    good = tmp_path / "good.jsonl"
    good.write_text('{"text": "Ratio matters (2025, arXiv:2404.01413)"}\n\n{"text": "Diversity matters", "dated": "2024"}\n')
    result = claims("validate", str(good))
    assert result.exit_code == 0 and "2 claims" in result.stdout


def test_import_claims_files_and_inquiries_without_duplicates(home, tmp_path):
    batch = tmp_path / "batch.json"
    batch.write_text(json.dumps({"claims": [{"text": "Ratio matters (2025)", "durability": "durable"}, {"text": "Seeds help"}]}))
    result = claims("import", str(batch))
    assert result.exit_code == 0, result.output
    assert "added 2 claims, 0 already there" in result.stdout

    result = claims("import", str(INQUIRIES / "reward_hacking.txt"))
    assert "added 4 claims, 0 already there" in result.stdout
    again = claims("import", str(INQUIRIES / "reward_hacking.txt"))
    assert again.exit_code == 0 and "added 0 claims, 4 already there" in again.stdout

    user = [c for c in listed() if c["origin"] == "user"]
    assert [c["id"] for c in user] == ["U1", "U2", "U3", "U4", "U5", "U6"]
    assert user[0]["durability"] == "durable" and user[2]["durability"] == "durable"


def _write(path: Path, content: str | bytes) -> str:
    path.write_bytes(content if isinstance(content, bytes) else content.encode())
    return str(path)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (lambda d: ["add", ""], "empty"),
        (lambda d: ["add", "x", "--date", "soon"], "names no year"),
        (lambda d: ["add", "x", "--durability", "forever"], "'--durability': 'forever' is not one of"),
        (lambda d: ["list", "--format", "xml"], "'--format': 'xml' is not one of 'table', 'json'"),
        (lambda d: ["list", "--inquiry", str(d / "missing.md")], "cannot read"),
        (lambda d: ["list", "--inquiry", str(INQUIRIES / "no_bullets.md")], "no claims found"),
        (lambda d: ["remove", "U99"], "no user claim"),
        (lambda d: ["validate", str(INQUIRIES / "binary.bin")], "not UTF-8"),
        (lambda d: ["validate", str(INQUIRIES / "empty.md")], "empty"),
        (lambda d: ["validate", _write(d / "bad.jsonl", '{"text": "ok"}\n{"text": \n')], "bad.jsonl:2: not JSON"),
        (lambda d: ["validate", _write(d / "bad.json", '{"text": "x"}')], "expected a list of claims"),
        (lambda d: ["validate", _write(d / "extra.jsonl", '{"text": "x", "verdict": "ok"}\n')], "unknown field 'verdict'"),
        (lambda d: ["validate", _write(d / "blank.jsonl", "\n")], "holds no claims"),
        (lambda d: ["validate", _write(d / "tags.jsonl", '{"text": "x", "tags": [1]}\n')], "lists of strings"),
        (lambda d: ["validate", _write(d / "dur.jsonl", '{"text": "x", "durability": "forever"}\n')], "durability: Input"),
        (lambda d: ["import", str(d / "missing.jsonl")], "cannot read"),
        (lambda d: ["import", _write(d / "cites.jsonl", '{"text": "x", "citations": ["Smith 2020"]}\n')], "not one arXiv ID"),
    ],
)
def test_bad_input_exits_2_with_one_line(home, tmp_path, args, message):
    result = claims(*args(tmp_path))
    assert result.exit_code == 2
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:") and message in lines[0], result.stderr


def test_duplicate_add_and_corrupt_store_exit_2_without_touching_the_store(home):
    assert claims("add", "Diversity matters (2024)").exit_code == 0
    duplicate = claims("add", "diversity   matters (2024)")
    assert duplicate.exit_code == 2 and "already in this audit as U1" in duplicate.stderr

    store = registry(home)
    store.write_text(store.read_text() + "not json\n")
    before = store.read_bytes()
    for args in (["list"], ["add", "Another claim"], ["remove", "U1"]):
        result = claims(*args)
        assert result.exit_code == 2 and "claims.jsonl:2" in result.stderr
    assert store.read_bytes() == before

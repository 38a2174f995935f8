"""Grounding verdicts: the gold set offline and live, the default inquiry, and `verify-citations`.

The lexical embedder keeps these fast; benchmarks/grounding_accuracy.py measures with MiniLM.
"""

from __future__ import annotations

import json
import subprocess
from datetime import date
from pathlib import Path

import pytest

from tests.arxiv_server import LIVE_ONLY_PAPERS, ArxivServer, SimulatedClock, snapshot_papers
from tests.subprocess_cli import run_cli
from tools.embeddings import get_embedder
from tools.grounding import CitationCheck, summarize, verify_text
from tools.snapshot import Snapshot
from tools.sources import open_source

RUN_DATE = date(2026, 11, 24)
ROOT = Path(__file__).resolve().parents[1]
GOLD = ROOT.parent / "shared" / "data" / "grounding_gold.jsonl"
REAL_KILLERS = {"nonexistent", "not_found", "malformed"}


@pytest.fixture(scope="module")
def snapshot() -> Snapshot:
    return Snapshot.open(None)


@pytest.fixture(scope="module")
def offline(snapshot):
    return open_source("snapshot", cache_path=None, snapshot=snapshot)


def check(text: str, source) -> CitationCheck:
    [result] = verify_text(text, source, run_date=RUN_DATE, embedder=get_embedder("lexical"))
    return result


def gold_cases() -> list[dict]:
    if not GOLD.exists():
        pytest.skip(f"gold set not present at {GOLD}")
    return [json.loads(line) for line in GOLD.read_text().splitlines() if line.strip()]


def score(cases: list[dict], source) -> tuple[float, list[tuple[int, str, str]]]:
    results = [(case, check(case["text"], source)) for case in cases]
    accuracy = sum(case["expected"] == got.status for case, got in results) / len(results)
    dangerous = [
        (case["case"], case["expected"], got.status) for case, got in results
        if (case["expected"] == "grounded" and got.status in REAL_KILLERS) or (case["expected"] != "grounded" and got.status == "grounded")
    ]
    return accuracy, dangerous


def test_gold_set_offline(offline) -> None:
    accuracy, dangerous = score(gold_cases(), offline)
    assert dangerous == [] and accuracy >= 0.98


def test_gold_set_live_through_the_loopback_api() -> None:
    clock = SimulatedClock()
    with ArxivServer(snapshot_papers() + LIVE_ONLY_PAPERS, clock=clock) as server:
        source = open_source("arxiv", arxiv_url=server.url, cache_path=None, clock=clock)
        accuracy, dangerous = score(gold_cases(), source)
        assert dangerous == [] and accuracy >= 0.98
        assert all(len(r.ids) <= 100 for r in server.requests)


def test_wrong_paper_names_the_paper_meant(offline) -> None:
    result = check('Pillutla et al. (2021) define "MAUVE: Measuring the Gap Between Neural Text and Human Text" (arXiv:2210.02410).', offline)
    assert (result.status, result.suggested_id) == ("wrong_paper", "2102.01454")
    assert "2102.01454" in result.reason and result.paper.id == "2210.02410"


def test_short_title_before_the_colon_points_to_the_paper_meant(offline) -> None:
    result = check("@article{v, title={The Vendi Score}, eprint={2102.01454}, archivePrefix={arXiv}, year={2022}}", offline)
    assert (result.status, result.suggested_id) == ("wrong_paper", "2210.02410")


def test_same_authors_other_paper(offline) -> None:
    # the sentence names Gerstgrasser et al.'s accumulation result; 2410.04840 is Dohmatob et al.'s "Strong Model Collapse"
    result = check("Gerstgrasser et al. (2024) show that accumulating real and synthetic data avoids collapse (arXiv:2410.04840).", offline)
    assert result.status == "wrong_paper" and result.suggested_id == "2404.01413"


def test_same_authors_other_paper_by_its_restated_title(offline) -> None:
    # Dohmatob et al. wrote both 2402.07043 and 2410.04840; the sentence restates the former's title
    result = check("Dohmatob et al. (2024) show model collapse appears as a change of scaling laws when the tails are cut (arXiv:2410.04840).", offline)
    assert (result.status, result.suggested_id) == ("wrong_paper", "2402.07043")
    assert "restates the title" in result.reason


def test_year_range_and_two_year_rule(offline) -> None:
    assert check("Tail erasure under recursion (2022–2023, arXiv:2305.17493).", offline).status == "grounded"
    late = check("Tail erasure under recursion (2025–2026, arXiv:2305.17493).", offline)
    assert late.status == "year_mismatch" and "2 years after" in late.reason
    early = check("Tail erasure under recursion (Shumailov et al., 2020, arXiv:2305.17493).", offline)
    assert early.status == "year_mismatch" and "before" in early.reason


def test_snapshot_miss_is_unverifiable_not_not_found(offline) -> None:
    result = check("The Transformer (Vaswani et al., 2017, arXiv:1706.03762).", offline)
    assert result.status == "unverifiable" and "offline snapshot" in result.reason


def test_every_non_grounded_verdict_has_a_reason(offline) -> None:
    text = "A (arXiv:2313.04567). B (arXiv:2305.174). C (Lee et al., 2024). D (Shumailov et al., 2019, arXiv:2305.17493)."
    checks = verify_text(text, offline, run_date=RUN_DATE, embedder=get_embedder("lexical"))
    assert [c.status for c in checks] == ["nonexistent", "malformed", "no_id", "year_mismatch"]
    assert all(c.reason and "." not in c.reason[-1:] for c in checks)
    summary = summarize(checks)
    assert summary["coverage"] == 0.5 and summary["nonexistent"] == 1 and summary["grounded"] == 0


def test_default_inquiry(offline) -> None:
    checks = verify_text((ROOT / "prompts" / "inquiry.md").read_text(), offline, run_date=RUN_DATE, embedder=get_embedder("lexical"))
    statuses = [(c.arxiv_id, c.stated_year, c.status) for c in checks]
    assert (None, 2024, "no_id") in statuses
    assert all(status == "grounded" for arxiv_id, _, status in statuses if arxiv_id)
    assert ("2410.18447", 2024, "grounded") in statuses and ("2603.29791", 2026, "grounded") in statuses


@pytest.fixture
def cli_env(tmp_path, monkeypatch):
    home = tmp_path / "home"
    monkeypatch.setenv("COLLAPSE_AUDIT_EMBEDDINGS", "lexical")
    with ArxivServer([]) as dead:
        url = dead.url
    monkeypatch.setenv("ARXIV_API_URL", url)  # a closed loopback port: the live API is unreachable
    return home


def test_cli_json_schema_and_exit_codes(cli_env, tmp_path) -> None:
    good = tmp_path / "good.md"
    good.write_text("- Recursive training erodes the tails (Shumailov et al., 2023, arXiv:2305.17493).\n")
    result = run_cli("verify-citations", str(good), "--format", "json", home=cli_env)
    assert result.returncode == 0, result.stderr
    payload = json.loads(result.stdout)
    [citation] = payload["citations"]
    assert {"line", "as_written", "arxiv_id", "status", "context", "stated_year", "paper", "reason", "suggested_id"} <= set(citation)
    assert citation["paper"]["published"] == "2023-05-27" and citation["line"] == 1
    assert payload["summary"]["grounded"] == 1 and payload["summary"]["coverage"] == 1.0

    flagged = tmp_path / "flagged.md"
    flagged.write_text("Shumailov et al. (2019) coined model collapse (arXiv:2305.17493). Later (arXiv:2313.04567).\n")
    result = run_cli("verify-citations", str(flagged), home=cli_env)
    assert result.returncode == 1 and "year_mismatch" in result.stdout and "coverage" in result.stdout

    unreachable = tmp_path / "live.md"
    unreachable.write_text("The Transformer (Vaswani et al., 2017, arXiv:1706.03762).\n")
    result = run_cli("verify-citations", str(unreachable), home=cli_env)
    assert result.returncode == 3 and "unreachable" in result.stderr


def test_cli_bad_input(cli_env, tmp_path) -> None:
    missing = run_cli("verify-citations", str(tmp_path / "nope.md"), home=cli_env)
    assert missing.returncode == 2 and "no such file" in missing.stderr and "Traceback" not in missing.stderr
    empty = tmp_path / "empty.md"
    empty.write_text("no citations here at all\n")
    result = run_cli("verify-citations", str(empty), home=cli_env)
    assert result.returncode == 2 and "no citations found" in result.stderr
    result = run_cli("verify-citations", str(empty), "--format", "yaml", home=cli_env)
    assert result.returncode == 2


def test_cli_reads_stdin(cli_env) -> None:
    exe = Path(__import__("sys").executable).with_name("collapse-audit")
    env = {**__import__("os").environ, "COLLAPSE_AUDIT_HOME": str(cli_env)}
    result = subprocess.run(
        [str(exe), "verify-citations", "-", "--source", "snapshot", "--format", "json"],
        input="Magpie prompts aligned LLMs with only the template (Xu et al., 2024, https://arxiv.org/abs/2406.08464).",
        capture_output=True, text=True, env=env, timeout=300,
    )
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["citations"][0]["arxiv_id"] == "2406.08464"

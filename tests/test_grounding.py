"""Grounding verdicts: the gold set and generated cases offline and live, the default inquiry, an
LLM-style answer to it, the fit rules one by one, and `verify-citations`.

The lexical embedder keeps these fast; benchmarks/grounding_accuracy.py measures with MiniLM too.
Every case file lives in tests/data, so a clone of this repository alone runs them.
"""

from __future__ import annotations

import json
import subprocess
from datetime import date
from pathlib import Path

import pytest

from tests.arxiv_server import LIVE_ONLY_PAPERS, ArxivServer, SimulatedClock, snapshot_papers
from tests.subprocess_cli import run_cli
from tools.arxiv_id import canonical
from tools.embeddings import get_embedder
from tools.grounding import CitationCheck, summarize, verify_text, with_model_fit, year_gap
from tools.snapshot import Snapshot
from tools.sources import open_source

RUN_DATE = date(2026, 11, 24)
ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "tests" / "data"
GOLD = DATA / "grounding_gold.jsonl"  # a copy of ../shared/data/grounding_gold.jsonl
CASES = DATA / "citation_cases.jsonl"  # benchmarks/citation_cases.py
REAL_KILLERS = {"nonexistent", "not_found", "malformed"}
REAL = {"grounded", "wrong_paper", "year_mismatch"}


@pytest.fixture(scope="module")
def snapshot() -> Snapshot:
    return Snapshot.open(None)


@pytest.fixture(scope="module")
def offline(snapshot):
    return open_source("snapshot", cache_path=None, snapshot=snapshot)


def check(text: str, source) -> CitationCheck:
    [result] = verify_text(text, source, run_date=RUN_DATE, embedder=get_embedder("lexical"))
    return result


def load(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def pick(case: dict, checks: list[CitationCheck]) -> CitationCheck:
    wanted = canonical(case["arxiv_id"]) if case.get("arxiv_id") else None
    return next((c for c in checks if wanted and c.arxiv_id in (wanted, case["arxiv_id"])), checks[0])


def score(cases: list[dict], source, *, offline: bool = True) -> tuple[float, list[tuple]]:
    results = []
    for case in cases:
        got = pick(case, verify_text(case["text"], source, run_date=RUN_DATE, embedder=get_embedder("lexical")))
        expected = case.get("expected_offline", case["expected"]) if offline else case["expected"]
        results.append((case, expected, got))
    accuracy = sum(expected == got.status for _, expected, got in results) / len(results)
    dangerous = [
        (case["case"], expected, got.status) for case, expected, got in results
        if (case["expected"] in REAL and got.status in REAL_KILLERS) or (expected != "grounded" and got.status == "grounded")
    ]
    return accuracy, dangerous


def test_gold_set_offline(offline) -> None:
    accuracy, dangerous = score(load(GOLD), offline)
    assert dangerous == [] and accuracy >= 0.98


def test_gold_set_live_through_the_loopback_api() -> None:
    clock = SimulatedClock()
    with ArxivServer(snapshot_papers() + LIVE_ONLY_PAPERS, clock=clock) as server:
        source = open_source("arxiv", arxiv_url=server.url, cache_path=None, clock=clock)
        accuracy, dangerous = score(load(GOLD), source, offline=False)
        assert dangerous == [] and accuracy >= 0.98
        assert all(len(r.ids) <= 100 for r in server.requests)


def test_generated_held_out_cases_offline(offline) -> None:
    # thresholds were chosen on the dev half (benchmarks/citation_cases.py); this is the other half
    held_out = [c for c in load(CASES) if c["split"] == "heldout"]
    assert len(held_out) >= 150
    accuracy, dangerous = score(held_out, offline)
    assert dangerous == [] and accuracy >= 0.98


def test_generated_cases_live_sample() -> None:
    # a spread of shapes through the real HTTP client: versions above those listed, live-only papers, fabrications
    cases = [c for c in load(CASES) if c["split"] == "heldout"][::4]
    clock = SimulatedClock()
    with ArxivServer(snapshot_papers() + LIVE_ONLY_PAPERS, clock=clock, lifetime=600) as server:
        source = open_source("arxiv", arxiv_url=server.url, cache_path=None, clock=clock)
        accuracy, dangerous = score(cases, source, offline=False)
        assert dangerous == [] and accuracy >= 0.95


def test_an_llm_style_answer_to_the_default_inquiry(offline) -> None:
    labels = json.loads((DATA / "inquiry_answer_labels.json").read_text())
    checks = verify_text((DATA / "inquiry_answer.md").read_text(), offline, run_date=RUN_DATE, embedder=get_embedder("lexical"))
    assert [[c.line, c.arxiv_id, c.status] for c in checks] == labels["offline"]


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
    assert "restates 2402.07043" in result.reason and "share authors" in result.reason


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


def test_two_citations_in_one_sentence_keep_their_own_names(offline) -> None:
    text = "ToolFlow (arXiv:2410.18447) and Magpie (arXiv:2406.08464) both synthesize training data with LLMs."
    assert [c.status for c in verify_text(text, offline, run_date=RUN_DATE, embedder=get_embedder("lexical"))] == ["grounded", "grounded"]
    joint = "Tool-calling dialogues and alignment data can both be synthesized by LLMs (ToolFlow, Magpie; arXiv:2410.18447; arXiv:2406.08464)."
    assert [c.status for c in verify_text(joint, offline, run_date=RUN_DATE, embedder=get_embedder("lexical"))] == ["grounded", "grounded"]
    # ... while a name next to one citation still counts against it when it is another paper's
    wrong = "ToolFlow (arXiv:2406.18518) plans coherent multi-turn tool dialogues, and Magpie (arXiv:2406.08464) prompts aligned LLMs with only the template."
    first, second = verify_text(wrong, offline, run_date=RUN_DATE, embedder=get_embedder("lexical"))
    assert (first.status, first.suggested_id, second.status) == ("wrong_paper", "2410.18447", "grounded")


def test_a_paper_the_sentence_does_not_describe_is_flagged_without_a_better_candidate(offline) -> None:
    # the right year and a real ID are not a fit: residual networks are not in the snapshot to suggest
    result = check("Residual connections make very deep image classifiers trainable (2023, arXiv:2305.17493).", offline)
    assert (result.status, result.suggested_id) == ("wrong_paper", None) and "does not describe" in result.reason


@pytest.mark.parametrize(
    "text",
    [
        'Shumailov et al. (2023), "Synthetic Feedback Loops Erase Rare Knowledge", arXiv:2305.17493.',
        "See Shumailov et al., *Recursive Distillation Under Entropy Floors* (2023, arXiv:2305.17493).",
        "@article{s23, title={Generative Echo Chambers in Large Language Models}, author={Shumailov, Ilia and Shumaylov, Zakhar},"
        " year={2023}, eprint={2305.17493}, archivePrefix={arXiv}}",
    ],
)
def test_an_invented_title_is_evidence_against_a_real_id_with_real_authors(offline, text) -> None:
    result = check(text, offline)
    assert result.status == "wrong_paper" and "is not its title" in result.reason


@pytest.mark.parametrize(
    "text",
    [
        "Recursive training makes models forget the tails (Shumailov et al., 2023, doi:10.48550/arXiv.2305.17493).",
        "Recursive training makes models forget the tails (https://doi.org/10.48550/arXiv.2305.17493v2).",
        "@misc{shumailov2023curse, title={The Curse of Recursion: Training on Generated Data Makes Models Forget},"
        " author={Ilia Shumailov and Zakhar Shumaylov}, year={2023}, doi={10.48550/ARXIV.2305.17493}, publisher={arXiv}}",
        "@article{dblp, title={The Curse of Recursion}, author={Shumailov, Ilia}, journal={CoRR}, volume={abs/2305.17493}, year={2023}}",
    ],
)
def test_the_arxiv_doi_and_dblp_forms_are_read(offline, text) -> None:
    result = check(text, offline)
    assert (result.arxiv_id, result.status) == ("2305.17493", "grounded")


def test_grounding_uses_the_embedder_the_settings_chose(tmp_path) -> None:
    # COLLAPSE_AUDIT_EMBEDDINGS=lexical: the run's grounding never loads MiniLM
    code = (
        "import sys; from datetime import date; from agent.services import services_for; from agent.state import RunConfig; "
        "from tools.grounding import verify_text; "
        "run = RunConfig(run_id='t', run_date=date(2026, 11, 24), source='snapshot', arxiv_url='http://127.0.0.1:9/api/query', out_dir='.'); "
        "s = services_for(run); [c] = verify_text('Tails vanish (Shumailov et al., 2023, arXiv:2305.17493).', s.source, run_date=run.run_date); "
        "print(c.status, s.source.embedder.name, 'sentence_transformers' in sys.modules)"
    )
    env = {**__import__("os").environ, "COLLAPSE_AUDIT_HOME": str(tmp_path), "COLLAPSE_AUDIT_EMBEDDINGS": "lexical"}
    result = subprocess.run([__import__("sys").executable, "-c", code], capture_output=True, text=True, env=env, cwd=ROOT, timeout=120)
    assert result.stdout.split() == ["grounded", "lexical", "False"], result.stderr


def test_the_model_loads_only_for_a_fit_that_wording_cannot_settle(tmp_path) -> None:
    """A sentence that restates its paper is settled by its wording; a loose paraphrase is read
    again by meaning, and only then does MiniLM load (the default, "auto")."""
    clear = ("Recursive training on model-generated content causes irreversible collapse by eroding the tails "
             "of the original distribution (2023, arXiv:2305.17493).")
    # worded for this test alone, so no vector of it is in the session's vector cache
    loose = ("Representational density is learned from familiarity with the training data; as synthetic data "
             "crowds out rare patterns, models stop building rich internal structure for them (2026, arXiv:2603.03415).")
    code = (
        "import sys; from datetime import date; from tools.grounding import verify_text; "
        "from tools.snapshot import Snapshot; from tools.sources import open_source; "
        "source = open_source('snapshot', cache_path=None, snapshot=Snapshot.open(None)); "
        f"[a] = verify_text({clear!r}, source, run_date=date(2026, 11, 30)); "
        "print(a.status, 'sentence_transformers' in sys.modules); "
        f"[b] = verify_text({loose!r}, source, run_date=date(2026, 11, 30)); "
        "print(b.status, 'sentence_transformers' in sys.modules)"
    )
    env = {**__import__("os").environ, "COLLAPSE_AUDIT_HOME": str(tmp_path)}
    result = subprocess.run([__import__("sys").executable, "-c", code], capture_output=True, text=True, env=env, cwd=ROOT, timeout=300)
    assert result.stdout.splitlines() == ["grounded False", "grounded True"], result.stderr


def test_default_inquiry(offline) -> None:
    # MiniLM, the default: the inquiry's claims paraphrase their papers loosely, beyond shared words
    checks = verify_text((ROOT / "prompts" / "inquiry.md").read_text(), offline, run_date=RUN_DATE, embedder=get_embedder("minilm"))
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


def test_a_model_fit_answer_combines_with_the_offline_check(offline) -> None:
    """The model reads the content; code keeps identity conflicts and the stated year."""
    grounded = check("Recursive training makes models forget the tails (Shumailov et al., 2023, arXiv:2305.17493).", offline)
    assert grounded.status == "grounded" and not grounded.identity_conflict
    denied = with_model_fit(grounded, "no", "the sentence describes another finding")
    assert denied.status == "wrong_paper" and denied.model_fit == "no" and denied.flagged
    assert denied.reason.startswith("model: no, the sentence describes another finding; offline check: ")
    unsure = with_model_fit(grounded, "undetermined", "cannot tell")
    assert unsure.status == "grounded" and unsure.model_fit == "undetermined"

    invented = check('Shumailov et al. (2023), "Synthetic Feedback Loops Erase Rare Knowledge", arXiv:2305.17493.', offline)
    assert invented.status == "wrong_paper" and invented.identity_conflict
    kept = with_model_fit(invented, "yes", "same topic")  # a wrong title is not overruled by a reading of content
    assert kept.status == "wrong_paper" and kept.suggested_id == invented.suggested_id

    late = check("Tail erasure under recursion (2025–2026, arXiv:2305.17493).", offline)
    assert year_gap(late) == 2 and with_model_fit(late, "yes", "its finding").status == "year_mismatch"
    content_only = with_model_fit(denied, "yes", "its finding")  # a content-only wrong_paper the model reads as fitting
    assert content_only.status == "grounded" and content_only.suggested_id is None

    unchecked = check("Models collapse (arXiv:2301.99999).", offline)
    assert with_model_fit(unchecked, "yes", "x") == unchecked  # only a resolved ID has a fit to judge


def test_a_warm_cache_does_not_hide_an_unreachable_api(tmp_path) -> None:
    home = tmp_path / "home"
    text = tmp_path / "two.md"
    text.write_text("Recursive training erodes the tails (Shumailov et al., 2023, arXiv:2305.17493).\n"
                    "Accumulating real data avoids collapse (Gerstgrasser et al., 2024, arXiv:2404.01413).\n")
    env = {"COLLAPSE_AUDIT_EMBEDDINGS": "lexical"}
    with ArxivServer(snapshot_papers()) as live:
        first = run_cli("verify-citations", str(text), "--source", "arxiv", "--arxiv-url", live.url, home=home, env=env)
        url = live.url
    assert first.returncode == 0, first.stderr
    assert "unreachable" not in first.stderr
    # the server is gone; the cache still answers both, and the user is told, once, that the API is down
    again = run_cli("verify-citations", str(text), "--source", "arxiv", "--arxiv-url", url, home=home, env=env)
    assert again.returncode == 0, again.stderr
    assert again.stderr.count("live arXiv unreachable") == 1, again.stderr
    assert "2 grounded" in again.stdout
    # a citation only the live API could answer is unverifiable, and the exit says the source was unreachable
    text.write_text(text.read_text() + "Scaling laws for synthetic data (arXiv:2503.19551).\n")
    cold = run_cli("verify-citations", str(text), "--source", "arxiv", "--arxiv-url", url, home=home, env=env)
    assert cold.returncode == 3, cold.stderr
    assert cold.stderr.count("live arXiv unreachable") == 1, cold.stderr

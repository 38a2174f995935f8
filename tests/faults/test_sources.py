"""arXiv answering 503, 429, slowly or with empty pages, and a model that fails or is not there, as a
run's user sees them: the exit status, the line on stderr, what the report says, and that a run
stopped by a source is recorded as failed and resumes once the source is back.

The clients' own retry rules are tested with an injected clock in tests/test_arxiv_api.py and
tests/test_llm_faults.py; here the real CLI meets the loopback servers in real time, so the faults
are scripted to cost seconds, not the minutes arXiv's backoff would (a 503 says when to retry)."""

from __future__ import annotations

import json

from tests.faults.harness import cli, model_env, records, report_complete, run_id_of
from tests.openai_server import reply


def run_args(inquiry, out, *extra: str) -> list[str]:
    return ["run", "--inquiry", str(inquiry), "--sim-budget", "none", "--out", str(out), *extra]


def citation_statuses(report: dict) -> list[str]:
    return [c["status"] for c in report["citations"]]


def test_arxiv_503_stops_an_arxiv_run_with_exit_3_and_resume_finishes_it(earlier, inquiry, arxiv, tmp_path):
    out = tmp_path / "report"
    arxiv.always, arxiv.retry_after_503 = "503", 0.05
    failed = cli(*run_args(inquiry, out, "--source", "arxiv", "--arxiv-url", arxiv.url, "--llm", "none"), home=earlier.home)
    assert failed.returncode == 3, failed
    run_id = run_id_of(failed.stderr)
    [line] = failed.error_lines()
    assert "HTTP 503" in line and line.endswith(f"resume with `collapse-audit run --resume {run_id}`"), line
    assert "Traceback" not in failed.stderr and not any(out.iterdir())
    row = records(earlier.runs)[run_id]
    assert row["status"] == "failed" and "HTTP 503" in row["error"]
    earlier.assert_intact()

    arxiv.always = None  # arXiv is back
    resumed = cli("run", "--resume", run_id, home=earlier.home)
    assert resumed.returncode == 0, resumed
    report = report_complete(out)
    assert "not_found" not in citation_statuses(report), "a fault is never evidence that a paper does not exist"
    assert records(earlier.runs)[run_id]["status"] == "finished"
    earlier.assert_intact()


def test_arxiv_empty_page_and_429_are_retried_and_the_run_grounds_its_citation(earlier, inquiry, arxiv, tmp_path):
    out = tmp_path / "report"
    # a page announcing entries but holding none (backoff 3 s), then rate-limited (Retry-After honoured)
    arxiv.faults.extend(["empty", "429"])
    result = cli(*run_args(inquiry, out, "--source", "arxiv", "--arxiv-url", arxiv.url, "--llm", "none"),
                 home=earlier.home)
    assert result.returncode == 0, result
    assert not result.error_lines()
    report = report_complete(out)
    assert citation_statuses(report) == ["grounded"], "the paper exists: retried, never reported not_found"
    first = arxiv.requests[:3]
    assert [r.ids for r in first] == [first[0].ids] * 3, "the same lookup, asked again after each fault"
    earlier.assert_intact()


def test_a_slow_arxiv_falls_back_to_the_snapshot_and_says_so_once(earlier, inquiry, arxiv, tmp_path):
    out = tmp_path / "report"
    arxiv.always, arxiv.slow_s = "slow", 5.0  # past the 3 s the auto mode's probe waits
    result = cli(*run_args(inquiry, out, "--source", "auto", "--arxiv-url", arxiv.url, "--llm", "none"),
                 home=earlier.home)
    assert result.returncode == 0, result
    notes = [line for line in result.lines() if line.startswith("live arXiv unreachable")]
    assert notes == ["live arXiv unreachable (arXiv API at " + arxiv.url + ": timed out); using the offline "
                     "snapshot only"], result.stderr
    report = report_complete(out)
    assert citation_statuses(report) == ["grounded"]
    assert any(s["name"] == "live arXiv" and "unreachable" in s["detail"] for s in report["sources"])
    earlier.assert_intact()


def test_a_model_that_answers_nothing_usable_is_fallen_back_from_and_the_user_is_told(earlier, inquiry, model,
                                                                                      tmp_path):
    stand_in, server = model
    stand_in.fail = reply("I would rather not say.")  # never the JSON asked for, re-asked or not
    out = tmp_path / "report"
    result = cli(*run_args(inquiry, out, "--source", "snapshot", "--llm", "openai"), home=earlier.home,
                 env=model_env(server))
    assert result.returncode == 0, result
    report = report_complete(out)
    fallback = report["method"]["judgements"]["fallback"]
    assert fallback > 0 and report["method"]["judgements"]["model"] == 0
    assert (f"the model failed on {fallback} judgements; the offline heuristic judge answered those, labelled so in "
            "the report") in result.lines()
    earlier.assert_intact()


def test_a_model_endpoint_that_is_not_there_stops_the_run_before_it_starts(earlier, inquiry, tmp_path):
    out = tmp_path / "report"
    result = cli(*run_args(inquiry, out, "--source", "snapshot", "--llm", "openai"), home=earlier.home,
                 env={"OPENAI_BASE_URL": "http://127.0.0.1:9/v1", "OPENAI_API_KEY": "local"})
    assert result.returncode == 3, result
    [line] = result.lines()
    assert line.startswith("error: cannot reach the LLM endpoint http://127.0.0.1:9/v1"), line
    assert not out.exists(), "a run that never started leaves neither a folder"
    assert json.loads(cli("runs", "list", "--format", "json", home=earlier.home).stdout)[0]["run_id"] == earlier.run_id
    earlier.assert_intact()

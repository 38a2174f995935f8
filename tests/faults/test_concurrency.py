"""Two runs of one audit at once, and two `--resume` of one run: the run lock lets one through; the
other exits 5 with one line, having made nothing and recorded nothing. (tests/test_schedule.py
holds the same for a project's runs, through the installed console script.)"""

from __future__ import annotations

import json

from tests.faults.harness import cli, ids_lookup, records, report_complete, run_id_of, start, wait_until


def run_args(inquiry, out, arxiv) -> list[str]:
    return ["run", "--inquiry", str(inquiry), "--source", "arxiv", "--arxiv-url", arxiv.url, "--llm", "none",
            "--sim-budget", "none", "--out", str(out)]


def test_a_second_run_while_one_runs_exits_5_and_leaves_nothing(earlier, inquiry, arxiv, tmp_path):
    arxiv.hold = ids_lookup  # the first run waits on arXiv, holding the run store's lock
    first = start(*run_args(inquiry, tmp_path / "first", arxiv), home=earlier.home)
    wait_until(arxiv.held.is_set, "the first run to ask arXiv", proc=first)
    run_id = run_id_of(first.stderr)

    second = cli(*run_args(inquiry, tmp_path / "second", arxiv), home=earlier.home)
    assert second.returncode == 5, second
    assert second.lines() == [f"error: another run ({run_id}, pid {first.pid}) is using the run store {earlier.runs}: "
                              "one run at a time per audit; try again when it has finished, or pass --wait SECONDS to "
                              "wait for it"]
    assert not (tmp_path / "second").exists(), "a refused run leaves no folder"
    assert records(earlier.runs).keys() == {earlier.run_id, run_id}, "and no record"
    listed = {r["run_id"]: r["status"] for r in json.loads(cli("runs", "list", "--format", "json", home=earlier.home).stdout)}
    assert listed[run_id] == "running", "a run whose process is alive reads as running"

    arxiv.hold = None
    arxiv.release.set()
    done = first.wait()
    assert done.returncode == 0, done
    report_complete(tmp_path / "first")
    earlier.assert_intact()


def test_two_resumes_of_one_run_the_second_exits_5(earlier, inquiry, arxiv, tmp_path):
    arxiv.hold = ids_lookup
    killed = start(*run_args(inquiry, tmp_path / "report", arxiv), home=earlier.home)
    wait_until(arxiv.held.is_set, "the run to ask arXiv", proc=killed)
    run_id = run_id_of(killed.kill().stderr)
    arxiv.held.clear()  # the next request is held again: the first resume waits on arXiv

    resuming = start("run", "--resume", run_id, home=earlier.home)
    wait_until(arxiv.held.is_set, "the resumed run to ask arXiv", proc=resuming)
    again = cli("run", "--resume", run_id, home=earlier.home)
    assert again.returncode == 5, again
    assert again.lines() == [f"error: run {run_id} is already running (pid {resuming.pid})"]

    arxiv.hold = None
    arxiv.release.set()
    done = resuming.wait()
    assert done.returncode == 0, done
    report_complete(tmp_path / "report")
    assert records(earlier.runs)[run_id]["status"] == "finished"
    earlier.assert_intact()

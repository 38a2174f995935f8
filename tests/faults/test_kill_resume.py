"""kill -9 in each stage, then `run --resume`.

The process is killed while it is inside the stage: held on a request to the loopback arXiv or model
that the stage makes, or (stages that ask nothing of anyone) the moment its mark appears — the
sweep under way, the report's staging folder made, the stage before reported done. Then: the run
reads as stopped (never "running" with no process behind it), no half report is left where the
report goes, the checkpoint says where it stopped, and `--resume` finishes it from there with a
whole report. The earlier run's report folder and record are untouched throughout.
"""

from __future__ import annotations

import json
import os
import signal
import time

import pytest

from tests.faults.harness import (
    checkpoint_next,
    checkpoint_step,
    cli,
    ids_lookup,
    model_env,
    records,
    report_complete,
    run_id_of,
    search,
    start,
    status,
    step_before,
    wait_until,
)

ORDER = ["load_claims", "ground_citations", "retrieve_literature", "assess_stance", "run_simulations", "synthesize",
         "write_report"]


def _start_and_kill(stage, earlier, inquiry, arxiv, model, out):
    """Start a run, kill it inside `stage`; (run id, the killed command's result, env for a resume)."""
    stand_in, server = model
    args = ["run", "--inquiry", str(inquiry), "--out", str(out), "--sim-budget", "tiny" if stage == "run_simulations" else "none"]
    env = {}
    if stage in ("load_claims", "assess_stance"):  # held on the model's request
        args += ["--source", "snapshot", "--llm", "openai"]
        env = model_env(server)
        stand_in.hold = "DecompositionReply" if stage == "load_claims" else "StanceReply"
    elif stage in ("ground_citations", "retrieve_literature"):  # held on arXiv's answer
        args += ["--source", "arxiv", "--arxiv-url", arxiv.url, "--llm", "none"]
        arxiv.hold = ids_lookup if stage == "ground_citations" else search
    else:
        args += ["--source", "snapshot", "--llm", "none"]
    before = step_before(earlier.runs, earlier.run_id, stage)
    proc = start(*args, home=earlier.home, env=env)
    run_id = wait_until(lambda: "→" in proc.stderr and run_id_of(proc.stderr), "the run's first line", proc=proc)
    if stage in ("load_claims", "assess_stance"):
        wait_until(stand_in.held.is_set, f"the model asked in {stage}", proc=proc)
    elif stage in ("ground_citations", "retrieve_literature"):
        wait_until(arxiv.held.is_set, f"arXiv asked in {stage}", proc=proc)
    elif stage in ("run_simulations", "synthesize"):
        # kill once the checkpoint before the stage is written (its step read from the earlier run of the
        # same graph): inside the sweep, which takes seconds; inside synthesize, which takes milliseconds
        wait_until(lambda: (checkpoint_step(earlier.runs, run_id) or -1) >= before, f"the checkpoint before {stage}",
                   every=0.001, proc=proc)
        if stage == "run_simulations":
            time.sleep(0.3)
    else:  # write_report: the staging folder beside the report folder appears as it starts
        staging = out.with_name(f".{out.name}.{run_id}.partial")
        wait_until(staging.exists, "the report's staging folder", every=0.001, proc=proc)
    killed = proc.kill()
    stand_in.hold, arxiv.hold = None, None
    stand_in.release.set()
    arxiv.release.set()
    return run_id, killed, env


@pytest.mark.parametrize("stage", [
    "load_claims", "ground_citations", "retrieve_literature", "assess_stance",
    pytest.param("run_simulations", marks=pytest.mark.slow), "synthesize", "write_report",
])
def test_kill_9_in_a_stage_then_resume(stage, earlier, inquiry, arxiv, model, tmp_path):
    out = tmp_path / "report"
    run_id, killed, env = _start_and_kill(stage, earlier, inquiry, arxiv, model, out)
    assert killed.returncode == -signal.SIGKILL, killed
    if stage != "synthesize":
        assert stage not in killed.stages(), killed

    # What is left: no half report where the report goes; the run reads as stopped, saying how to resume.
    left = checkpoint_next(earlier.runs, run_id)
    if stage == "synthesize":  # killed in synthesize (or, as its results were saved, just after it)
        assert left in (("synthesize",), ("write_report",)), (left, str(killed))
    else:
        assert left == (stage,), left
    assert not out.exists() or not any(out.iterdir()), sorted(p.name for p in out.iterdir())
    stopped = (f"stopped without finishing (its process was killed, or the machine went down); resume with "
               f"`collapse-audit run --resume {run_id}`")
    assert status(earlier.runs, run_id) == ("failed", stopped), "never 'running' with no process behind it"
    if stage == "ground_citations":  # what `runs list` and `runs show` say of it (the same for every stage)
        listed = cli("runs", "list", "--format", "json", home=earlier.home)
        assert [r["status"] for r in json.loads(listed.stdout) if r["run_id"] == run_id] == ["failed"], listed
        assert f"error: {stopped}" in cli("runs", "show", run_id, home=earlier.home).stdout
    earlier.assert_intact()

    if stage == "write_report":  # artefacts gone before the resume (the empty folder, the snapshot index): remade
        if out.exists():
            out.rmdir()
        (earlier.home / "snapshot.sqlite").unlink()
    resumed = cli("run", "--resume", run_id, home=earlier.home, env=env, timeout=300)
    assert resumed.returncode == 0, resumed
    assert f"resuming at: {left[0]}" in resumed.stderr, resumed
    done = resumed.stages()
    assert done[0] == left[0] and done[-1] == "write_report", done
    assert not set(done) & set(ORDER[:ORDER.index(left[0])]), "stages checkpointed before the kill are not run again"
    report = report_complete(out)
    assert report["run_id"] == run_id and [c["id"] for c in report["claims"]] == ["C1"]
    if stage == "run_simulations":
        figures = sorted(p.name for p in (out / "figures").iterdir())  # drawn from the checkpointed sweep
        assert figures and sorted(report["simulations"]["figures"]) == [str(out / "figures" / f) for f in figures]
        assert (out / "report.html").read_text().count("data:image/png;base64,") == len(figures)
    row = records(earlier.runs)[run_id]
    assert (row["status"], row["error"]) == ("finished", None)
    assert not list(out.parent.glob(".report.*")), "no staging folder is left beside it"
    if stage == "retrieve_literature":  # resuming a finished run does nothing, and says so
        again = cli("run", "--resume", run_id, home=earlier.home, env=env)
        said = " ".join(again.stderr.split())  # rich folds a long line
        assert again.returncode == 0 and f"run {run_id} already finished; report in {out}" in said, again
        assert report_complete(out)["run_id"] == run_id
    earlier.assert_intact()


def test_ctrl_c_in_a_stage_held_on_a_source_exits_130_at_once_and_resume_finishes_it(earlier, inquiry, arxiv, tmp_path):
    out = tmp_path / "report"
    arxiv.hold = ids_lookup  # held inside ground_citations, and not let go until the process is gone
    proc = start("run", "--inquiry", str(inquiry), "--out", str(out), "--sim-budget", "none", "--source", "arxiv",
                 "--arxiv-url", arxiv.url, "--llm", "none", home=earlier.home)
    run_id = wait_until(lambda: "→" in proc.stderr and run_id_of(proc.stderr), "the run's first line", proc=proc)
    wait_until(arxiv.held.is_set, "arXiv asked in ground_citations", proc=proc)
    started = time.monotonic()
    stopped = proc.interrupt(15)
    waited = time.monotonic() - started
    arxiv.hold = None
    arxiv.release.set()

    assert stopped.returncode == 130, stopped  # never 1, which means findings
    assert waited < 10, f"Ctrl-C took {waited:.1f} s: it waited for the held request"
    resume = f"resume with `collapse-audit run --resume {run_id}`"
    assert stopped.error_lines() == [f"error: interrupted; {resume}"], stopped
    assert "Traceback" not in stopped.stderr and "Aborted" not in stopped.stderr, stopped
    state, error = status(earlier.runs, run_id)
    assert state == "failed" and resume in error, (state, error)  # never "running" with no process behind it
    assert not out.exists() or not any(out.iterdir())
    earlier.assert_intact()

    resumed = cli("run", "--resume", run_id, home=earlier.home, timeout=300)
    assert resumed.returncode == 0, resumed
    assert "resuming at: ground_citations" in resumed.stderr, resumed
    assert report_complete(out)["run_id"] == run_id
    earlier.assert_intact()


def test_ctrl_c_between_requests_marks_the_run_interrupted(earlier, inquiry, arxiv, tmp_path):
    """Ctrl-C that reaches the run while nothing holds it: the runner itself records why it stopped."""
    out = tmp_path / "report"
    arxiv.hold = ids_lookup
    proc = start("run", "--inquiry", str(inquiry), "--out", str(out), "--sim-budget", "none", "--source", "arxiv",
                 "--arxiv-url", arxiv.url, "--llm", "none", home=earlier.home)
    run_id = wait_until(lambda: "→" in proc.stderr and run_id_of(proc.stderr), "the run's first line", proc=proc)
    wait_until(arxiv.held.is_set, "arXiv asked in ground_citations", proc=proc)
    os.kill(proc.pid, signal.SIGINT)
    arxiv.hold = None
    arxiv.release.set()  # the stage's request comes back within the grace: the run stops by itself
    stopped = proc.wait(30)
    assert stopped.returncode == 130, stopped
    assert stopped.error_lines() == [f"error: interrupted; resume with `collapse-audit run --resume {run_id}`"], stopped
    assert status(earlier.runs, run_id) == ("failed", "interrupted (Ctrl-C)")
    earlier.assert_intact()


def test_ctrl_c_in_any_other_command_is_one_line_and_exit_130(earlier, arxiv, tmp_path):
    """A command without its own handling (here `verify-citations`, held on arXiv) says it was
    interrupted, in one line, and exits 130: never click's "Aborted!" and exit 1, which means flagged."""
    text = tmp_path / "cites.md"
    text.write_text("Attention replaced recurrence (Vaswani et al., 2017, arXiv:1706.03762).\n")
    arxiv.hold = ids_lookup
    proc = start("verify-citations", str(text), "--source", "arxiv", "--arxiv-url", arxiv.url, home=earlier.home)
    wait_until(arxiv.held.is_set, "arXiv asked", proc=proc)
    os.kill(proc.pid, signal.SIGINT)
    arxiv.hold = None
    arxiv.release.set()
    stopped = proc.wait(30)
    assert stopped.returncode == 130, stopped
    assert stopped.error_lines() == ["error: interrupted (Ctrl-C)"], stopped
    assert "Traceback" not in stopped.stderr and "Aborted" not in stopped.stderr, stopped

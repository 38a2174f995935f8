"""The report folder is written as a whole: killed or failing part way, a run leaves the folder as it
was; `--force` replaces what it held, all of it, and refuses a folder that holds more than a report."""

from __future__ import annotations

import shutil
import signal

from tests.faults.harness import (
    INQUIRY,
    checkpoint_next,
    cli,
    digest,
    records,
    report_complete,
    run_id_of,
    start,
    status,
    wait_until,
)

LIMIT = 36_000  # more than report.md, the run store and the checkpoints' WAL index (32 KiB) need; less than
# report.json of a two-claim inquiry (about 42 kB)


def test_force_over_a_report_killed_then_failing_part_way_then_resumed(earlier, tmp_path):
    # An earlier report folder, with a figure the new run will not draw: --force is to replace it all.
    out = tmp_path / "report"
    shutil.copytree(earlier.out, out)
    (out / "figures").mkdir()
    (out / "figures" / "curves.png").write_bytes(b"\x89PNG an earlier run's figure")
    before = digest(out)

    # 1. killed while the report is being written: the folder is as it was
    proc = start("run", "--inquiry", str(INQUIRY), "--source", "snapshot", "--llm", "none", "--sim-budget", "none",
                 "--out", str(out), "--force", home=earlier.home)
    run_id = wait_until(lambda: "→" in proc.stderr and run_id_of(proc.stderr), "the run's first line", proc=proc)
    staging = out.with_name(f".report.{run_id}.partial")
    wait_until(staging.exists, "the report's staging folder", every=0.001, proc=proc)
    assert proc.kill().returncode == -signal.SIGKILL
    assert checkpoint_next(earlier.runs, run_id) == ("write_report",)
    assert digest(out) == before, "a report killed while written leaves the folder as it was"

    # 2. resumed on a disk where no file may grow past LIMIT bytes: report.json fails part way (EFBIG,
    #    as ENOSPC on a full disk); one line, exit 4, the folder still as it was
    failed = cli("run", "--resume", run_id, home=earlier.home, fsize=LIMIT)
    assert failed.returncode == 4, failed
    [line] = failed.error_lines()
    assert "File too large" in line or "disk I/O error" in line, line
    assert "Traceback" not in failed.stderr
    assert digest(out) == before
    assert sorted(p.name for p in staging.iterdir()) == ["report.json", "report.md"], failed
    assert (staging / "report.json").stat().st_size == LIMIT, "report.json was cut short, out of sight"
    assert status(earlier.runs, run_id)[0] == "failed"

    # 3. resumed with room: one whole new report, nothing of the old one, nothing left beside it
    resumed = cli("run", "--resume", run_id, home=earlier.home)
    assert resumed.returncode == 0, resumed
    assert resumed.stages() == ["write_report"]
    report = report_complete(out)
    assert report["run_id"] == run_id
    assert sorted(p.name for p in out.iterdir()) == ["report.bib", "report.html", "report.json", "report.md"]
    assert not list(tmp_path.glob(".report.*")), "no staging folder is left beside it"
    assert records(earlier.runs)[run_id]["status"] == "finished"
    earlier.assert_intact()


def test_force_refuses_a_folder_that_holds_more_than_a_report(earlier, inquiry, tmp_path):
    out = tmp_path / "notes"
    shutil.copytree(earlier.out, out)
    (out / "thesis.tex").write_text("months of work")
    before = digest(out)
    result = cli("run", "--inquiry", str(inquiry), "--source", "snapshot", "--llm", "none", "--sim-budget", "none",
                 "--out", str(out), "--force", home=earlier.home)
    assert result.returncode == 2, result
    assert result.error_lines() == [f"error: --out {out} holds more than a report (thesis.tex); --force replaces a "
                                    "report folder as a whole and would delete them: choose another directory"]
    assert digest(out) == before and records(earlier.runs).keys() == {earlier.run_id}
    earlier.assert_intact()


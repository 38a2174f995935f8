"""A disk that fills part way through a run, and a data dir that cannot be written: one line and an
exit status that says what happened, never a traceback; the run resumable, earlier runs intact.
(A report that fails part way to be written: tests/faults/test_report_folder.py.)"""

from __future__ import annotations

import os

import pytest

from tests.faults.harness import cli, records, report_complete, run_id_of


def test_a_disk_that_fills_during_a_run_fails_it_in_one_line_and_resume_finishes_it(earlier, inquiry, tmp_path):
    out = tmp_path / "report"
    # No file may grow: the first checkpoint the run writes fails as on a full disk (EFBIG for ENOSPC).
    limit = (earlier.runs / "checkpoints.sqlite").stat().st_size
    failed = cli("run", "--inquiry", str(inquiry), "--source", "snapshot", "--llm", "none", "--sim-budget", "none",
                 "--out", str(out), home=earlier.home, fsize=limit)
    assert failed.returncode == 4, failed
    run_id = run_id_of(failed.stderr)
    [line] = failed.error_lines()
    assert any(why in line for why in ("disk I/O error", "database or disk is full", "File too large")), line
    assert line.endswith(f"resume with `collapse-audit run --resume {run_id}`"), line
    assert "Traceback" not in failed.stderr and not any(out.iterdir())
    assert records(earlier.runs)[run_id]["status"] == "failed"
    earlier.assert_intact()

    resumed = cli("run", "--resume", run_id, home=earlier.home)
    assert resumed.returncode == 0, resumed
    assert report_complete(out)["run_id"] == run_id
    earlier.assert_intact()


def test_a_data_dir_that_cannot_be_made_is_one_line_and_exit_2(inquiry, tmp_path):
    (tmp_path / "a-file").write_text("not a directory")
    home, out = tmp_path / "a-file" / "home", tmp_path / "report"
    result = cli("run", "--inquiry", str(inquiry), "--sim-budget", "none", "--out", str(out), home=home, cwd=tmp_path)
    assert result.returncode == 2, result
    assert result.lines() == [f"error: the data dir {home} is not writable (Not a directory); set COLLAPSE_AUDIT_HOME "
                              "to a writable directory"]
    assert not out.exists(), "a refused run leaves nothing"
    listed = cli("runs", "list", home=home, cwd=tmp_path)
    assert listed.returncode == 0 and listed.stdout.startswith("no runs recorded"), listed


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes through a read-only mode; the data dir under a file "
                                                "(test_a_data_dir_that_cannot_be_made_is_one_line_and_exit_2) stands in")
def test_a_read_only_data_dir_is_one_line_and_exit_2_and_its_runs_still_list(earlier, inquiry, tmp_path):
    out = tmp_path / "report"
    modes = {p: p.stat().st_mode for p in [earlier.home, *earlier.home.rglob("*")]}
    for path in [earlier.home, *earlier.home.rglob("*")]:
        path.chmod(path.stat().st_mode & ~0o222)
    try:
        result = cli("run", "--inquiry", str(inquiry), "--sim-budget", "none", "--out", str(out), home=earlier.home)
        listed = cli("runs", "list", "--format", "json", home=earlier.home)
    finally:
        for path, mode in modes.items():
            path.chmod(mode)
    assert result.returncode == 2, result
    assert result.lines() == [f"error: the data dir {earlier.home} is not writable (Permission denied); set "
                              "COLLAPSE_AUDIT_HOME to a writable directory"]
    assert listed.returncode == 0 and earlier.run_id in listed.stdout
    earlier.assert_intact()

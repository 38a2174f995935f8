"""The last line of defence: a fault nobody foresaw is one line and exit 4 — never a traceback, and
never exit 1, which means "findings" (a flagged citation, a change found by a re-check)."""

from __future__ import annotations

from importlib.metadata import entry_points

import pytest

from tests.faults.harness import cli


def test_the_cli_entry_point_is_what_the_harness_runs():
    """tests/subprocess_cli.py runs `agent.cli:app` in its processes: what the console script runs."""
    [script] = [e for e in entry_points(group="console_scripts") if e.name == "collapse-audit"]
    assert script.value == "agent.cli:app"


def test_a_fault_nobody_foresaw_is_one_line_and_exit_4(earlier, inquiry, tmp_path):
    # The run lock's file is a directory: no code path expects that.
    (earlier.runs / "runs.lock").unlink(missing_ok=True)
    (earlier.runs / "runs.lock").mkdir()
    args = ("run", "--inquiry", str(inquiry), "--source", "snapshot", "--llm", "none", "--sim-budget", "none")
    result = cli(*args, "--out", str(tmp_path / "report"), home=earlier.home)
    assert result.returncode == 4, result
    assert result.error_lines() == [f"error: unexpected failure: IsADirectoryError: [Errno 21] Is a directory: "
                                    f"'{earlier.runs / 'runs.lock'}' (COLLAPSE_AUDIT_TRACEBACK=1 shows where)"], result
    assert "Traceback" not in result.stderr
    traced = cli(*args, "--out", str(tmp_path / "again"), home=earlier.home, env={"COLLAPSE_AUDIT_TRACEBACK": "1"})
    assert traced.returncode == 4 and "Traceback (most recent call last)" in traced.stderr
    earlier.assert_intact()


def test_the_last_line_of_defence_turns_any_exception_into_one_line_and_exit_4(capsys):
    from agent.cli import _App
    from agent.runner import BadInput

    app = _App(add_completion=False)

    @app.command()
    def boom(kind: str) -> None:
        raise BadInput("--thing is unusable") if kind == "bad" else KeyError("no such key")

    for kind, code, line in (("bad", 2, "error: --thing is unusable"),
                             ("other", 4, "error: unexpected failure: KeyError: 'no such key' (COLLAPSE_AUDIT_TRACEBACK=1 "
                                          "shows where)")):
        with pytest.raises(SystemExit) as exit:
            app([kind], prog_name="collapse-audit")
        assert exit.value.code == code
        assert capsys.readouterr().err.strip() == line

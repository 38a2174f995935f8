"""Garbled files in the data dir. Caches, the snapshot index and the checkpoint database are moved
aside (kept, named `<name>.corrupt-<time>`) and rebuilt, with one line each saying so, never a
traceback; a garbled run store or claims store — the user's own records — is one line and exit 2,
and left exactly as it was. (Each cache's own rules, and the sweep cache's, are tested in
tests/test_hostile_input.py and tests/test_llm_cost.py.)"""

from __future__ import annotations

import os

from tests.faults.harness import (
    cli,
    digest,
    model_env,
    records,
    report_complete,
    run_id_of,
    search,
    start,
    wait_until,
)


def garble(path, how: str) -> bytes:
    data = path.read_bytes()
    if how == "header":
        data = b"not a database!!" + data[16:]
    elif how == "truncated":
        data = data[: len(data) // 2 + 7]
    else:  # noise
        data = os.urandom(len(data))
    path.write_bytes(data)
    return data


def test_garbled_caches_index_and_checkpoints_are_moved_aside_and_the_run_resumes(earlier, inquiry, arxiv, model,
                                                                                   tmp_path):
    stand_in, server = model
    out, env = tmp_path / "report", model_env(server)
    arxiv.hold = search  # stop the run in retrieve_literature, after it has used every cache
    proc = start("run", "--inquiry", str(inquiry), "--source", "arxiv", "--arxiv-url", arxiv.url, "--llm", "openai",
                 "--sim-budget", "none", "--out", str(out), home=earlier.home, env=env)
    wait_until(arxiv.held.is_set, "arXiv asked for literature", proc=proc)
    run_id = run_id_of(proc.kill().stderr)
    arxiv.hold = None
    arxiv.release.set()

    home = earlier.home
    garbled = {
        home / "runs" / "checkpoints.sqlite": garble(home / "runs" / "checkpoints.sqlite", "truncated"),
        home / "snapshot.sqlite": garble(home / "snapshot.sqlite", "header"),
        home / "cache.sqlite": garble(home / "cache.sqlite", "noise"),
        home / "llm_cache.sqlite": garble(home / "llm_cache.sqlite", "header"),
    }
    resumed = cli("run", "--resume", run_id, home=home, env=env)
    assert resumed.returncode == 0, resumed
    assert "Traceback" not in resumed.stderr and not resumed.error_lines()
    said = {
        "the checkpoint database": "started afresh (runs it held start again from their first stage)",
        "the snapshot index": ("rebuilt from the packaged snapshot (papers added by `snapshot ingest` or `snapshot "
                               "update` must be added again)"),
        "the arXiv lookup cache": "rebuilt empty",
        "the LLM response cache": "rebuilt empty",
    }
    for (path, data), (what, rebuilt) in zip(garbled.items(), said.items()):
        [aside] = path.parent.glob(path.name + ".corrupt-*")
        if path.name != "checkpoints.sqlite":  # (SQLite may first roll a hot journal back into that one)
            assert aside.read_bytes() == data, f"{path.name} is kept as it was, for a person to look at"
        assert f"{what} could not be read; it was moved aside to {aside} and {rebuilt}" in resumed.lines(), resumed
    # the checkpoints went with the garbled file: the run started again from its first stage
    assert "resuming at" not in resumed.stderr and resumed.stages()[0] == "load_claims"
    assert report_complete(out)["run_id"] == run_id
    assert records(earlier.runs)[run_id]["status"] == "finished"
    earlier.assert_intact()


def test_a_garbled_run_store_is_one_line_and_exit_2_and_left_as_it_was(earlier, inquiry, tmp_path):
    store = earlier.runs / "runs.sqlite"
    data = garble(store, "header")
    expected = (f"error: the run store {store} cannot be read (file is not a database): move it aside to record runs "
                "afresh (the runs it holds can then no longer be listed, resumed or re-checked) or restore it from a "
                "backup")
    out = tmp_path / "report"
    for args in (["run", "--inquiry", str(inquiry), "--sim-budget", "none", "--out", str(out)],
                 ["run", "--resume", earlier.run_id], ["runs", "list"], ["runs", "show", earlier.run_id],
                 ["recheck", "--inquiry", str(inquiry)]):
        result = cli(*args, home=earlier.home)
        assert result.returncode == 2, result
        assert result.lines() == [expected], result
    assert store.read_bytes() == data, "a user's store is never discarded, nor rewritten"
    assert not out.exists(), "a refused run leaves nothing"
    assert digest(earlier.out) == earlier.report


def test_a_garbled_claims_store_is_one_line_and_exit_2_and_left_as_it_was(inquiry, tmp_path):
    home, project = tmp_path / "home", tmp_path / "project"
    assert cli("init", str(project), "--inquiry", str(inquiry), home=home).returncode == 0
    added = cli("claims", "add", "Diversity, not the ratio, decides collapse (2025).", home=home, cwd=project)
    assert added.returncode == 0, added
    claims = project / "claims.jsonl"
    data = claims.read_bytes()[:30] + b"\xff\xfe garbled"
    claims.write_bytes(data)
    for args in (["run", "--sim-budget", "none"], ["claims", "list"]):
        result = cli(*args, home=home, cwd=project)
        assert result.returncode == 2, result
        [line] = result.lines()
        assert line.startswith("error: ") and str(claims) in line, line
    assert claims.read_bytes() == data
    assert not [p for p in (project / "runs").iterdir() if p.is_dir()], "a refused run leaves nothing"


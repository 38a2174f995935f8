"""`simulate --executor ray`: the grid batches as Ray tasks on a Ray instance started here on loopback.

A Ray run gives the same numbers as a local run and lands in the same cache (one file per config
hash, byte for byte the same); a second run is a cache hit that needs no cluster; an unreachable
cluster is exit 3 and a missing Ray exit 2, each in one line.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import sys
import tempfile
import time

import pytest
from typer.testing import CliRunner

# Ray reads these when it is imported: every Ray address on this machine is a loopback one (Ray's
# default is the machine's network address), and Ray sends no usage report.
os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"
os.environ["RAY_USAGE_STATS_ENABLED"] = "0"

import ray  # noqa: E402 — in the `test` extra: this test is never skipped for want of it

from agent.cli import app  # noqa: E402
from simulations.executors import RayExecutor, placement  # noqa: E402
from tests.subprocess_cli import run_cli  # noqa: E402

# Two families, so two batches run as two tasks at once; small enough for seconds on 2 cores.
GRID = ["--family", "categorical", "--family", "gaussian", "--budget", "tiny", "--regime", "fresh", "--ratios", "0,0.5,0.9",
        "--real-amounts", "50,200", "--generations", "6", "--seeds", "4", "--device", "cpu", "--format", "json"]


@pytest.fixture(scope="module")
def cluster():
    """A Ray head on 127.0.0.1 with 2 CPUs, started by this process and shut down with it."""
    assert not ray.is_initialized()
    auth_mode = os.environ.get("RAY_AUTH_MODE")
    temp = tempfile.mkdtemp(prefix="ray-", dir="/tmp")  # short: Ray's socket paths must stay under 108 bytes
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, _temp_dir=temp)
    try:
        address = ray.get_runtime_context().gcs_address
        assert address.startswith("127.0.0.1:"), address
        assert {node["NodeManagerAddress"] for node in ray.nodes()} == {"127.0.0.1"}
        yield address
    finally:
        ray.shutdown()
        shutil.rmtree(temp, ignore_errors=True)
        if auth_mode is None:  # ray.init turned token authentication on for this process
            os.environ.pop("RAY_AUTH_MODE", None)


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]  # closed again on leaving: nothing listens there


def _cache_files(home) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in home.rglob("sweep-*.json")}


def test_ray_run_equals_local_run_and_shares_its_cache(cluster, tmp_path, monkeypatch):
    # Ray: a separate driver process connects to the head by its address, as on a real cluster.
    started = time.perf_counter()
    # A new Ray cluster uses token authentication: a driver given its address says so (its token is in ~/.ray).
    remote = run_cli("simulate", *GRID, "--executor", "ray", "--ray-address", cluster, home=tmp_path / "ray", timeout=120,
                     env={"RAY_AUTH_MODE": os.environ.get("RAY_AUTH_MODE", "disabled")})
    ray_seconds = time.perf_counter() - started
    assert remote.returncode == 0, remote.stderr

    monkeypatch.setenv("COLLAPSE_AUDIT_HOME", str(tmp_path / "local"))
    started = time.perf_counter()
    local = CliRunner().invoke(app, ["simulate", *GRID])
    local_seconds = time.perf_counter() - started
    assert local.exit_code == 0, local.output
    print(f"ray {ray_seconds:.1f} s (a new driver process), local {local_seconds:.1f} s (in process)")

    payload = json.loads(remote.stdout)
    assert {c["family"] for c in payload["cells"]} == {"categorical", "gaussian"}
    assert payload == json.loads(local.stdout), "the engine is seeded and exact: the executor changes no number"
    ray_cache, local_cache = _cache_files(tmp_path / "ray"), _cache_files(tmp_path / "local")
    assert len(ray_cache) == 1 and ray_cache == local_cache, "the same cache file (config hash), byte for byte"

    # A second run is a cache hit: nothing runs, so it needs no cluster at all.
    (cached,) = (tmp_path / "ray").rglob("sweep-*.json")
    written = cached.stat().st_mtime_ns
    monkeypatch.setenv("COLLAPSE_AUDIT_HOME", str(tmp_path / "ray"))
    again = CliRunner().invoke(app, ["simulate", *GRID, "--executor", "ray", "--ray-address", f"127.0.0.1:{_closed_port()}"])
    assert again.exit_code == 0, again.output
    assert json.loads(again.stdout) == payload and cached.stat().st_mtime_ns == written


def test_tasks_report_progress_and_use_a_connection_already_made(cluster, tmp_path):
    from simulations.sweep import SweepConfig, run_sweep

    cfg = SweepConfig.model_validate({**SweepConfig.budget("tiny", device="cpu").model_dump(), "families": ["categorical", "markov"],
                                      "regimes": ["fresh"], "ratios": [0.0, 0.5], "real_amounts": [50], "generations": 3, "seeds": 2})
    calls: list[tuple[int, int]] = []
    result = run_sweep(cfg, executor=RayExecutor(), progress=lambda done, total: calls.append((done, total)))
    assert ray.is_initialized(), "a connection this process made is left open"
    assert len(calls) == 2 and calls[-1] == (len(result.cells), len(result.cells))
    assert result.model_dump_json() == run_sweep(cfg).model_dump_json()


def test_unreachable_cluster_is_exit_3_in_one_line(tmp_path, monkeypatch):
    monkeypatch.setenv("COLLAPSE_AUDIT_HOME", str(tmp_path / "home"))
    started = time.perf_counter()
    result = CliRunner().invoke(app, ["simulate", *GRID, "--executor", "ray", "--ray-address", f"127.0.0.1:{_closed_port()}"])
    assert result.exit_code == 3, result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and "unreachable" in lines[0] and "127.0.0.1:" in lines[0], result.output
    assert time.perf_counter() - started < 30, "refused at once, not after Ray's own minutes of retries"

    bad = CliRunner().invoke(app, ["simulate", *GRID, "--executor", "ray", "--ray-address", "nowhere"])
    assert bad.exit_code == 2 and "host:port" in bad.output


def test_without_ray_installed_is_exit_2_saying_how_to_install(tmp_path, monkeypatch):
    monkeypatch.setenv("COLLAPSE_AUDIT_HOME", str(tmp_path / "home"))
    monkeypatch.setitem(sys.modules, "ray", None)  # as if not installed: find_spec and import both fail
    result = CliRunner().invoke(app, ["simulate", *GRID, "--executor", "ray"])
    assert result.exit_code == 2, result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and "pip install 'collapse-audit[ray]'" in lines[0], result.output


def test_gpu_placement():
    assert placement("auto", 0) == ("cpu", 0) and placement("cpu", 4) == ("cpu", 0)
    assert placement("auto", 2) == ("cuda", 1) and placement("cuda", 1) == ("cuda", 1)
    with pytest.raises(ValueError, match="reports no GPU"):
        placement("cuda", 0)


def test_cuda_on_a_cluster_without_gpus_is_exit_2(cluster, tmp_path, monkeypatch):
    monkeypatch.setenv("COLLAPSE_AUDIT_HOME", str(tmp_path / "home"))
    grid = [a if a != "cpu" else "cuda" for a in GRID]
    result = CliRunner().invoke(app, ["simulate", *grid, "--executor", "ray"])  # the connection this process holds
    assert result.exit_code == 2, result.output
    assert "reports no GPU" in result.output

"""Fixtures of the fault suite: a data dir with one finished run to keep intact, loopback arXiv and model."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.arxiv_server import snapshot_papers
from tests.faults.harness import (
    Earlier,
    HeldArxiv,
    StandIn,
    cli,
    digest,
    model_server,
    records,
    run_id_of,
)

# One dated claim with one arXiv ID: every stage runs, each as briefly as it can.
ONE_CLAIM = """# One claim about recursive training

Does training on generated data erase the tails of the original distribution?

## What the literature found (dated claims)

- Training generative models on recursively generated data makes the tails of the original distribution disappear (2023, arXiv:2305.17493).
"""


@pytest.fixture(scope="session")
def inquiry(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("inquiry") / "one_claim.md"
    path.write_text(ONE_CLAIM, encoding="utf-8")
    return path


@pytest.fixture(scope="session")
def pristine(tmp_path_factory: pytest.TempPathFactory, inquiry: Path) -> Earlier:
    """A data dir holding one finished run (offline, no simulations) and its report folder."""
    root = tmp_path_factory.mktemp("earlier")
    home, out = root / "home", root / "report"
    result = cli("run", "--inquiry", str(inquiry), "--source", "snapshot", "--llm", "none", "--sim-budget", "none",
                 "--out", str(out), home=home)
    assert result.returncode == 0, result
    run_id = run_id_of(result.stderr)
    return Earlier(home, out, run_id, digest(out), records(home / "runs")[run_id])


@pytest.fixture
def earlier(pristine: Earlier, tmp_path: Path) -> Earlier:
    """A copy of the data dir with the earlier run, for one test to break."""
    return pristine.copy(tmp_path)


@pytest.fixture(scope="session")
def _arxiv():
    with HeldArxiv(snapshot_papers(), retry_after=0.05, lifetime=900) as server:
        yield server


@pytest.fixture
def arxiv(_arxiv: HeldArxiv):
    """The loopback arXiv, answering normally until a test scripts a fault; released afterwards."""
    _arxiv.hold, _arxiv.always, _arxiv.slow_s, _arxiv.retry_after_503 = None, None, 0.5, None
    _arxiv.faults.clear()
    _arxiv.requests.clear()
    _arxiv.held.clear()
    _arxiv.release.clear()
    yield _arxiv
    _arxiv.release.set()
    _arxiv.hold, _arxiv.always = None, None


@pytest.fixture(scope="session")
def _model():
    stand_in = StandIn()
    with model_server(stand_in) as server:
        yield stand_in, server


@pytest.fixture
def model(_model):
    """(the stand-in model, its loopback server), answering until a test scripts a fault."""
    stand_in, server = _model
    stand_in.hold, stand_in.fail = None, None
    stand_in.held.clear()
    stand_in.release.clear()
    yield stand_in, server
    stand_in.release.set()
    stand_in.hold = None

"""Test-wide settings.

torch runs on one intra-op thread in tests: the simulations' tensors are small enough that a
second thread gains little, and on a shared 2-core machine a 2-thread pool waits on a busy core at
every op (the simulation tests measured 60 s on one thread against 148 s on two under load).
"""

import os

import pytest
import torch

torch.set_num_threads(1)


@pytest.fixture(autouse=True)
def _offline_by_default(monkeypatch):
    """No test inherits the developer's OPENAI_* settings: `--llm auto` (the default) would go online
    with them. Tests of an endpoint set their own (a loopback server's URL)."""
    import os

    for name in [n for n in os.environ if n.startswith("OPENAI_")]:
        monkeypatch.delenv(name)


@pytest.fixture(scope="session", autouse=True)
def _shared_vector_cache(tmp_path_factory):
    """One MiniLM vector cache for the session (tools/embeddings.py `VectorCache`), shared by the
    tests, the CLI processes they start and the xdist workers, and never the developer's
    ~/.cache: a vector depends only on the model and the text, so sharing changes no result and
    spares every test that runs the product re-encoding the snapshot."""
    root = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        root = root.parent  # the workers' base folders sit side by side in the session's folder
    os.environ["COLLAPSE_AUDIT_VECTOR_CACHE"] = str(root / "vectors.sqlite")
    yield


@pytest.fixture(autouse=True)
def _no_command_outlives_its_test():
    """A command a test started (tests/subprocess_cli.py) and left running — the test failed half
    way — is killed when the test ends."""
    yield
    from tests.subprocess_cli import stop_all

    stop_all()

"""Test-wide settings.

torch runs on one intra-op thread in tests: the simulations' tensors are small enough that a
second thread gains little, and on a shared 2-core machine a 2-thread pool waits on a busy core at
every op (the simulation tests measured 60 s on one thread against 148 s on two under load).
"""

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

"""Shared fixtures: every test gets its own data dir, so no test sees another's runs or caches."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "home"
    monkeypatch.setenv("COLLAPSE_AUDIT_HOME", str(path))
    return path


"""Run the installed `collapse-audit` the way a user would, in its own process."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path


def run_cli(*args: str, home: Path, cwd: Path | None = None, timeout: float = 300,
            env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """`env`: variables to set on top of this process's environment. OPENAI_* variables of this
    environment are dropped (`--llm auto` would otherwise go online on a developer's machine with a
    key set); a test that wants an endpoint passes them in `env`."""
    inherited = {k: v for k, v in os.environ.items() if not k.startswith("OPENAI_")}
    env = {**inherited, **(env or {}), "COLLAPSE_AUDIT_HOME": str(home)}
    exe = Path(sys.executable).with_name("collapse-audit")
    return subprocess.run([str(exe), *args], capture_output=True, text=True, env=env, cwd=cwd, timeout=timeout)

"""The run lock: one run at a time per run store, so that two runs never write one store at once.

`run_audit` (agent/runner.py) holds an exclusive `fcntl.flock` on ``runs.lock`` beside the run store
(``PROJECT/runs/runs.lock`` for a project's runs, ``$COLLAPSE_AUDIT_HOME/runs/runs.lock`` for the
data dir's) for the whole run. A second run of the same store waits up to its `--wait` seconds
(default 0) and is otherwise refused with one line and exit 5 (`EXIT_BUSY`); a second `--resume`
of the run that holds the lock is told "run X is already running (pid N)".

The lock belongs to the open file, not to the file's existence: the kernel drops it when the holder
exits, however it exits, so a crashed run never leaves a stale lock (the file stays, empty or
holding the last holder's details, and is reused). While held, the file holds the holder's run id,
pid and start time as JSON, for the refusal message. Where `fcntl` is missing (Windows) runs are not
locked.
"""

from __future__ import annotations

import json
import os
import time
from datetime import datetime, timezone
from pathlib import Path

try:
    import fcntl
except ImportError:  # pragma: no cover — not POSIX
    fcntl = None  # type: ignore[assignment]

LOCK_NAME = "runs.lock"
POLL_S = 0.2


class RunBusy(RuntimeError):
    """Another run holds the store's lock; the message is one line saying which and what to do."""


def lock_path(root: Path) -> Path:
    return root / LOCK_NAME


def holder(root: Path) -> dict | None:
    """Who holds (or last held, if it crashed) the lock of the store at `root`: run_id, pid, since."""
    try:
        data = json.loads(lock_path(root).read_text(encoding="utf-8") or "null")
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def holds(root: Path, run_id: str) -> bool:
    """Whether run `run_id` holds the lock of the store at `root`, in a process that is alive.

    A run recorded as running that does not was stopped without finishing (killed, or its machine
    went down): agent/store.py reads it as failed. Where runs are not locked (no `fcntl`) a run's
    record is taken at its word."""
    if fcntl is None:
        return True
    who = holder(root)
    if not who or who.get("run_id") != run_id:
        return False
    try:
        os.kill(int(who["pid"]), 0)
    except PermissionError:
        return True  # alive, another user's
    except (OSError, KeyError, TypeError, ValueError, OverflowError):
        return False
    return True


class RunLock:
    """`lock.acquire(wait=...)` or raise RunBusy; `lock.release()` when the run is over."""

    def __init__(self, root: Path, run_id: str) -> None:
        self.root, self.run_id = root, run_id
        self._fd: int | None = None

    @property
    def path(self) -> Path:
        return lock_path(self.root)

    def acquire(self, *, wait: float = 0.0) -> None:
        if fcntl is None:
            return
        self.root.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        deadline = time.monotonic() + max(wait, 0.0)
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                left = deadline - time.monotonic()
                if left <= 0:
                    os.close(fd)
                    raise RunBusy(self._busy_message(wait)) from None
                time.sleep(min(POLL_S, left))
        self._fd = fd
        info = {"run_id": self.run_id, "pid": os.getpid(), "since": datetime.now(timezone.utc).isoformat(timespec="seconds")}
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps(info).encode(), 0)

    def release(self) -> None:
        if self._fd is None:
            return
        try:
            os.ftruncate(self._fd, 0)  # no holder now
        finally:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> RunLock:
        self.acquire()
        return self

    def __exit__(self, *exc) -> None:
        self.release()

    def _busy_message(self, wait: float) -> str:
        who = holder(self.root) or {}
        run_id, pid = who.get("run_id"), who.get("pid")
        if run_id == self.run_id:
            return f"run {run_id} is already running (pid {pid})"
        other = f"another run ({run_id}, pid {pid})" if run_id else "another run"
        waited = f" (waited {wait:g} s)" if wait > 0 else ""
        return (f"{other} is using the run store {self.root}{waited}: one run at a time per audit; "
                "try again when it has finished, or pass --wait SECONDS to wait for it")

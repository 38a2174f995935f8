"""Writing a file so that a crash never leaves half of it, and setting aside a file that is garbled.

The one home for both rules, here in the lowest layer (simulations/ imports nothing from tools/ or
agent/): the sweep cache (simulations/sweep.py), the arXiv and LLM caches (tools/), the claims store
and checkpoints (agent/) all use them. Writing a whole folder is tools/files.py's.

- `atomic_write`: the new content goes to a temporary file in the same directory (same filesystem,
  so the rename is atomic), is flushed to disk, and replaces the old file in one `os.replace`.
  Readers see the old file or the new one, never a truncated one, even if the process dies midway.
- `set_aside`: a file that cannot be read back (a garbled cache) is renamed to
  `<name>.corrupt-<UTC timestamp>` next to it, kept for a person to look at, and the caller rebuilds
  from scratch. Only caches are set aside; a user's store is never discarded automatically.
"""

from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path

# Read once at import (setting the umask to read it is not thread-safe, and the agent runs threads).
_UMASK = os.umask(0o022)
os.umask(_UMASK)


def atomic_write(path: Path, data: str | bytes, *, encoding: str = "utf-8") -> None:
    """Replace `path` with `data` in one step (creating its directory when missing)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    raw = data.encode(encoding) if isinstance(data, str) else data
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(handle, "wb") as out:
            out.write(raw)
            out.flush()
            os.fsync(out.fileno())
        if path.exists():
            # mkstemp creates the file 0600; keep the permissions the file had
            os.chmod(temporary, path.stat().st_mode & 0o7777)
        else:
            os.chmod(temporary, 0o666 & ~_UMASK)  # as open() would have created it
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def set_aside(path: Path, *, companions: tuple[str, ...] = ()) -> Path:
    """Rename a garbled `path` to `<name>.corrupt-<timestamp>` (with a counter if that exists) and
    return the new path. `companions` are suffixes of files that belong to it (an SQLite
    "-journal"), moved along so that they are never applied to the file rebuilt in its place."""
    path = Path(path)
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    target = path.with_name(f"{path.name}.corrupt-{stamp}")
    counter = 1
    while target.exists():
        target = path.with_name(f"{path.name}.corrupt-{stamp}-{counter}")
        counter += 1
    os.replace(path, target)
    for suffix in companions:
        companion = path.with_name(path.name + suffix)
        if companion.exists():
            os.replace(companion, target.with_name(target.name + suffix))
    return target

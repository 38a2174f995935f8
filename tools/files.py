"""Writing a folder as a whole: a run's report folder.

`staging_dir` + `replace_dir`: the folder's new contents are built in a hidden folder beside it and
renamed into its place, so a process killed while writing leaves the old folder (or none) and a
hidden `.<name>.<tag>.partial`, never a folder with half a report in it; and what the old folder
held goes as a whole (`--force`). Single files are written by simulations/files.py `atomic_write`.
"""

from __future__ import annotations

import errno
import os
import shutil
from pathlib import Path


def staging_dir(target: Path, tag: str) -> Path:
    """An empty hidden folder beside `target`, on its filesystem, to build `target`'s new contents in
    (what an interrupted attempt with the same `tag` left there is cleared first)."""
    target = Path(target)
    staging = target.with_name(f".{target.name}.{tag}.partial")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    return staging


def replace_dir(staging: Path, target: Path) -> None:
    """Put the folder `staging` in `target`'s place, as a whole.

    A missing or empty `target` is replaced in one atomic rename. A non-empty one is first renamed
    aside (``.<name>.<tag>.replaced``) and deleted once the new folder is in place; a crash between
    the two renames leaves no `target` but both folders, and the next attempt clears them."""
    staging, target = Path(staging), Path(target)
    old = staging.with_name(staging.name.removesuffix(".partial") + ".replaced")
    if target.is_dir():
        os.chmod(staging, target.stat().st_mode & 0o7777)  # the folder keeps its permissions
    try:
        os.rename(staging, target)
    except OSError as error:
        if error.errno not in (errno.ENOTEMPTY, errno.EEXIST):
            raise
        shutil.rmtree(old, ignore_errors=True)
        os.rename(target, old)
        os.rename(staging, target)
    shutil.rmtree(old, ignore_errors=True)  # the old contents, or what an interrupted attempt left

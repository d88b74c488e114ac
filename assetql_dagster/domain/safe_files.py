"""Checks that keep batch validation to the batch's own regular files.

A batch is user-supplied: any of its files may be a symlink to somewhere else on the machine
(/etc/passwd), or a FIFO or device that blocks or never ends when opened. These checks use only
stat() and path resolution, so nothing is opened before it is known to be a regular file inside
the batch folder.
"""

from __future__ import annotations

import os
import re
import stat
from pathlib import Path

_CONTROL_RE = re.compile(r"[\x00-\x1f\x7f]")


def _kind(mode: int) -> str:
    if stat.S_ISFIFO(mode):
        return "a FIFO (named pipe)"
    if stat.S_ISSOCK(mode):
        return "a socket"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device"
    return "a special file"


def file_problem(path: Path, root: Path, expected: str) -> str | None:
    """Why `path` cannot be read as a regular file inside the folder `root`, or None when it can.

    `root` must already be resolved. `expected` says what the file should be ("a CSV file").
    """
    try:
        resolved = path.resolve(strict=True)
    except FileNotFoundError:
        return f"is a link to a file that does not exist; expected {expected}"
    except (OSError, RuntimeError) as error:  # RuntimeError: a symlink loop on Python < 3.13
        return f"cannot be resolved ({getattr(error, 'strerror', None) or error}); expected {expected}"
    if not resolved.is_relative_to(root):
        return f"is a link to a location outside the batch folder; copy {expected} into the batch folder"
    try:
        mode = os.stat(resolved).st_mode
    except OSError as error:
        return f"cannot be read ({error.strerror or error}); expected {expected}"
    if stat.S_ISDIR(mode):
        return f"is a folder, expected {expected}"
    if not stat.S_ISREG(mode):
        return f"is {_kind(mode)}, not a regular file; expected {expected}"
    return None


def folder_problem(path: Path, root: Path) -> str | None:
    """Why `path` cannot be used as a sub-folder of the folder `root` (already resolved), or None."""
    try:
        resolved = path.resolve(strict=True)
    except (OSError, RuntimeError) as error:
        return f"cannot be resolved ({getattr(error, 'strerror', None) or error})"
    if not resolved.is_relative_to(root):
        return "is a link to a location outside the batch folder; copy the folder into the batch folder"
    return None  # the caller reports a path that is not a folder in its own words


def name_component_problem(name: str) -> str | None:
    """Why `name` cannot be one component of a storage key, or None when it can.

    Mirrors `check_key` in the storage resource (which domain code cannot import): no "", "."
    or "..", no control characters (ord < 32, DEL), no backslash and no "/"
    (a component holds no separator).
    """
    if name in ("", ".", ".."):
        return f"file name {name!r} cannot be stored"
    if _CONTROL_RE.search(name):
        return f"file name {name!r} contains a control character; rename the file"
    if "\\" in name:
        return f"file name {name!r} contains a backslash, which storage keys cannot hold; rename the file"
    if "/" in name:
        return f"file name {name!r} contains '/'; rename the file"
    return None

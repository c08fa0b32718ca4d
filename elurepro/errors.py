"""Errors that the command-line tools report as one clear line instead of a traceback.

Each error carries the exit status the command ends with: 2 for what the user must change (the
command, the config, the data, a damaged file), 1 for what the machine refused (a full disk, a
read-only or forbidden folder), where the same command works once that is fixed.
"""

from __future__ import annotations

import errno
import os


class ElureproError(Exception):
    """Base class: a problem the user can fix (bad config, missing data)."""

    exit_code = 2


class ConfigError(ElureproError):
    """A configuration value is invalid."""


class DataError(ElureproError):
    """A data set is missing, incomplete or corrupt."""


class CheckpointError(ElureproError):
    """A checkpoint is corrupt or truncated and no usable one is left."""


class StorageError(ElureproError, OSError):
    """The operating system refused a write: no space, read-only, permission denied. Still an
    OSError (with its errno), for callers that handle those."""

    exit_code = 1


# Why each common refusal happens, and what to do about it.
_HINTS = {
    errno.ENOSPC: "free some space, or point runs_dir (cache_dir for derived data) at another disk",
    errno.EDQUOT: "the disk quota is used up: free some space, or point runs_dir at another disk",
    errno.EROFS: "point runs_dir (cache_dir for derived data) at a writable folder",
    errno.EACCES: "check the folder's owner and permissions, or point runs_dir at your own folder",
    errno.EPERM: "check the folder's owner and permissions, or point runs_dir at your own folder",
    errno.ENOTDIR: "a part of the path is a file, not a folder",
    errno.ENOENT: "a folder on the path is missing (removed while running?)",
}


def os_error_name(err: OSError) -> str:
    """``ENOSPC``-style name of an OSError's errno ('' when it has none)."""
    return errno.errorcode.get(err.errno, "") if err.errno is not None else ""


def storage_error(err: OSError, path: str | os.PathLike, doing: str = "write") -> StorageError:
    """One line for an OSError: what was done to which path, the system's words, and the fix.

    ``path`` names the file being written when the error itself has no file name (a ``write``
    that found the disk full has none). A StorageError is returned as it is."""
    if isinstance(err, StorageError):
        return err
    where = err.filename if err.filename else path
    name = os_error_name(err)
    reason = err.strerror or str(err) or type(err).__name__
    hint = _HINTS.get(err.errno, "fix it")
    error = StorageError(
        f"cannot {doing} {where}: {reason}{f' [{name}]' if name else ''}; {hint}, "
        "then run the same command again"
    )
    error.errno = err.errno
    return error


def one_line(err: BaseException) -> str:
    """An exception's message as one line: its last non-empty line (a download library lists
    every mirror it tried; the last line says what went wrong)."""
    lines = [line.strip() for line in str(err).splitlines() if line.strip() not in ("", ")")]
    return lines[-1] if lines else type(err).__name__

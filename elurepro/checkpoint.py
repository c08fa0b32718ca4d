"""Atomic files and verified checkpoints.

Every file is written to a temporary name, synced and renamed, so a crash mid-write never leaves
a half-written file behind, and it ends with the mode an ordinary ``open(path, "w")`` would give
(``0o666`` less the umask) so that a shared runs folder stays readable for colleagues.

A checkpoint is an ordinary ``torch.save`` file (``torch.load`` reads it) whose zip archive
comment records the size and SHA-256 of the archive, the step and the time it was saved. A file
cut short or altered afterwards (a full disk on another machine, a failing disk, a copy
interrupted half-way) is recognised before any of it is used. One previous checkpoint is kept
beside the current one (``checkpoint.prev.pt``), and ``restore_checkpoint`` falls back to it.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any, BinaryIO

import torch

from elurepro.errors import CheckpointError, StorageError, storage_error

# Raises when the caller may no longer write (a claim taken over by another worker).
Fence = Callable[[], None]

# A population's checkpoint in its folder: the trainer writes it, the run store resumes from it.
CHECKPOINT = "checkpoint.pt"
# The archive comment of a verified checkpoint starts with this.
_MAGIC = b"elurepro-checkpoint "
_EOCD = b"PK\x05\x06"  # zip end-of-central-directory record: 22 bytes + comment
_EOCD_SIZE = 22
_MAX_COMMENT = 0xFFFF


# ------------------------------------------------------------------ atomic files
def umask() -> int:
    """The process's umask, read without changing it where the system allows (Linux)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    return _umask_by_setting()


@cache
def _umask_by_setting() -> int:
    # os.umask can only be read by setting it; done once, since it is process-wide.
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def file_mode() -> int:
    """The mode ``open(path, "w")`` gives a new file: 0o666 less the umask."""
    return 0o666 & ~umask()


def atomic_write_bytes(
    path: Path, write: Callable[[BinaryIO], Any], fence: Fence | None = None
) -> None:
    """Write ``path`` through ``write(f)`` atomically; StorageError (one line) if the system
    refuses, with the previous file under ``path`` untouched. ``fence`` is called right before
    the rename that makes the file visible; whatever it raises leaves ``path`` untouched."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise storage_error(err, path.parent, "create the folder") from None
    try:
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    except OSError as err:
        raise storage_error(err, path) from None
    try:
        # mkstemp creates 0o600; colleagues sharing the runs folder must be able to read.
        os.fchmod(fd, file_mode())
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        if fence is not None:
            fence()
        os.replace(tmp, path)
    except OSError as err:
        Path(tmp).unlink(missing_ok=True)
        raise storage_error(err, path) from None
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_json(path: Path, obj: Any, fence: Fence | None = None) -> None:
    data = (json.dumps(obj, indent=2, sort_keys=True, default=str) + "\n").encode()
    atomic_write_bytes(path, lambda f: f.write(data), fence)


def check_writable(folder: Path) -> None:
    """StorageError (one line) unless files can be created in ``folder``, or, where it does not
    exist yet, in the nearest folder above it. Creates nothing that stays."""
    folder = Path(folder).expanduser().absolute()
    try:
        nearest = folder
        while not nearest.exists() and nearest.parent != nearest:
            nearest = nearest.parent
        is_folder = nearest.is_dir()
        if is_folder:
            fd, probe = tempfile.mkstemp(dir=nearest, prefix=".elurepro-write-test.")
    except OSError as err:
        err.filename = None  # the probe's own name would only confuse
        raise storage_error(err, folder, "write to the runs folder") from None
    if not is_folder:
        raise StorageError(
            f"cannot write to the runs folder {folder}: {nearest} is a file, not a folder; "
            "set runs_dir to a folder"
        )
    os.close(fd)
    with contextlib.suppress(OSError):
        os.unlink(probe)


# ------------------------------------------------------------------ checkpoints
def previous_path(path: Path) -> Path:
    """Where the checkpoint before ``path`` is kept: ``checkpoint.prev.pt``."""
    path = Path(path)
    return path.with_name(f"{path.stem}.prev{path.suffix}")


class _HashingWriter:
    """Passes torch.save's writes on to a file, hashing them and keeping the last bytes."""

    def __init__(self, f: BinaryIO) -> None:
        self.f = f
        self.sha = hashlib.sha256()
        self.size = 0
        self.tail = b""
        self.error: OSError | None = None

    def write(self, data: bytes) -> int:
        try:
            self.f.write(data)
        except OSError as err:
            self.error = err  # torch reports it as a RuntimeError; the caller re-raises this
            raise
        view = memoryview(data).cast("B")
        self.sha.update(view)
        self.size += view.nbytes
        self.tail = (self.tail + bytes(view[-_EOCD_SIZE:]))[-_EOCD_SIZE:]
        return view.nbytes

    def flush(self) -> None:
        self.f.flush()


def _write_checkpoint(f: BinaryIO, state: dict[str, Any], info: dict[str, Any]) -> None:
    writer = _HashingWriter(f)
    try:
        torch.save(state, writer)
    except RuntimeError:
        if writer.error is not None:
            raise writer.error from None
        raise
    if writer.tail[:4] != _EOCD or writer.tail[-2:] != b"\0\0":
        raise RuntimeError("torch.save wrote no plain zip end record; cannot seal the checkpoint")
    record = {**info, "size": writer.size, "sha256": writer.sha.hexdigest()}
    comment = _MAGIC + json.dumps(record, sort_keys=True).encode()
    # The archive's comment length sits in its last two bytes, followed by the comment.
    f.seek(writer.size - 2)
    f.write(len(comment).to_bytes(2, "little") + comment)


def save_checkpoint(
    path: Path,
    state: dict[str, Any],
    step: int | None = None,
    keep_previous: bool = True,
    fence: Fence | None = None,
) -> None:
    """Write ``state`` to ``path`` atomically, sealed with its size and checksum.

    With ``keep_previous``, the checkpoint that was at ``path`` becomes ``checkpoint.prev.pt``
    (a hard link made before the new file is written: there is never a moment without a
    readable checkpoint, and the older previous one is freed before the new one takes space).
    Without it, the previous one stays as it is (the caller knows the current one is damaged).
    ``fence`` is called before anything in the folder changes and again right before the new
    file replaces the old one (writing a large checkpoint takes long enough to be paused in)."""
    path = Path(path)
    prev = previous_path(path)
    if fence is not None:
        fence()
    try:
        # Temporary files of a writer killed mid-write (kill -9): one writer per population
        # folder (claims), so whatever is left here is garbage, possibly as large as a checkpoint.
        for name in (path.name, prev.name):
            for stale in path.parent.glob(f".{name}.*.tmp"):
                stale.unlink(missing_ok=True)
        if keep_previous:
            _keep_previous(path, prev)
    except OSError as err:
        raise storage_error(err, prev) from None
    info = {"step": step, "saved_at": time.time(), "torch": torch.__version__}
    try:
        atomic_write_bytes(path, lambda f: _write_checkpoint(f, state, info), fence)
    except StorageError as err:
        if path.exists():
            intact = StorageError(f"{err} (the checkpoint already there is intact)")
            intact.errno = err.errno
            raise intact from None
        raise


def _keep_previous(path: Path, prev: Path) -> None:
    if not path.exists():
        # A population starting afresh: a previous file left here belongs to an abandoned run.
        prev.unlink(missing_ok=True)
        return
    tmp = prev.with_name(f".{prev.name}.{os.getpid()}.tmp")
    tmp.unlink(missing_ok=True)
    try:
        os.link(path, tmp)
    except OSError:  # a file system without hard links: a copy does the same, slower
        import shutil

        shutil.copyfile(path, tmp)
    os.replace(tmp, prev)


@dataclass(frozen=True)
class CheckpointInfo:
    """What a checkpoint's seal says about it (``sealed`` False: a file from before seals)."""

    path: Path
    sealed: bool
    step: int | None
    saved_at: float


class CorruptCheckpoint(Exception):
    """A checkpoint file that must not be used; the message says why."""


def verify_checkpoint(path: Path) -> CheckpointInfo:
    """Check ``path`` against its seal without unpickling it; CorruptCheckpoint if damaged."""
    path = Path(path)
    with open(path, "rb") as f:
        size = os.fstat(f.fileno()).st_size
        if size == 0:
            raise CorruptCheckpoint("it is empty (0 bytes)")
        start = max(0, size - _EOCD_SIZE - _MAX_COMMENT - len(_MAGIC))
        f.seek(start)
        tail = f.read()
        end = _find_end_record(tail)
        if end is None:
            raise CorruptCheckpoint(f"it is truncated or not a checkpoint ({size} bytes, no end)")
        comment = tail[end + _EOCD_SIZE :]
        mtime = os.fstat(f.fileno()).st_mtime
        if not comment.startswith(_MAGIC):
            return CheckpointInfo(path, False, None, mtime)  # unsealed: torch.load will tell
        try:
            record = json.loads(comment[len(_MAGIC) :])
            sealed_size, digest = int(record["size"]), str(record["sha256"])
        except (ValueError, KeyError, TypeError):
            raise CorruptCheckpoint("its seal is unreadable") from None
        archive = start + end + _EOCD_SIZE
        if sealed_size != archive:
            raise CorruptCheckpoint(f"its archive has {archive} bytes, sealed: {sealed_size}")
        sha = hashlib.sha256()
        f.seek(0)
        left = sealed_size - 2
        while left > 0:
            chunk = f.read(min(left, 1 << 22))
            if not chunk:
                break
            sha.update(chunk)
            left -= len(chunk)
        sha.update(b"\0\0")  # the comment length as torch.save wrote it
        if sha.hexdigest() != digest:
            raise CorruptCheckpoint("its checksum does not match (the file was altered or damaged)")
    return CheckpointInfo(path, True, record.get("step"), float(record.get("saved_at", mtime)))


def _find_end_record(tail: bytes) -> int | None:
    """Offset in ``tail`` of the zip end record whose comment runs exactly to the end."""
    i = tail.rfind(_EOCD)
    while i >= 0:
        if i + _EOCD_SIZE <= len(tail):
            n = int.from_bytes(tail[i + 20 : i + 22], "little")
            if i + _EOCD_SIZE + n == len(tail):
                return i
        i = tail.rfind(_EOCD, 0, i)
    return None


def load_checkpoint(path: Path, device: torch.device | str = "cpu") -> dict[str, Any]:
    """The state saved at ``path``, verified; CheckpointError naming the file if damaged."""
    try:
        return _load(path, device)[0]
    except CorruptCheckpoint as err:
        raise CheckpointError(f"checkpoint {path} is unusable: {err}") from None


def _load(path: Path, device: torch.device | str) -> tuple[dict[str, Any], CheckpointInfo]:
    info = verify_checkpoint(path)
    try:
        state = torch.load(path, map_location=device, weights_only=False)
    except Exception as err:  # noqa: BLE001 - a damaged pickle or archive fails in many ways
        first = str(err).strip().splitlines()[0] if str(err).strip() else ""
        raise CorruptCheckpoint(f"torch cannot read it ({type(err).__name__}: {first})") from None
    if not isinstance(state, dict):
        raise CorruptCheckpoint(f"it holds a {type(state).__name__}, not a checkpoint")
    return state, info


@dataclass
class Restored:
    """A checkpoint read back: its state, where it came from, and the damaged ones skipped."""

    state: dict[str, Any]
    info: CheckpointInfo
    skipped: list[tuple[Path, str]]

    @property
    def fell_back(self) -> bool:
        return bool(self.skipped)


def restore_checkpoint(path: Path, device: torch.device | str = "cpu") -> Restored | None:
    """The newest usable checkpoint: ``path``, else the previous one kept beside it.

    None when there is no checkpoint at ``path`` (a fresh start). CheckpointError, one line
    naming the files and the fix, when neither is usable."""
    path = Path(path)
    if not path.exists():
        return None
    skipped: list[tuple[Path, str]] = []
    for candidate in (path, previous_path(path)):
        if not candidate.exists():
            continue
        try:
            state, info = _load(candidate, device)
        except CorruptCheckpoint as err:
            skipped.append((candidate, str(err)))
            continue
        except OSError as err:
            raise storage_error(err, candidate, "read") from None
        return Restored(state, info, skipped)
    why = "; ".join(f"{p} is unusable: {reason}" for p, reason in skipped)
    if len(skipped) == 1:
        why += " (and no previous checkpoint is kept)"
    raise CheckpointError(
        f"{why}. Delete {path.parent} to train this population again from the start (its "
        "members' metrics are then written anew)"
    )

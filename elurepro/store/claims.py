"""Exclusive claims on members, through lock files that work on a shared file system.

A worker that trains a member holds ``claim.lock`` in the member's folder: created atomically
(``O_CREAT | O_EXCL``, which NFSv3+, Lustre and GPFS honour across nodes), holding the host, PID
and a random token, its modification time refreshed every ``heartbeat_s`` by a background thread.
A claim is stale when its holder is a dead process on this host, or when nobody refreshed it for
``stale_after_s`` (a process killed on another node, a preempted Slurm job). A stale claim is
taken over under a short-lived ``claim.lock.break`` file, so that two workers never both take it.
The holder checks its token at every heartbeat, and ``Claims.check`` is the fence that every
write into a member's folder passes right before it lands (metrics, TensorBoard events, summary,
checkpoint): it reads the claim files again and raises ``ClaimLost`` unless every one still holds
this holder's token, renewing a claim whose heartbeat is old (the holder was paused: a suspended
machine, a stalled NFS client, SIGSTOP) only after re-reading that it is still its own. So a
holder paused past ``stale_after_s`` and taken over writes nothing once it runs again; what
remains is the moment between a passed check and the write itself (microseconds: the checkpoint
and JSON files check again just before their atomic rename).
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

LOCK = "claim.lock"
_BREAK_STALE_S = 60.0  # a breaker that died mid-takeover is ignored after this long


class ClaimLost(RuntimeError):
    """Another worker took over a claim this holder still acted on (it stalled too long)."""


@dataclass(frozen=True)
class ClaimInfo:
    """Who holds a claim, as read from its file."""

    path: Path
    host: str
    pid: int
    token: str
    age_s: float  # seconds since the last heartbeat

    def describe(self) -> str:
        return f"{self.host}:{self.pid} (heartbeat {self.age_s:.0f} s ago)"


def read_claim(path: Path) -> ClaimInfo | None:
    """The claim at ``path``, or None when there is none. A claim whose content is not yet
    written (its creator is between create and write) reads as held by an unknown process."""
    try:
        age = time.time() - path.stat().st_mtime
        text = path.read_text()
    except FileNotFoundError:
        return None
    try:
        data = json.loads(text)
        return ClaimInfo(path, str(data["host"]), int(data["pid"]), str(data["token"]), age)
    except (ValueError, KeyError, TypeError):
        return ClaimInfo(path, "?", -1, "", age)


def _alive_here(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process: alive
        return True
    return True


def is_stale(claim: ClaimInfo, stale_after_s: float) -> bool:
    if claim.age_s > stale_after_s:
        return True
    return claim.host == socket.gethostname() and claim.pid > 0 and not _alive_here(claim.pid)


def _create(path: Path, token: str) -> bool:
    try:
        fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o666)
    except FileExistsError:
        return False
    with os.fdopen(fd, "w") as f:
        json.dump({"host": socket.gethostname(), "pid": os.getpid(), "token": token}, f)
    return True


@dataclass(frozen=True)
class Attempt:
    """The outcome of ``try_claim``: ``ok``, and the holder (the live one that kept the claim,
    or the stale one that was taken over)."""

    ok: bool
    holder: ClaimInfo | None = None


def try_claim(path: Path, token: str, stale_after_s: float) -> Attempt:
    """Take the claim at ``path`` if it is free or stale."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if _create(path, token):
        return Attempt(True)
    held = read_claim(path)
    if held is None:  # released between our attempt and the read
        return Attempt(True) if _create(path, token) else Attempt(False, read_claim(path))
    if not is_stale(held, stale_after_s):
        return Attempt(False, held)
    breaker = path.with_name(path.name + ".break")
    if not _create(breaker, token):
        with contextlib.suppress(FileNotFoundError):
            if time.time() - breaker.stat().st_mtime > _BREAK_STALE_S:
                breaker.unlink()
        return Attempt(False, read_claim(path) or held)
    try:
        again = read_claim(path)
        # Only the claim we judged stale is removed, never one taken over meanwhile.
        if again is not None and again.token == held.token and is_stale(again, stale_after_s):
            path.unlink()
        if _create(path, token):
            return Attempt(True, held)
        return Attempt(False, read_claim(path))
    finally:
        with contextlib.suppress(FileNotFoundError):
            breaker.unlink()


def release_claim(path: Path, token: str) -> None:
    """Remove the claim at ``path`` if it is still ours."""
    held = read_claim(path)
    if held is not None and held.token == token:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()


@dataclass
class Claims:
    """Claims held by this process on a set of member folders, kept fresh by a heartbeat."""

    paths: list[Path]
    token: str
    heartbeat_s: float
    stale_after_s: float = float("inf")
    lost: list[Path] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._beat, name="claim-heartbeat", daemon=True)
        self._thread.start()

    def _beat(self) -> None:
        while not self._stop.wait(self.heartbeat_s):
            self.refresh()

    def refresh(self) -> None:
        for path in self.paths:
            held = read_claim(path)
            if held is None or held.token != self.token:
                if path not in self.lost:
                    self.lost.append(path)
                continue
            with contextlib.suppress(FileNotFoundError):
                os.utime(path)

    def check(self) -> None:
        """The fence before a write: ClaimLost unless every claim is still this holder's.

        A claim whose heartbeat is older than half the takeover timeout (the holder was paused,
        and its heartbeat thread with it) is renewed first and read again: a taker that judged
        it stale re-reads it under its break file before removing it, so either the renewal
        keeps the claim or the second read sees the taker's token."""
        for path in self.paths:
            held = read_claim(path)
            if (
                held is not None
                and held.token == self.token
                and held.age_s > self.stale_after_s / 2
            ):
                with contextlib.suppress(FileNotFoundError):
                    os.utime(path)
                held = read_claim(path)
            if held is None or held.token != self.token:
                if path not in self.lost:
                    self.lost.append(path)
        if self.lost:
            raise ClaimLost(self.lost_message())

    def lost_message(self) -> str:
        folders = ", ".join(str(p.parent) for p in self.lost)
        holders = {h.describe().split(" (")[0] for h in map(read_claim, self.lost) if h}
        by = ", ".join(sorted(holders)) or "another worker"
        return (
            f"{by} took over {folders} after this worker stalled for longer than "
            f"store.stale_after_s ({self.stale_after_s:g} s); this worker wrote nothing there "
            "since and leaves the members to it"
        )

    def release(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        for path in self.paths:
            release_claim(path, self.token)

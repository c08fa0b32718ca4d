"""Which population a worker trains next: the first one, in plan order, that is neither finished
nor claimed by another worker.

Every worker started with the same command plans the same populations (``assemble.plan_chunks``),
so N workers on one sweep (N GPUs, a Slurm array) split it between them and each member is
trained exactly once, seed-major. A population is claimed member by member, in plan order; a
worker that cannot claim a population's first member leaves the whole population to its holder,
so identical workers never split a population between them (and every member is trained in the
population a single worker would have put it in).
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

from elurepro import distributed
from elurepro.checkpoint import CHECKPOINT
from elurepro.distributed import DistContext
from elurepro.members import MemberSpec
from elurepro.store.claims import (
    LOCK,
    ClaimInfo,
    Claims,
    read_claim,
    release_claim,
    try_claim,
)
from elurepro.store.sweep import Sweep


@dataclass(frozen=True)
class StoreConfig:
    stale_after_s: float = 300.0  # a claim not refreshed for this long is taken over
    heartbeat_s: float = 30.0  # how often a holder refreshes its claims
    poll_s: float = 10.0  # how often a worker with nothing to claim looks again


@dataclass
class Job:
    """A population to train: its members (``done`` ones ride along unwritten) and the claims
    held on the members it will write (None on the other ranks of a DDP worker)."""

    members: list[MemberSpec]
    done: list[bool]
    claims: Claims | None


def _population(sweep: Sweep, chunk: Sequence[MemberSpec]) -> tuple[list[MemberSpec], list[bool]]:
    """The members to train for a planned chunk. A chunk started as a whole resumes as a whole
    (members that diverged in it, or were finished elsewhere, ride along without being written);
    otherwise only its unfinished members form a fresh population."""
    done = [sweep.finished(m) for m in chunk]
    if (sweep.population_dir(chunk) / CHECKPOINT).exists():
        return list(chunk), done
    todo = [m for m, d in zip(chunk, done) if not d]
    return todo, [False] * len(todo)


class SweepWorker:
    """Yields the jobs of one worker, claiming each; waits while others hold what is left."""

    def __init__(
        self,
        sweep: Sweep,
        chunks: Sequence[Sequence[MemberSpec]],
        store: StoreConfig,
        say: Callable[[str], None],
        dist: DistContext | None = None,
    ) -> None:
        self.sweep, self.chunks, self.store, self.say, self.dist = sweep, chunks, store, say, dist
        self._told: set[str] = set()

    def jobs(self) -> Iterator[Job]:
        while True:
            job, held, plan = None, {}, None
            if self.dist is None or self.dist.is_main:
                job, held = self._pick()
                plan = None if job is None else ([m.id for m in job.members], job.done)
            plan, waiting = distributed.broadcast(self.dist, (plan, bool(held)))
            if plan is None and not waiting:
                return
            if plan is None:
                self._wait(held)
                continue
            if job is None:  # rank 0 of this worker claimed it: train the same members
                by_id = {m.id: m for c in self.chunks for m in c}
                job = Job([by_id[i] for i in plan[0]], plan[1], None)
            try:
                yield job
            finally:
                if job.claims is not None:
                    job.claims.release()

    def _pick(self) -> tuple[Job | None, dict[str, ClaimInfo]]:
        """The next job, or (None, {member: holder}) when everything left is claimed elsewhere
        (an empty dict: nothing left at all)."""
        held: dict[str, ClaimInfo] = {}
        for chunk in self.chunks:
            members, done = _population(self.sweep, chunk)
            todo = [m for m, d in zip(members, done) if not d]
            if not todo:
                continue
            job = self._claim(members, done, todo, held)
            if job is not None:
                return job, held
        return None, held

    def _claim(
        self,
        members: list[MemberSpec],
        done: list[bool],
        todo: list[MemberSpec],
        held: dict[str, ClaimInfo],
    ) -> Job | None:
        token = uuid.uuid4().hex
        store, ours = self.store, []
        for i, m in enumerate(todo):
            path = self.sweep.member_dir(m) / LOCK
            attempt = try_claim(path, token, store.stale_after_s)
            if attempt.ok:
                ours.append(path)
                if attempt.holder is not None:
                    self.say(
                        f"{m.id}: taking over from {attempt.holder.describe()}, which stopped; "
                        "resuming from its last checkpoint"
                    )
                continue
            held[m.id] = attempt.holder
            if i == 0:  # the population is another worker's, all of what is left of it
                for rest in todo[1:]:
                    held[rest.id] = read_claim(self.sweep.member_dir(rest) / LOCK) or attempt.holder
                self._tell(f"skip:{m.id}", f"{m.id}: being trained by {attempt.holder.describe()}")
                return None
        # A member may have been finished by its previous holder just before we claimed it.
        now_done = [self.sweep.finished(m) for m in members]
        if now_done != done:
            for path in ours:
                release_claim(path, token)
            return None
        claimed = {p.parent for p in ours}
        if len(claimed) < len(todo):
            others = [m.id for m in todo if self.sweep.member_dir(m) not in claimed]
            self.say(f"{', '.join(others)}: being trained elsewhere; training the rest")
            members = [m for m in members if self.sweep.member_dir(m) in claimed]
            done = [False] * len(members)
        claims = Claims(ours, token, store.heartbeat_s, store.stale_after_s)
        claims.start()
        return Job(members, done, claims)

    def _wait(self, held: dict[str, ClaimInfo]) -> None:
        holders = sorted({h.describe().split(" (")[0] for h in held.values() if h is not None})
        self._tell(
            "wait:" + ",".join(holders),
            f"waiting: the {len(held)} member(s) left are being trained by "
            f"{', '.join(holders)}; a stopped worker's claim is taken over after "
            f"{self.store.stale_after_s:g} s",
        )
        time.sleep(self.store.poll_s)

    def _tell(self, key: str, line: str) -> None:
        if key not in self._told:
            self._told.add(key)
            self.say(line)

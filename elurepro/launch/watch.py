"""Wait for submitted Slurm jobs; one line when one can never start, was cancelled or failed.

submitit alone waits for ever on a job pending for a reason that never clears (a request the
partition cannot satisfy) and, without accounting, on a cancelled one; with accounting it ends a
cancelled or failed job with a traceback. Here the state comes from ``squeue`` while slurmctld
still knows the job (it also gives the reason a job waits), then from ``sacct`` (submitit).
"""

from __future__ import annotations

import re
import subprocess
import time
from dataclasses import dataclass
from typing import Any

from submitit.core.utils import UncompletedJobError

from elurepro.launch.partition import LaunchError

# Reasons a pending job keeps until someone changes the request or the partition.
NEVER_STARTS = {
    "PartitionConfig": "the request exceeds what the partition's nodes have",
    "PartitionNodeLimit": "more nodes than the partition allows",
    "PartitionTimeLimit": "a time limit above the partition's",
    "BadConstraints": "constraints no node satisfies",
    "InvalidAccount": "an account Slurm does not know",
    "InvalidQOS": "a QOS Slurm does not know",
    "DependencyNeverSatisfied": "a dependency that can no longer be satisfied",
    "QOSMaxWallDurationPerJobLimit": "a time limit above the QOS's",
}
# PREEMPTED is left out: a preempted job is requeued (by Slurm, or by submitit on its signal).
# GONE: left the queue with no accounting to say how it ended.
FINAL = set(
    "COMPLETED FAILED CANCELLED TIMEOUT NODE_FAIL OUT_OF_MEMORY BOOT_FAIL DEADLINE REVOKED "
    "SPECIAL_EXIT GONE".split()
)
STOPPED = 143  # the exit status of a command stopped by SIGTERM: running it again continues


@dataclass
class Submitted:
    job: Any  # submitit.Job
    label: str  # what sets this job apart from the others of the sweep, e.g. 'worker=1'

    @property
    def name(self) -> str:
        return f"Slurm job {self.job.job_id}" + (f" ({self.label})" if self.label else "")


def _squeue(job_ids: list[str]) -> dict[str, tuple[str, str]] | None:
    """job id -> (state, reason) for the jobs slurmctld still holds (array tasks one by one);
    None when slurmctld did not answer."""
    arrays = sorted({i.split("_")[0] for i in job_ids})
    out = subprocess.run(
        ["squeue", "-h", "-r", "--states=all", "-o", "%i|%T|%r", "-j", ",".join(arrays)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    if out.returncode and "Invalid job id" not in out.stderr:  # not: it forgot them all
        return None
    rows = (line.split("|") for line in out.stdout.splitlines() if line.count("|") == 2)
    return {job_id: (state, reason) for job_id, state, reason in rows}


def _exit_code(job_id: str) -> int:
    """The job's exit status from accounting (1 where accounting cannot say)."""
    out = subprocess.run(
        ["sacct", "-n", "-P", "-X", "-j", job_id, "-o", "ExitCode"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    match = re.match(r"(\d+):", out.stdout.strip())
    return int(match.group(1)) if match and match.group(1) != "0" else 1


def _error_line(sub: Submitted) -> str:
    """What the job said went wrong: the training command's last 'error:' line, else the last
    line of submitit's own error, else nothing."""
    log = sub.job.paths.stderr
    lines = log.read_text(errors="replace").splitlines() if log.exists() else []
    said = [x[len("error: ") :] for x in lines if x.startswith("error: ")]
    if said:
        return said[-1]
    try:
        failure = sub.job.exception()
    except UncompletedJobError as err:
        failure = err
    kept = [x.strip() for x in str(failure or "").splitlines() if x.strip()]
    return kept[-1] if kept else ""


def wait(submitted: list[Submitted], poll_s: float = 5.0) -> list[Any]:
    """The results of every job once all have ended; LaunchError (one line) for the first job
    that can never start (it is cancelled), or after the others ended, for one that was
    cancelled or failed."""
    waiting = {s.job.job_id: s for s in submitted}
    ended: dict[str, str] = {}
    seen: set[str] = set()
    try:
        while waiting:
            queue = _squeue(list(waiting))
            for job_id, sub in list(waiting.items()) if queue is not None else []:
                state, reason = queue.get(job_id, ("", ""))
                if state:
                    seen.add(job_id)
                else:  # slurmctld forgot it: accounting knows how it ended
                    state = sub.job.state.split()[0].upper()
                    if state == "UNKNOWN" and job_id in seen:
                        state = "GONE"
                if state == "PENDING" and reason in NEVER_STARTS:
                    _cancel_all(list(waiting.values()))
                    raise LaunchError(
                        f"{sub.name} can never start: {reason} "
                        f"({NEVER_STARTS[reason]}); cancelled it and the other waiting jobs. "
                        "Change hydra.launcher.* (partition, tasks_per_node, cpus_per_task, "
                        "gpus_per_node, nodes, timeout_min) and run the command again"
                    )
                if state in FINAL:
                    ended[job_id] = state
                    del waiting[job_id]
            if waiting:
                time.sleep(poll_s)
    except KeyboardInterrupt:
        ids = ",".join(sorted({i.split("_")[0] for i in waiting}))
        raise LaunchError(
            f"stopped waiting; the Slurm jobs go on (squeue -j {ids}; scancel {ids} stops "
            "them). Running the same command again later finds what they finished",
            exit_code=130,
        ) from None
    return _results(submitted, ended)


def _cancel_all(subs: list[Submitted]) -> None:
    for sub in subs:
        sub.job.cancel(check=False)


def _results(submitted: list[Submitted], ended: dict[str, str]) -> list[Any]:
    results, failures = [], []
    for sub in submitted:
        state = ended[sub.job.job_id]
        if state in ("COMPLETED", "GONE"):  # GONE: its result file says how it ended
            try:
                results.append(sub.job.results()[0])
                continue
            except UncompletedJobError:
                state = "FAILED"
        failures.append((sub, state))
    if not failures:
        return results
    sub, state = failures[0]
    others = f" (and {len(failures) - 1} more)" if len(failures) > 1 else ""
    done = f"{len(results)} of {len(submitted)} jobs finished"
    if all(s == "CANCELLED" for _, s in failures):
        raise LaunchError(
            f"{sub.name} was cancelled{others}; {done}. Run the "
            "same command again to continue: finished members are kept, interrupted ones "
            "resume from their checkpoints",
            exit_code=STOPPED,
        )
    code = _exit_code(sub.job.job_id) if state == "FAILED" else 1
    why = _error_line(sub)
    raise LaunchError(
        f"{sub.name} ended {state}{others}"
        f"{': ' + why if why else ''}; {done}; log: {sub.job.paths.stderr}",
        exit_code=code if code in (1, 2) else 1,
    )

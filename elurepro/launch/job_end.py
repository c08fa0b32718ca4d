"""The end of a submitit job's work: from there on its requeue signal is ignored.

submitit turns the requeue signal (USR2 unless ``SUBMITIT_PREEMPT_SIGNAL`` says otherwise) into a
checkpoint and a requeue with a Python handler. Python's shutdown restores every such signal's
default action, which for USR2 is to terminate: a timed-out job whose training has just finished
and whose result is written, signalled while its interpreter shuts down, dies of the signal, and
Slurm records a finished job as FAILED. Once the work has returned there is nothing left to
checkpoint, so the signal is ignored instead.
"""

from __future__ import annotations

import signal

import submitit


def ignore_requeue_signal() -> None:
    """Ignore submitit's requeue signal in this process from now on (main thread only)."""
    signal.signal(getattr(signal, f"SIG{submitit.JobEnvironment.USR_SIG}"), signal.SIG_IGN)

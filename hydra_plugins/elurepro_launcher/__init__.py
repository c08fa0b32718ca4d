"""elurepro's Hydra launchers (configs/hydra/launcher/): hydra-submitit-launcher's, plus

- Slurm: ``auto`` GPUs, tasks, CPUs and time fitted to the partition before submitting, and a
  wait that ends in one line when a job can never start, was cancelled or failed
  (elurepro/launch/);
- both: the job records the command the user typed, not submitit's own, and once its work has
  returned it ignores the requeue signal (``elurepro.launch.job_end``).

Hydra only accepts launcher classes from the ``hydra_plugins`` package; the logic lives in
``elurepro.launch``.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

from hydra.core.utils import JobReturn
from hydra_plugins.hydra_submitit_launcher import submitit_launcher

from elurepro.launch.command import ENV, typed_command


class _InTheJob:
    """What runs in the job's process: the training, which records the submitting command
    (carried here in ``command``); after it, the requeue signal is ignored."""

    command: str | None = None

    def __call__(self, *args: Any, **kwargs: Any) -> JobReturn:
        if self.command:  # in the job's process only
            os.environ[ENV] = self.command
        try:
            return super().__call__(*args, **kwargs)  # type: ignore[misc]
        finally:
            from elurepro.launch.job_end import ignore_requeue_signal

            ignore_requeue_signal()


class SlurmLauncher(_InTheJob, submitit_launcher.SlurmLauncher):
    def launch(
        self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int
    ) -> Sequence[JobReturn]:
        from elurepro.launch.slurm import submit_and_wait  # submitit loads only when launching

        self.command = typed_command()
        return submit_and_wait(self, [list(o) for o in job_overrides], initial_job_idx)


class LocalLauncher(_InTheJob, submitit_launcher.LocalLauncher):
    def launch(
        self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int
    ) -> Sequence[JobReturn]:
        self.command = typed_command()
        return super().launch(job_overrides, initial_job_idx)

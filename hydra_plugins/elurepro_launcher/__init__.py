"""elurepro's Hydra launchers (configs/hydra/launcher/): hydra-submitit-launcher's, plus

- Slurm: ``auto`` GPUs, tasks, CPUs and time fitted to the partition before submitting, and a
  wait that ends in one line when a job can never start, was cancelled or failed
  (elurepro/launch/);
- both: the job records the command the user typed, not submitit's own.

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


class _TypedCommand:
    """Carries the submitting command into the job, where the training records it."""

    command: str | None = None

    def __call__(self, *args: Any, **kwargs: Any) -> JobReturn:
        if self.command:  # in the job's process only
            os.environ[ENV] = self.command
        return super().__call__(*args, **kwargs)  # type: ignore[misc]


class SlurmLauncher(_TypedCommand, submitit_launcher.SlurmLauncher):
    def launch(
        self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int
    ) -> Sequence[JobReturn]:
        from elurepro.launch.slurm import submit_and_wait  # submitit loads only when launching

        self.command = typed_command()
        return submit_and_wait(self, [list(o) for o in job_overrides], initial_job_idx)


class LocalLauncher(_TypedCommand, submitit_launcher.LocalLauncher):
    def launch(
        self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int
    ) -> Sequence[JobReturn]:
        self.command = typed_command()
        return super().launch(job_overrides, initial_job_idx)

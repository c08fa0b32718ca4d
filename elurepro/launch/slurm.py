"""Submit a Hydra sweep to Slurm through submitit, fitted to the partition, and wait for it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import submitit
from hydra.core.singleton import Singleton
from hydra.core.utils import JobReturn, filter_overrides
from hydra_plugins.hydra_submitit_launcher.config import BaseQueueConf
from omegaconf import OmegaConf
from submitit.core.utils import FailedJobError, FailedSubmissionError

from elurepro.errors import one_line
from elurepro.launch.partition import LaunchError, fit, query_partition
from elurepro.launch.watch import Submitted, wait


def _describe(params: dict[str, Any]) -> str:
    gpus = params["gpus_per_node"]
    return (
        f"partition {params['partition']}, {params['nodes']} node(s) x "
        f"{params['tasks_per_node']} task(s) x {params['cpus_per_task']} CPU(s), "
        f"{f'{gpus} GPU(s) per node' if gpus else 'no GPU'}, {params['timeout_min']} min per job"
    )


def submit_and_wait(
    launcher: Any, job_overrides: list[list[str]], initial_job_idx: int, poll_s: float = 5.0
) -> list[JobReturn]:
    """Submit one job per override list (a job array when there are several) running
    ``launcher`` (a hydra-submitit-launcher launcher; it is what each job calls), and return
    the jobs' results once all have ended."""
    params = fit(dict(launcher.params), query_partition(launcher.params.get("partition")))
    folder = params.pop("submitit_folder")
    executor = submitit.AutoExecutor(
        folder=folder, cluster="slurm", slurm_max_num_timeout=params.pop("max_num_timeout")
    )
    shared = set(OmegaConf.structured(BaseQueueConf).keys())
    executor.update_parameters(**{k if k in shared else f"slurm_{k}": v for k, v in params.items()})
    Path(str(launcher.config.hydra.sweep.dir)).mkdir(parents=True, exist_ok=True)
    # A job is named by what sets it apart from the others ('worker=1'), not the whole command.
    shared_overrides = set.intersection(*(set(o) for o in job_overrides))
    labels = [
        " ".join(filter_overrides([x for x in o if x not in shared_overrides]))
        for o in job_overrides
    ]
    calls = [
        (overrides, "hydra.sweep.dir", idx, f"job_id_for_{idx}", Singleton.get_state())
        for idx, overrides in enumerate(job_overrides, start=initial_job_idx)
    ]
    try:
        jobs = executor.map_array(launcher, *zip(*calls))
    except (FailedJobError, FailedSubmissionError) as err:
        raise LaunchError(f"sbatch refused the job: {one_line(err)}") from None
    ids = ", ".join(job.job_id for job in jobs)
    print(
        f"submitted Slurm job(s) {ids} ({_describe(params)}); waiting for them to end (Ctrl-C "
        f"stops the waiting, not the jobs); logs in {Path(folder).parent}",
        flush=True,
    )
    return wait([Submitted(job, label) for job, label in zip(jobs, labels)], poll_s)

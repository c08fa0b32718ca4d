"""Process-group set-up from Slurm / submitit variables, and the submitit launcher configs."""

from __future__ import annotations

import pytest
from hydra import compose, initialize_config_dir
from hydra.core.hydra_config import HydraConfig
from omegaconf import OmegaConf, open_dict

from elurepro import assemble
from elurepro.distributed import first_host, torch_env_from_tasks
from tests.hydra_utils import CONFIGS, load_config

# What srun exports to task 5 of a 2-node job step with 4 tasks per node (as under submitit).
SLURM_TASK = {
    "SUBMITIT_EXECUTOR": "slurm",
    "SLURM_JOB_ID": "123456",
    "SLURM_NTASKS": "8",
    "SLURM_STEP_NUM_TASKS": "8",
    "SLURM_STEP_NUM_NODES": "2",
    "SLURM_JOB_NUM_NODES": "2",
    "SLURM_PROCID": "5",
    "SLURM_LOCALID": "1",
    "SLURM_NODEID": "1",
    "SLURM_STEP_NODELIST": "gpu-a[007-008]",
    "SLURM_JOB_NODELIST": "gpu-a[007-008]",
}


def test_slurm_task_variables_become_torch_distributed_ones() -> None:
    env = torch_env_from_tasks(SLURM_TASK)
    assert env == {
        "RANK": "5",
        "WORLD_SIZE": "8",
        "LOCAL_RANK": "1",
        "LOCAL_WORLD_SIZE": "4",
        "MASTER_ADDR": "gpu-a007",
        "MASTER_PORT": str(20000 + 123456 % 20000),  # the same on every task of the job
    }
    # An explicit rendezvous wins.
    given = torch_env_from_tasks({**SLURM_TASK, "MASTER_ADDR": "head", "MASTER_PORT": "29500"})
    assert (given["MASTER_ADDR"], given["MASTER_PORT"]) == ("head", "29500")


@pytest.mark.parametrize(
    "environ",
    [
        {},  # a plain process
        {**SLURM_TASK, "RANK": "5", "WORLD_SIZE": "8"},  # torchrun inside Slurm: its variables
        {**SLURM_TASK, "SLURM_STEP_NUM_TASKS": "1", "SLURM_PROCID": "0"},  # one task
        {k: v for k, v in SLURM_TASK.items() if not k.startswith("SLURM_STEP")},  # sbatch script
    ],
    ids=["plain", "torchrun", "one-task", "batch-script"],
)
def test_no_process_group_outside_multi_task_steps(environ) -> None:
    assert torch_env_from_tasks(environ) == {}


def test_submitit_local_tasks() -> None:
    env = torch_env_from_tasks(
        {
            "SUBMITIT_EXECUTOR": "local",
            "SUBMITIT_LOCAL_NTASKS": "2",
            "SUBMITIT_LOCAL_GLOBALID": "1",
            "SUBMITIT_LOCAL_LOCALID": "1",
            "SUBMITIT_LOCAL_JOB_ID": "4242",
        }
    )
    assert env == {
        "RANK": "1",
        "WORLD_SIZE": "2",
        "LOCAL_RANK": "1",
        "LOCAL_WORLD_SIZE": "2",
        "MASTER_ADDR": "127.0.0.1",
        "MASTER_PORT": str(20000 + 4242),
    }


@pytest.mark.parametrize(
    "nodelist,host",
    [("node1", "node1"), ("node1,node2", "node1"), ("gpu[3-4,7],cpu1", "gpu3"), ("a[09]", "a09")],
)
def test_first_host_of_a_node_list(nodelist: str, host: str) -> None:
    assert first_host(nodelist) == host


def _launcher(name: str, *overrides: str):
    with initialize_config_dir(config_dir=str(CONFIGS), version_base="1.3"):
        cfg = compose(
            config_name="train",
            overrides=[f"hydra/launcher={name}", "experiment=imagenet_15layer_spp", *overrides],
            return_hydra_config=True,
        )
        HydraConfig.instance().set_config(cfg)  # the launcher's paths use ${hydra.sweep.dir}
        return cfg, OmegaConf.to_container(cfg.hydra.launcher, resolve=True)


def test_slurm_launcher_config_composes() -> None:
    cfg, launcher = _launcher("slurm", "hydra.launcher.gpus_per_node=4", "runs_dir=/r")
    assert launcher["_target_"].endswith("SlurmLauncher")
    assert launcher["tasks_per_node"] == launcher["gpus_per_node"] == 4  # one process per GPU
    assert launcher["nodes"] == 1 and launcher["max_num_timeout"] > 0
    # CPUs and time are read from the partition when submitting (tests/test_cluster.py).
    assert launcher["cpus_per_task"] == launcher["timeout_min"] == "auto"
    assert "partition" in launcher
    assert launcher["submitit_folder"].startswith("/r/multirun/")
    # The launcher is not part of the run: the same run folder as the plain command's (the task
    # function gets the config without its hydra node).
    with open_dict(cfg):
        del cfg["hydra"]
    plain = load_config("experiment=imagenet_15layer_spp", "runs_dir=/r")
    info = {"name": "imagenet", "fingerprint": "0123456789abcdef"}
    assert assemble.make_sweep(cfg, info) == assemble.make_sweep(plain, info)


def test_local_gpus_launcher_config_composes() -> None:
    _, launcher = _launcher("local_gpus", "hydra.launcher.gpus_per_node=3")
    assert launcher["_target_"].endswith("LocalLauncher")
    assert launcher["tasks_per_node"] == launcher["gpus_per_node"] == 3

"""Entry point: ``python -m elurepro.train experiment=<id> [budget=smoke|short|paper] [overrides]``.

Trains every member of the experiment (all activations and seeds), population by population,
into the run store (``elurepro/store/``): a finished member is skipped, an interrupted population
continues from its checkpoint, and a population another worker is training is left to it. So the
same command finishes a sweep however often it was stopped, and the same command started N times
(N GPUs, a Slurm array) shares the sweep between the N workers.

The same command runs as one of several processes under ``torchrun`` or as one of several
Slurm / submitit tasks (``-m hydra/launcher=slurm``): it then joins torch.distributed and trains
each population with DistributedDataParallel (ImageNet only; see elurepro/distributed.py).
"""

from __future__ import annotations

import os
import signal
import sys
import warnings
from pathlib import Path

import hydra
import torch
from hydra.errors import HydraException
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from elurepro import assemble, distributed
from elurepro.analyze import report_folder
from elurepro.assemble.validate import validate_config
from elurepro.checkpoint import check_writable
from elurepro.distributed import DistContext
from elurepro.errors import ElureproError, os_error_name, storage_error
from elurepro.hydra_errors import composition_error
from elurepro.launch.command import typed_command
from elurepro.store.claims import ClaimLost
from elurepro.store.identity import mathematics
from elurepro.store.work import StoreConfig, SweepWorker
from elurepro.tblinks import members_url


def run(cfg: DictConfig) -> int:
    validate_config(cfg)  # every value, before any data is read or folder written
    ctx = distributed.init_distributed(cfg.device)
    try:
        return _run(cfg, ctx)
    finally:
        distributed.shutdown(ctx)


def _run(cfg: DictConfig, ctx: DistContext | None) -> int:
    device = ctx.device if ctx else assemble.pick_device(cfg.device)
    main = ctx is None or ctx.is_main
    say = print if main else lambda *args: None
    chunks = assemble.plan_chunks(cfg, ctx)
    members = [m for c in chunks for m in c]
    old = Path(cfg.runs_dir, cfg.name, f"{cfg.data.name}-{cfg.budget.name}")
    if any(old.glob("*/members")):  # the layout before the run store: neither reused nor retrained
        raise ElureproError(
            f"{old} holds run folders of the layout before the run store; "
            f"run `python scripts/migrate_runs.py {cfg.runs_dir}` once"
        )
    # A runs folder that cannot be written is found now, not after minutes of data loading.
    check_writable(Path(cfg.runs_dir) / cfg.name)
    data = assemble.build_data(cfg, device, ctx)
    if not data.info.get("official", True):
        say(f"note: {data.info['description']}; results are labelled as such")
    sweep = assemble.make_sweep(cfg, data.info)
    if main:
        sweep.write_record(mathematics(OmegaConf.to_container(cfg, resolve=True)), data.info)
    worker = f", worker {cfg.worker}" if cfg.worker is not None else ""
    processes = f", {ctx.world_size} processes" if ctx else ""
    say(
        f"{cfg.name}: {len(members)} members ({', '.join(sorted({m.group for m in members}))}; "
        f"{len({m.seed for m in members})} seeds) in {len(chunks)} population(s), "
        f"budget={cfg.budget.name}, device={device}{processes}{worker}; runs in {sweep.root}"
    )
    finished = sum(sweep.finished(m) for m in members)
    if finished:
        say(f"{finished} of {len(members)} members finished earlier: skipped")
    work = SweepWorker(sweep, chunks, StoreConfig(**cfg.store), say, ctx)
    for job in work.jobs():
        run_dir = sweep.population_dir(job.members)
        trainer = assemble.build_trainer(
            cfg, job.members, data, device, run_dir, ctx, sweep, job.claims, job.done, _command
        )
        names = ", ".join(m.id for m, d in zip(job.members, job.done) if not d)
        say(f"training {names} ({trainer.loop.total_steps} steps) in {run_dir.name}")
        try:
            status = trainer.run()
        except ClaimLost as err:
            raise ElureproError(str(err)) from None
        except OSError as err:  # one the trainer did not name a file for
            raise storage_error(err, run_dir) from None
        if status == "interrupted":
            return 128 + (trainer.stop_signal or signal.SIGINT)  # 130 Ctrl-C, 143 SIGTERM
    say(f"done: every member asked for is finished ({sweep.root}).")
    say(f"  analyse:     {analyse_command(cfg.name, sweep.root)}")
    say(f"  TensorBoard: tensorboard --logdir {sweep.root}  (or any folder above it)")
    from elurepro.analysis.headline import figure_tags  # the analysis loads only at the end

    say(f"  the figure:  {members_url(sweep.root, figure_tags(cfg.name))}")
    return 0


def analyse_command(experiment: str, sweep: Path) -> str:
    """What ``make`` runs after training ``sweep``: the analysis of its ``<data>-<budget>``
    folder (every sweep in it), with where the report goes by default, as a shell comment."""
    runs = sweep.parent
    return f"python -m elurepro.analyze {experiment} {runs}   # report into {report_folder(runs)}"


CONFIG_PATH = "../configs"  # relative to this file, as Hydra reads it


@hydra.main(version_base="1.3", config_path=CONFIG_PATH, config_name="train")
def main(cfg: DictConfig) -> None:
    global _task_started, _command
    _task_started = True
    _command = typed_command()  # inside a launcher's job: the submitting command
    warnings.formatwarning = lambda message, *_, **__: f"warning: {message}\n"
    try:
        code = run(cfg)
    except ElureproError as err:
        print(f"error: {err}", file=sys.stderr)
        code = err.exit_code
    except OSError as err:  # the system refused something no caller above named
        name = os_error_name(err)
        where = f" ({err.filename})" if err.filename else ""
        print(f"error: {err.strerror or err}{where}{f' [{name}]' if name else ''}", file=sys.stderr)
        code = 1
    except KeyboardInterrupt:  # Ctrl-C outside training (loading data, between populations)
        print(
            "error: interrupted; every checkpoint written so far is intact. Run the same "
            "command again to continue.",
            file=sys.stderr,
        )
        code = 130
    if code:
        sys.exit(code)


_task_started = False  # whether Hydra got as far as calling ``main``
_command: str | None = None  # the command line, when training was started from one


def cli() -> None:
    """``python -m elurepro.train``: Hydra's own refusals (a typo'd key, an unknown config
    option, bad override syntax) as one line too, exit status 2 (``hydra_errors.py``)."""
    asked = os.environ.get("HYDRA_FULL_ERROR")  # a user who asks for the full trace gets it
    os.environ.setdefault("HYDRA_FULL_ERROR", "1")  # Hydra then raises instead of printing
    try:
        main()
    except ElureproError as err:  # a launcher's (elurepro/launch/): the jobs could not run
        print(f"error: {err}", file=sys.stderr)
        sys.exit(err.exit_code)
    except (HydraException, OmegaConfBaseException) as err:
        if asked or _task_started:  # a bug past composition keeps its traceback
            raise
        line = composition_error(err, sys.argv[1:], Path(__file__).parent / CONFIG_PATH)
        print(f"error: {line}", file=sys.stderr)
        sys.exit(2)
    finally:
        # Called in-process (tests), the setting must not leak into later commands' environment:
        # they would take it for a user's request of the full trace.
        if asked is None:
            os.environ.pop("HYDRA_FULL_ERROR", None)


if __name__ == "__main__":
    torch.set_float32_matmul_precision("highest")  # faithful fp32 unless execution.bf16
    cli()

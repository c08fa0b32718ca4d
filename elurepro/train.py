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

import sys
import warnings
from pathlib import Path

import hydra
import torch
from omegaconf import DictConfig, OmegaConf

from elurepro import build, distributed
from elurepro.distributed import DistContext
from elurepro.errors import ElureproError
from elurepro.store.identity import mathematics
from elurepro.store.sweep import legacy_message, legacy_populations
from elurepro.store.work import StoreConfig, SweepWorker
from elurepro.trainer import ClaimLost


def run(cfg: DictConfig) -> int:
    ctx = distributed.init_distributed(cfg.device)
    try:
        return _run(cfg, ctx)
    finally:
        distributed.shutdown(ctx)


def _run(cfg: DictConfig, ctx: DistContext | None) -> int:
    device = ctx.device if ctx else build.pick_device(cfg.device)
    main = ctx is None or ctx.is_main
    say = print if main else lambda *args: None
    chunks = build.plan_chunks(cfg, ctx)
    members = [m for c in chunks for m in c]
    legacy = legacy_populations(
        Path(cfg.runs_dir) / cfg.name / f"{cfg.data.name}-{cfg.budget.name}"
    )
    if legacy:
        raise ElureproError(legacy_message(legacy))
    data = build.build_data(cfg, device, ctx)
    if not data.info.get("official", True):
        say(f"note: {data.info['description']}; results are labelled as such")
    sweep = build.make_sweep(cfg, data.info)
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
        trainer = build.build_trainer(
            cfg, job.members, data, device, run_dir, ctx, sweep, job.claims, job.done
        )
        names = ", ".join(m.id for m, d in zip(job.members, job.done) if not d)
        say(f"training {names} ({trainer.loop.total_steps} steps) in {run_dir.name}")
        try:
            status = trainer.run()
        except ClaimLost as err:
            raise ElureproError(str(err)) from None
        if status == "interrupted":
            return 130
    say(f"done: every member asked for is finished ({sweep.root}).")
    say(f"  analyse:     python -m elurepro.analyze {cfg.name} {sweep.root}")
    say(f"  TensorBoard: tensorboard --logdir {sweep.root}")
    return 0


@hydra.main(version_base="1.3", config_path="../configs", config_name="train")
def main(cfg: DictConfig) -> None:
    warnings.formatwarning = lambda message, *_, **__: f"warning: {message}\n"
    try:
        code = run(cfg)
    except ElureproError as err:
        print(f"error: {err}", file=sys.stderr)
        code = 2
    if code:
        sys.exit(code)


if __name__ == "__main__":
    torch.set_float32_matmul_precision("highest")  # faithful fp32 unless execution.bf16
    main()

"""Entry point: ``python -m elurepro.train experiment=<id> [budget=smoke|short|paper] [overrides]``.

Trains every member of the experiment (all activations and seeds), population by population.
A finished population is skipped and an interrupted one continues from its checkpoint, so the
same command finishes a sweep, however often it was stopped (or a Slurm job requeued).

The same command runs as one of several processes under ``torchrun`` or as one of several
Slurm / submitit tasks (``-m hydra/launcher=slurm``): it then joins torch.distributed and trains
each population with DistributedDataParallel (ImageNet only; see elurepro/distributed.py).
"""

from __future__ import annotations

import sys

import hydra
import torch
from omegaconf import DictConfig

from elurepro import build, distributed
from elurepro.distributed import DistContext
from elurepro.errors import ElureproError


def run(cfg: DictConfig) -> int:
    ctx = distributed.init_distributed(cfg.device)
    try:
        return _run(cfg, ctx)
    finally:
        distributed.shutdown(ctx)


def _run(cfg: DictConfig, ctx: DistContext | None) -> int:
    device = ctx.device if ctx else build.pick_device(cfg.device)
    say = print if ctx is None or ctx.is_main else lambda *args: None
    chunks = build.plan_chunks(cfg, ctx)
    members = [m for c in chunks for m in c]
    groups = sorted({m.group for m in members})
    out = build.experiment_dir(cfg)
    processes = f", {ctx.world_size} processes" if ctx else ""
    say(
        f"{cfg.name}: {len(members)} members ({', '.join(groups)}; "
        f"{len({m.seed for m in members})} seeds) in {len(chunks)} population(s), "
        f"budget={cfg.budget.name}, device={device}{processes}; runs in {out}"
    )
    data = None
    for i, chunk in enumerate(chunks, 1):
        run_dir = build.population_dir(cfg, chunk)
        if all((run_dir / "members" / m.id / "summary.json").exists() for m in chunk):
            say(f"[{i}/{len(chunks)}] {run_dir.name}: finished earlier, skipped")
            continue
        if data is None:
            data = build.build_data(cfg, device, ctx)
            if not data.info.get("official", True):
                say(f"note: {data.info['description']}; results are labelled as such")
        trainer = build.build_trainer(cfg, chunk, data, device, run_dir, ctx)
        say(
            f"[{i}/{len(chunks)}] {run_dir} "
            f"({len(chunk)} members, {trainer.loop.total_steps} steps)"
        )
        status = trainer.run()
        if status == "interrupted":
            return 130
    say(f"done. Analyse with: python -m elurepro.analyze {cfg.name} {out}")
    return 0


@hydra.main(version_base="1.3", config_path="../configs", config_name="train")
def main(cfg: DictConfig) -> None:
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

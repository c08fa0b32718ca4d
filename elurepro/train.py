"""Entry point: ``python -m elurepro.train experiment=<id> [budget=smoke|short|paper] [overrides]``.

Trains every member of the experiment (all activations and seeds), population by population.
A finished population is skipped and an interrupted one continues from its checkpoint, so the
same command finishes a sweep, however often it was stopped.
"""

from __future__ import annotations

import sys

import hydra
import torch
from omegaconf import DictConfig

from elurepro import build
from elurepro.errors import ElureproError


def run(cfg: DictConfig) -> int:
    device = build.pick_device(cfg.device)
    chunks = build.plan_chunks(cfg)
    members = [m for c in chunks for m in c]
    groups = sorted({m.group for m in members})
    out = build.experiment_dir(cfg)
    print(
        f"{cfg.name}: {len(members)} members ({', '.join(groups)}; "
        f"{len({m.seed for m in members})} seeds) in {len(chunks)} population(s), "
        f"budget={cfg.budget.name}, device={device}; runs in {out}"
    )
    data = None
    for i, chunk in enumerate(chunks, 1):
        run_dir = build.population_dir(cfg, chunk)
        if all((run_dir / "members" / m.id / "summary.json").exists() for m in chunk):
            print(f"[{i}/{len(chunks)}] {run_dir.name}: finished earlier, skipped")
            continue
        if data is None:
            data = build.build_data(cfg, device)
            if not data.info.get("official", True):
                print(f"note: {data.info['description']}; results are labelled as such")
        trainer = build.build_trainer(cfg, chunk, data, device, run_dir)
        print(
            f"[{i}/{len(chunks)}] {run_dir} "
            f"({len(chunk)} members, {trainer.loop.total_steps} steps)"
        )
        status = trainer.run()
        if status == "interrupted":
            return 130
    print(f"done. Analyse with: python -m elurepro.analyze {cfg.name} {out}")
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

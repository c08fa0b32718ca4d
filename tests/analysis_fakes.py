"""Synthetic run folders in the trainer's on-disk format, for the analysis tests.

Each `fake_*` function writes a population under `runs/<experiment>/` and returns the exact
numbers it wrote, so tests can compute the expected tables independently.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np


def member_info(
    experiment: str,
    dataset: str,
    activation: str,
    seed: int,
    group: str | None = None,
    batchnorm: bool = False,
    lr: float = 0.01,
    budget: str = "paper",
) -> dict:
    group = group or (activation + ("+bn" if batchnorm else ""))
    return {
        "id": f"{group}-s{seed}",
        "experiment": experiment,
        "dataset": dataset,
        "activation": activation,
        "activation_params": {"alpha": 1.0} if activation == "elu" else {},
        "batchnorm": batchnorm,
        "seed": seed,
        "lr": lr,
        "budget": budget,
        "group": group,
    }


def write_member(
    population: Path,
    info: dict,
    records: list[dict],
    status: str | None = "finished",
    diverged_at_step: int | None = None,
    official: bool = True,
    final: dict | None = None,
) -> Path:
    """Write members/<id>/ with member.json, metrics.jsonl and (unless status is None)
    summary.json whose `final` holds the last logged value of every metric."""
    folder = population / "members" / info["id"]
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "member.json").write_text(json.dumps(info))
    with (folder / "metrics.jsonl").open("w") as fh:
        for record in records:
            fh.write(json.dumps(record) + "\n")
    if status is not None:
        if final is None:
            final = {}
            for record in records:
                for key, value in record.items():
                    if key not in ("step", "epoch", "images", "wall_time"):
                        final[key] = value
        summary = {
            "status": status,
            "diverged_at_step": diverged_at_step,
            "final": final,
            "steps": max(r["step"] for r in records),
            "wall_time_s": records[-1].get("wall_time", 0.0),
            "device": "cpu",
            "torch": "2.14.1",
            "git_commit": "0123456789abcdef",
            "data": {"name": info["dataset"], "official": official, "fingerprint": "f00d"},
            "budget": info["budget"],
            "member": info,
            "config": {"experiment": info["experiment"]},
        }
        (folder / "summary.json").write_text(json.dumps(summary))
    return folder


def population_dir(runs: Path, experiment: str, name: str = "pop-0badc0de") -> Path:
    path = runs / experiment / name
    path.mkdir(parents=True, exist_ok=True)
    (path / "config.yaml").write_text(f"experiment: {experiment}\n")
    return path


MEANACT_OFFSET = {"elu": 0.02, "lrelu": 0.15, "relu": 0.35, "srelu": -0.10}
MEANACT_SPEED = {"elu": 0.30, "lrelu": 0.20, "relu": 0.15, "srelu": 0.25}


def fake_meanact(
    runs: Path,
    groups=("elu", "relu", "lrelu"),
    seeds=range(5),
    epochs: int = 30,
    skip: tuple = (),
    offsets: dict | None = None,
) -> dict:
    """MNIST Fig. 2 runs: returns {(group, seed): {metric: array over epochs 0..E}}."""
    offsets = offsets or MEANACT_OFFSET
    pop = population_dir(runs, "mnist_meanact")
    data = {}
    steps_per_epoch = 782
    for group in groups:
        for seed in seeds:
            if (group, seed) in skip:
                continue
            rng = np.random.default_rng(1000 * seed + len(group))
            e = np.arange(epochs + 1, dtype=float)
            layers = {
                f"act/median/layer{k}": offsets[group] * k / 4 + 0.02 * rng.standard_normal(e.size)
                for k in (1, 2, 3)
            }
            curves = {
                "act/median": offsets[group] + 0.03 * rng.standard_normal(e.size),
                "train/loss": 2.3 * np.exp(-MEANACT_SPEED[group] * e) + 0.01 * rng.random(e.size),
                "val/loss": 2.3 * np.exp(-MEANACT_SPEED[group] * e)
                + 0.05
                + 0.01 * rng.random(e.size),
                "val/error": 90 * np.exp(-MEANACT_SPEED[group] * e) + 2 + rng.random(e.size),
                **layers,
            }
            records = []
            for i, epoch in enumerate(e):
                record = {
                    "step": int(epoch) * steps_per_epoch,
                    "epoch": epoch,
                    "images": int(epoch) * 50000,
                    "wall_time": 2.0 * epoch,
                }
                for name, values in curves.items():
                    if name == "train/loss" and epoch == 0:
                        continue  # no training loss before training
                    record[name] = float(values[i])
                records.append(record)
            data[(group, seed)] = curves
            write_member(
                pop, member_info("mnist_meanact", "mnist", group, seed, budget="short"), records
            )
    return data


def fake_autoencoder(
    runs: Path,
    acts=("elu", "relu"),
    lrs=(0.01, 0.001),
    seeds=(0,),
    epochs: int = 12,
    diverge: dict | None = None,
) -> dict:
    """Fig. 3 runs; `diverge` maps (act, lr, seed) -> epoch after which values are NaN."""
    diverge = diverge or {}
    pop = population_dir(runs, "mnist_autoencoder")
    base = {"elu": 5.0, "relu": 8.0, "lrelu": 7.0, "srelu": 6.0}
    data = {}
    steps_per_epoch = 938
    for act in acts:
        for lr in lrs:
            for seed in seeds:
                e = np.arange(epochs + 1, dtype=float)
                level = base[act] * (1 + 10 * (0.01 / lr) ** 0.25)
                train = level * (1 + 3 * np.exp(-0.4 * e)) + 0.1 * seed
                test = train + 1.0
                stop = diverge.get((act, lr, seed))
                records = []
                for i, epoch in enumerate(e):
                    if stop is not None and epoch > stop + 1:
                        break
                    bad = stop is not None and epoch > stop
                    records.append(
                        {
                            "step": int(epoch) * steps_per_epoch,
                            "epoch": epoch,
                            "train/recon_error": math.nan if bad else float(train[i]),
                            "test/recon_error": math.nan if bad else float(test[i]),
                        }
                    )
                info = member_info(
                    "mnist_autoencoder",
                    "mnist",
                    act,
                    seed,
                    group=f"{act}@lr={lr:g}",
                    lr=lr,
                    budget="short",
                )
                if stop is None:
                    write_member(pop, info, records)
                else:
                    write_member(
                        pop,
                        info,
                        records,
                        status="diverged",
                        diverged_at_step=int(stop + 1) * steps_per_epoch,
                    )
                data[(act, lr, seed)] = (train, test, stop)
    return data


CIFAR_LEVEL = {"elu": 28.8, "srelu": 29.4, "lrelu": 30.6, "relu": 31.6}
CIFAR_BN = {"elu": 0.3, "srelu": 0.2, "lrelu": -0.8, "relu": -1.2}


def fake_cifar11(
    runs: Path,
    seeds=range(10),
    steps: int = 20_000,
    dataset: str = "cifar100",
    official: bool = True,
    budget: str = "paper",
    skip: tuple = (),
    batchnorm: bool = True,
) -> dict:
    """Fig. 4/5 runs, ELU best on every seed; returns {(group, seed): (test_err, train_loss)}."""
    pop = population_dir(runs, "cifar100_11layer")
    finals = {}
    for act in ("elu", "srelu", "lrelu", "relu"):
        for bn in (False, True) if batchnorm else (False,):
            group = act + ("+bn" if bn else "")
            for seed in seeds:
                if (group, seed) in skip:
                    continue
                rng = np.random.default_rng(97 * seed + 13 * len(group) + bn)
                level = CIFAR_LEVEL[act] + (CIFAR_BN[act] if bn else 0.0)
                # Seed effects shared across configurations keep ELU ahead on every pair.
                shift = 0.1 * seed
                records = []
                for step in range(0, steps + 1, 1000):
                    frac = step / steps
                    err = level + shift + 60 * math.exp(-8 * frac) + 0.01 * rng.random()
                    loss = 0.01 * (level + shift) + 4 * math.exp(-8 * frac) + 1e-4 * rng.random()
                    record = {
                        "step": step,
                        "epoch": step / 500,
                        "images": step * 100,
                        "wall_time": step * 0.01,
                        "test/error": err,
                    }
                    if step:
                        record["train/loss"] = loss
                    records.append(record)
                info = member_info(
                    "cifar100_11layer", dataset, act, seed, batchnorm=bn, budget=budget
                )
                write_member(pop, info, records, official=official)
                finals[(group, seed)] = (records[-1]["test/error"], records[-1]["train/loss"])
    return finals


def fake_cifar18(
    runs: Path, datasets=("cifar10", "cifar100"), steps: int = 20_500, official: dict | None = None
) -> dict:
    """Table 1 runs, one ELU member per data set; returns {dataset: records}."""
    official = official or {}
    out = {}
    for d in datasets:
        pop = population_dir(runs, "cifar_18layer", f"{d}-1234abcd")
        level = {"cifar10": 7.0, "cifar100": 25.0}[d]
        records = []
        for step in range(0, steps + 1, 500):
            records.append(
                {
                    "step": step,
                    "epoch": step / 500,
                    "images": step * 100,
                    "test/error": level + 50 * math.exp(-6 * step / steps),
                    "train/loss": 0.1 + 3 * math.exp(-6 * step / steps),
                }
            )
        write_member(
            pop,
            member_info("cifar_18layer", d, "elu", 0, budget="paper"),
            records,
            official=official.get(d, True),
        )
        out[d] = records
    return out


def fake_imagenet(runs: Path, steps: int = 300_000, every: int = 10_000) -> dict:
    """Fig. 6 runs (elu reaches 20 % top-5 first); returns {group: records}."""
    pop = population_dir(runs, "imagenet_15layer_spp")
    out = {}
    for act, speed, hours in (("elu", 1.3, 12.0), ("relu", 1.0, 11.5)):
        records = []
        for step in range(0, steps + 1, every):
            top5 = 8 + 90 * math.exp(-speed * 9 * step / steps)
            records.append(
                {
                    "step": step,
                    "epoch": step / 10_000,
                    "images": step * 128,
                    "wall_time": step / 10_000 * hours * 3600,
                    "train/loss": 6.9 * math.exp(-speed * 3 * step / steps),
                    "val/top5_error": top5,
                    "val/error": top5 + 15,
                }
            )
        final = {
            "val_full/top5_error": records[-1]["val/top5_error"] + 0.5,
            "val_full/error": records[-1]["val/error"] + 0.5,
            "val/top5_error": records[-1]["val/top5_error"],
        }
        write_member(
            pop, member_info("imagenet_15layer_spp", "imagenet", act, 0), records, final=final
        )
        out[act] = records
    return out

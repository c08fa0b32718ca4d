"""Synthetic run folders in the trainer's on-disk formats, for the analysis tests.

The run store's layout (``runs/<experiment>/<data>-<budget>/d<fp8>-c<cfg8>/<group>/s<seed>/``,
provenance.json in the member folder, member.json with ``key``/``sweep``/``data``; `run_info` +
`write_run`) is what the analysis reads. The layout before it
(``runs/<experiment>/<pop>-<hash8>/members/<id>/``, provenance.json in the population folder;
`member_info` + `write_member`) is written for ``scripts/migrate_runs.py``, which moves it into
the run store's (`migrate_old`). Each `fake_*` function takes `layout`: with 'old' it writes the
old layout and migrates it, so every report test also checks the migration. Each returns the
exact numbers it wrote, so tests can compute the expected tables independently.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import math
import sys
from pathlib import Path

import numpy as np

from elurepro.activations import parse_activation

EVAL_IMAGES = 10_000  # images per evaluation split of the new-layout fakes
REPO = Path(__file__).resolve().parents[1]


def migrate_script():
    """scripts/migrate_runs.py as a module."""
    if "migrate_runs" not in sys.modules:
        spec = importlib.util.spec_from_file_location(
            "migrate_runs", REPO / "scripts" / "migrate_runs.py"
        )
        module = importlib.util.module_from_spec(spec)
        sys.modules["migrate_runs"] = module
        spec.loader.exec_module(module)
    return sys.modules["migrate_runs"]


def migrate_old(runs: Path) -> list[str]:
    """Run the migration on `runs`; returns its lines (a member left behind fails the test)."""
    lines: list[str] = []
    left = migrate_script().migrate(runs, say=lines.append)
    assert left == 0, lines
    return lines


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


def _hash16(*parts: object) -> str:
    return hashlib.sha256("|".join(map(str, parts)).encode()).hexdigest()[:16]


def data_record(dataset: str, official: bool = True, description: str | None = None) -> dict:
    """member.json's `data`: a fingerprint that differs between official and other copies."""
    return {
        "name": dataset,
        "fingerprint": _hash16(dataset, official, description),
        "official": official,
        "description": description or (f"official {dataset}" if official else None),
    }


def run_info(
    experiment: str,
    dataset: str,
    activation: str,
    seed: int,
    *,
    params: dict | None = None,
    batchnorm: bool = False,
    lr: float = 0.01,
    lr_in_group: bool = False,
    budget: str = "paper",
    official: bool = True,
    description: str | None = None,
    config: str = "A",
) -> dict:
    """A new-layout member.json: group `<unit label>[+bn][-lr<lr>]`, key, sweep, data.

    `config` stands for the configuration that changes the mathematics (its hash is c<cfg8>).
    """
    unit = parse_activation({"name": activation, **(params or {})}).label
    group = unit + ("+bn" if batchnorm else "") + (f"-lr{lr:g}" if lr_in_group else "")
    data = data_record(dataset, official, description)
    cfg = _hash16(experiment, config)
    sweep = _hash16(experiment, cfg, data["fingerprint"], budget)
    return {
        "id": f"{group}-s{seed}",
        "group": group,
        "activation": activation,
        "activation_params": dict(params or {}),
        "batchnorm": batchnorm,
        "lr": lr,
        "seed": seed,
        "experiment": experiment,
        "dataset": dataset,
        "budget": budget,
        "key": _hash16(sweep, group, seed),
        "sweep": sweep,
        "data": data,
        "_cfg": cfg,  # not in member.json: only names the folder
    }


def run_folder(runs: Path, info: dict) -> Path:
    """Where the trainer puts a new-layout member."""
    sweep = f"d{info['data']['fingerprint'][:8]}-c{info['_cfg'][:8]}"
    return (
        runs
        / info["experiment"]
        / f"{info['dataset']}-{info['budget']}"
        / sweep
        / info["group"]
        / f"s{info['seed']}"
    )


def _provenance(info: dict, data: dict, records: list[dict]) -> dict:
    return {
        "device": "cpu",
        "torch": "2.14.1",
        "git_commit": "0123456789abcdef",
        "data": data,
        "budget": info["budget"],
        "total_steps": max((r["step"] for r in records), default=0),
        "config": {"experiment": info["experiment"]},
    }


def _write_files(
    folder: Path,
    info: dict,
    records: list[dict],
    status: str | None,
    diverged_at_step: int | None,
    data: dict,
    final: dict | None,
    extra: dict | None = None,
) -> Path:
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
            **_provenance(info, data, records),
            "member": info,
            **(extra or {}),
        }
        (folder / "summary.json").write_text(json.dumps(summary))
    return folder


def write_member(
    population: Path,
    info: dict,
    records: list[dict],
    status: str | None = "finished",
    diverged_at_step: int | None = None,
    official: bool = True,
    final: dict | None = None,
) -> Path:
    """Old layout: write members/<id>/ with member.json, metrics.jsonl and (unless status is
    None) summary.json whose `final` holds the last logged value of every metric."""
    data = {"name": info["dataset"], "official": official, "fingerprint": "f00d"}
    folder = population / "members" / info["id"]
    return _write_files(folder, info, records, status, diverged_at_step, data, final)


def write_run(
    runs: Path,
    info: dict,
    records: list[dict],
    status: str | None = "finished",
    diverged_at_step: int | None = None,
    final: dict | None = None,
    eval_images: dict | None = None,
) -> Path:
    """New layout: the member folder with member.json, metrics.jsonl, provenance.json (written
    when training starts) and, unless status is None, summary.json with `eval_images`."""
    folder = run_folder(runs, info)
    member = {k: v for k, v in info.items() if not k.startswith("_")}
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "provenance.json").write_text(
        json.dumps(_provenance(member, member["data"], records))
    )
    images = {"eval_images": eval_images} if eval_images else {}
    return _write_files(
        folder, member, records, status, diverged_at_step, member["data"], final, images
    )


def on_grid(error: float, images: int = EVAL_IMAGES) -> float:
    """An error rate in % as the trainer computes it: a count of `images`, times 100/N."""
    return round(error * images / 100) * 100 / images


def write_any(
    runs: Path,
    layout: str,
    experiment: str,
    dataset: str,
    activation: str,
    seed: int,
    records: list[dict],
    *,
    population: str = "pop-0badc0de",
    batchnorm: bool = False,
    lr: float = 0.01,
    lr_in_group: bool = False,
    budget: str = "paper",
    official: bool = True,
    status: str | None = "finished",
    diverged_at_step: int | None = None,
    final: dict | None = None,
    params: dict | None = None,
) -> tuple[dict, Path]:
    """Write one member in `layout` ('old' or 'new'); returns (member.json, folder)."""
    if layout == "old":
        group = activation + ("+bn" if batchnorm else "")
        group = f"{group}@lr={lr:g}" if lr_in_group else group
        info = member_info(experiment, dataset, activation, seed, group, batchnorm, lr, budget)
        pop = population_dir(runs, experiment, population)
        folder = write_member(pop, info, records, status, diverged_at_step, official, final)
        return info, folder
    info = run_info(
        experiment,
        dataset,
        activation,
        seed,
        params=params,
        batchnorm=batchnorm,
        lr=lr,
        lr_in_group=lr_in_group,
        budget=budget,
        official=official,
    )
    splits = {k.split("/")[0] for r in records for k in r if k.endswith("error")}
    eval_images = {split: EVAL_IMAGES for split in sorted(splits)}
    folder = write_run(runs, info, records, status, diverged_at_step, final, eval_images)
    return info, folder


def population_dir(runs: Path, experiment: str, name: str = "pop-0badc0de") -> Path:
    path = runs / experiment / name
    path.mkdir(parents=True, exist_ok=True)
    (path / "config.yaml").write_text(f"experiment: {experiment}\n")
    return path


MEANACT_OFFSET = {"elu": 0.02, "lrelu": 0.15, "relu": 0.35, "srelu": -0.10}
MEANACT_SPEED = {"elu": 0.30, "lrelu": 0.20, "relu": 0.15, "srelu": 0.25}


def _grid(layout: str, value: float) -> float:
    # New-layout fakes log error rates as the trainer does: counts of EVAL_IMAGES images.
    return on_grid(value) if layout == "new" else value


def fake_meanact(
    runs: Path,
    groups=("elu", "relu", "lrelu"),
    seeds=range(5),
    epochs: int = 30,
    skip: tuple = (),
    offsets: dict | None = None,
    layout: str = "old",
    budget: str = "short",
    official: bool = True,
) -> dict:
    """MNIST Fig. 2 runs: returns {(group, seed): {metric: array over epochs 0..E}}."""
    offsets = offsets or MEANACT_OFFSET
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
                "val/error": np.asarray(
                    [
                        _grid(layout, v)
                        for v in 90 * np.exp(-MEANACT_SPEED[group] * e) + 2 + rng.random(e.size)
                    ]
                ),
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
            write_any(
                runs,
                layout,
                "mnist_meanact",
                "mnist",
                group,
                seed,
                records,
                budget=budget,
                official=official,
            )
    if layout == "old":
        migrate_old(runs)
    return data


def fake_autoencoder(
    runs: Path,
    acts=("elu", "relu"),
    lrs=(0.01, 0.001),
    seeds=(0,),
    epochs: int = 12,
    diverge: dict | None = None,
    layout: str = "old",
    budget: str = "short",
    official: bool = True,
) -> dict:
    """Fig. 3 runs; `diverge` maps (act, lr, seed) -> epoch after which values are NaN."""
    diverge = diverge or {}
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
                write_any(
                    runs,
                    layout,
                    "mnist_autoencoder",
                    "mnist",
                    act,
                    seed,
                    records,
                    lr=lr,
                    lr_in_group=True,
                    budget=budget,
                    official=official,
                    status="finished" if stop is None else "diverged",
                    diverged_at_step=None if stop is None else int(stop + 1) * steps_per_epoch,
                )
                data[(act, lr, seed)] = (train, test, stop)
    if layout == "old":
        migrate_old(runs)
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
    layout: str = "old",
) -> dict:
    """Fig. 4/5 runs, ELU best on every seed; returns {(group, seed): (test_err, train_loss)}."""
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
                        "test/error": _grid(layout, err),
                    }
                    if step:
                        record["train/loss"] = loss
                    records.append(record)
                write_any(
                    runs,
                    layout,
                    "cifar100_11layer",
                    dataset,
                    act,
                    seed,
                    records,
                    batchnorm=bn,
                    budget=budget,
                    official=official,
                )
                finals[(group, seed)] = (records[-1]["test/error"], records[-1]["train/loss"])
    if layout == "old":
        migrate_old(runs)
    return finals


def fake_cifar18(
    runs: Path,
    datasets=("cifar10", "cifar100"),
    steps: int = 20_500,
    official: dict | None = None,
    layout: str = "old",
    budget: str = "paper",
    units=("elu",),
) -> dict:
    """Table 1 runs, one member per unit and data set; returns {dataset: records} (of the
    first unit, ELU by default)."""
    official = official or {}
    out = {}
    for d in datasets:
        level = {"cifar10": 7.0, "cifar100": 25.0}[d]
        for k, unit in enumerate(units):
            records = []
            for step in range(0, steps + 1, 500):
                records.append(
                    {
                        "step": step,
                        "epoch": step / 500,
                        "images": step * 100,
                        "test/error": _grid(
                            layout, level + 0.5 * k + 50 * math.exp(-6 * step / steps)
                        ),
                        "train/loss": 0.1 + 0.01 * k + 3 * math.exp(-6 * step / steps),
                    }
                )
            write_any(
                runs,
                layout,
                "cifar_18layer",
                d,
                unit,
                0,
                records,
                population=f"{d}-1234abcd",
                budget=budget,
                official=official.get(d, True),
            )
            out.setdefault(d, records)
    if layout == "old":
        migrate_old(runs)
    return out


def fake_imagenet(
    runs: Path,
    steps: int = 300_000,
    every: int = 10_000,
    layout: str = "old",
    budget: str = "paper",
    official: bool = True,
) -> dict:
    """Fig. 6 runs (elu reaches 20 % top-5 first); returns {group: records}."""
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
                    "val/top5_error": _grid(layout, top5),
                    "val/error": _grid(layout, top5 + 15),
                }
            )
        final = {
            "val_full/top5_error": _grid(layout, records[-1]["val/top5_error"] + 0.5),
            "val_full/error": _grid(layout, records[-1]["val/error"] + 0.5),
            "val/top5_error": records[-1]["val/top5_error"],
        }
        write_any(
            runs,
            layout,
            "imagenet_15layer_spp",
            "imagenet",
            act,
            0,
            records,
            final=final,
            budget=budget,
            official=official,
        )
        out[act] = records
    if layout == "old":
        migrate_old(runs)
    return out


# Unit label -> (registry name, parameters), including units the analysis was never told of.
UNIT_SPECS = {
    "elu": ("elu", {}),
    "relu": ("relu", {}),
    "lrelu": ("lrelu", {}),
    "srelu": ("srelu", {}),
    "gelu": ("gelu", {}),
    "mish": ("mish", {}),
    "lrelu_alpha0.3": ("lrelu", {"alpha": 0.3}),
}


def fake_units(
    runs: Path,
    experiment: str,
    dataset: str,
    values: dict[tuple[str, bool, int], dict[str, float]],
    *,
    budget: str = "short",
    official: bool = True,
    description: str | None = None,
    epochs: int = 3,
    steps_per_epoch: int = 1000,
    status: dict | None = None,
) -> dict[tuple[str, bool, int], Path]:
    """New-layout runs with given final values: `values` maps (unit label, batchnorm, seed) to
    {metric: final value}. Each metric is logged at epochs 0..E: its final value plus 1 at
    epoch 0 and exactly the final value from epoch 1 on (so a mean over training epochs is the
    final value too). Error rates are logged in float32, as a GPU computes them, which puts
    them a little off the 100/N grid; summary.json says N. `status` maps a key to a status
    (None: unfinished). Returns the member folders."""
    folders = {}
    for (label, bn, seed), finals in values.items():
        activation, params = UNIT_SPECS[label]
        info = run_info(
            experiment,
            dataset,
            activation,
            seed,
            params=params,
            batchnorm=bn,
            budget=budget,
            official=official,
            description=description,
        )
        assert info["group"] == label + ("+bn" if bn else ""), info["group"]
        logged = {
            k: float(np.float32(v)) if k.endswith("error") else float(v) for k, v in finals.items()
        }
        records = []
        for epoch in range(epochs + 1):
            record = {"step": epoch * steps_per_epoch, "epoch": float(epoch)}
            for metric, value in logged.items():
                if metric == "train/loss" and epoch == 0:
                    continue
                record[metric] = value + (1.0 if epoch == 0 else 0.0)
            records.append(record)
        splits = sorted({k.split("/")[0] for k in finals if k.endswith("error")})
        folders[(label, bn, seed)] = write_run(
            runs,
            info,
            records,
            status=(status or {}).get((label, bn, seed), "finished"),
            eval_images={split: EVAL_IMAGES for split in splits},
        )
    return folders

"""What ``make bench-gpu`` needs on a lent GPU machine, built here: that machine has PyTorch but
not the suite's pure-Python dependencies, no data, and no network, and it is sent the working tree
and at most 64 MiB in all.

- ``.devsite/``: hydra, omegaconf and antlr4 copied from this interpreter's site-packages;
- ``.devdata/``: what ``python -m elurepro.learns`` trains the CNN configs on: the first
  ``--cifar-images`` training and a fifth as many test images of a CIFAR-10 copy, in
  torchvision's file layout, and a tiny-imagenet-10 folder, copied from ``--data``
  (``--plan curves``, issue 21's item 6 in ``make curves-gpu``: no ImageNet, and by default
  12,000 CIFAR images, about what fits beside the working tree).

Both are added to ``.git/info/exclude`` (ignored, so they travel only when carried). It prints the
device call: the prepared GPU script with ``.devsite`` and ``.devdata`` carried.

    python scripts/gpu_payload.py [--data $ELUREPRO_DATA] [--plan bench|curves]
        [--cifar-images N]
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import pickle
import shutil
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
PACKAGES = ("hydra", "omegaconf", "antlr4")
CARRY = (".devsite", ".devdata")
LIMIT = 64 * 2**20  # bytes a device call may send, the working tree included


def copy_packages(dest: Path) -> None:
    dest.mkdir(parents=True, exist_ok=True)
    for name in PACKAGES:
        spec = importlib.util.find_spec(name)
        if spec is None or not spec.submodule_search_locations:
            raise SystemExit(f"error: {name} is not installed here; run `make install` first")
        source = Path(next(iter(spec.submodule_search_locations)))
        shutil.copytree(source, dest / name, dirs_exist_ok=True, ignore=_no_bytecode)


def _no_bytecode(folder: str, names: list[str]) -> list[str]:
    return [n for n in names if n == "__pycache__" or n.endswith(".pyc")]


def cifar10_subset(source: Path, dest: Path, images: int) -> None:
    """The first ``images`` training images (spread over the five batch files) and
    ``images // 5`` test images, in torchvision's CIFAR-10 layout."""
    dest.mkdir(parents=True, exist_ok=True)
    per_file = {f"data_batch_{i}": images // 5 for i in range(1, 6)} | {"test_batch": images // 5}
    for name, n in per_file.items():
        with open(source / name, "rb") as f:
            batch = pickle.load(f, encoding="latin1")
        part = {k: v[:n] for k, v in batch.items() if k in ("data", "labels", "filenames")}
        with open(dest / name, "wb") as f:
            pickle.dump({"batch_label": batch.get("batch_label", name), **part}, f, protocol=4)
    shutil.copy(source / "batches.meta", dest / "batches.meta")


def tree_bytes(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


def exclude(names: tuple[str, ...]) -> None:
    path = REPO / ".git" / "info" / "exclude"
    path.parent.mkdir(parents=True, exist_ok=True)
    have = path.read_text().splitlines() if path.exists() else []
    with open(path, "a") as f:
        for name in names:
            if f"/{name}/" not in have:
                f.write(f"/{name}/\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=os.environ.get("ELUREPRO_DATA"))
    parser.add_argument("--plan", choices=("bench", "curves"), default="bench")
    parser.add_argument("--cifar-images", type=int, help="default 4000 (bench), 12000 (curves)")
    args = parser.parse_args()
    images = args.cifar_images or (12000 if args.plan == "curves" else 4000)
    if args.data is None or not (args.data / "cifar-10-batches-py").is_dir():
        parser.error("--data (or ELUREPRO_DATA) must hold cifar-10-batches-py/")
    for name in CARRY:
        shutil.rmtree(REPO / name, ignore_errors=True)
    copy_packages(REPO / ".devsite")
    data = REPO / ".devdata"
    cifar10_subset(args.data / "cifar-10-batches-py", data / "cifar-10-batches-py", images)
    if args.plan == "bench" and (args.data / "tiny-imagenet-10").is_dir():
        shutil.copytree(args.data / "tiny-imagenet-10", data / "tiny-imagenet-10")
    exclude(CARRY)
    sizes = {name: tree_bytes(REPO / name) for name in CARRY}
    for name, size in sizes.items():
        print(f"{name}: {size / 2**20:.1f} MiB")
    if sum(sizes.values()) > LIMIT // 2:
        print("warning: this leaves less than half of the 64 MiB a device call may send")
    plan = "" if args.plan == "bench" else "PLAN=curves "
    print(
        f'device call: run(command="{plan}bash scripts/gpu_check.sh" (make {args.plan}-gpu; no '
        'make there), carry=[".devsite", ".devdata"], timeout_s=540)'
    )


if __name__ == "__main__":
    main()

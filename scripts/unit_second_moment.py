"""How much of its input's second moment each unit passes on, against ELU (U3's gain per unit).

For z ~ N(0, s^2) it prints E[elu(z)^2] / E[f(z)^2] for the paper's units at several input scales
s: the factor by which a unit's weight variance must exceed ELU's for a layer of that unit to pass
on what a layer of ELU passes on. Under N(0, 1/fan_in) the CIFAR nets' pre-activations have an rms
of about 0.1-0.6 (results/cnn_scale/), where ReLU and LReLU(0.1) need about 1.5-1.9 times ELU's.

    python scripts/unit_second_moment.py [--samples 2000000]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from elurepro.activations import parse_activation  # noqa: E402

UNITS = ("relu", "lrelu", "srelu")
SCALES = (0.1, 0.2, 0.3, 0.5, 0.7, 1.0)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--samples", type=int, default=2_000_000)
    args = p.parse_args()
    z = torch.randn(args.samples, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    elu = parse_activation("elu").build()
    units = {u: parse_activation(u).build() for u in UNITS}
    print("| input rms s | " + " | ".join(f"ELU / {u}" for u in UNITS) + " |")
    print("|---" * (len(UNITS) + 1) + "|")
    with torch.no_grad():
        for s in SCALES:
            x = z * s
            ref = elu(x).pow(2).mean()
            ratios = [float(ref / f(x).pow(2).mean()) for f in units.values()]
            print(f"| {s:g} | " + " | ".join(f"{r:.2f}" for r in ratios) + " |")


if __name__ == "__main__":
    main()

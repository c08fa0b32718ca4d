"""Graph capture: the compiled training step computes what the eager one does.

On a GPU ``execution.compile_mode=reduce-overhead`` replays the compiled forward and backward as
CUDA graphs; on this CPU the same code path (torch.compile of the population, its backward
through AOTAutograd) runs without the capture, so its mathematics is what is tested here; its
speed is measured by ``make bench-gpu`` where a GPU is available.
"""

from __future__ import annotations

import pytest

from tests.train_utils import mnist_pair, records, train


def _cfg(mnist_root, runs, *overrides):
    return mnist_pair(mnist_root, runs, "model.sizes=[784,64,64,10]", *overrides)


@pytest.mark.filterwarnings("ignore:.*not the official release")
def test_the_compiled_step_matches_the_eager_one(mnist_root, tmp_path):
    eager, _ = train(_cfg(mnist_root, tmp_path / "eager"))
    graphs = ("execution.compile=true", "execution.compile_mode=reduce-overhead")
    compiled, status = train(_cfg(mnist_root, tmp_path / "compiled", *graphs))
    assert status == "finished"
    for member in ("elu-s0", "relu-s0"):
        a, b = records(eager, member), records(compiled, member)
        assert [r["step"] for r in a] == [r["step"] for r in b]
        for ra, rb in zip(a, b):
            for key, value in ra.items():
                if key != "wall_time":
                    assert rb[key] == pytest.approx(value, rel=1e-4, abs=1e-6), (ra["step"], key)

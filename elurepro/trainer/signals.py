"""SIGINT and SIGTERM while a population trains.

The first signal asks the loop to checkpoint and stop after the step it is in. A second one stops
at once, since the last checkpoint on disk is whole; while a checkpoint is being written it waits
for that checkpoint to be finished.
"""

from __future__ import annotations

import contextlib
import signal
from collections.abc import Iterator
from pathlib import Path
from types import FrameType

STOPPING = (signal.SIGINT, signal.SIGTERM)


class StopNow(KeyboardInterrupt):
    """A second SIGINT / SIGTERM: stop at once, without a further checkpoint."""

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum


class StopSignals:
    """The handler of SIGINT and SIGTERM between ``install`` and ``uninstall``."""

    def __init__(self) -> None:
        self.received: int | None = None  # the first signal: the loop stops at its next step
        self._holding = False  # a checkpoint is being written
        self._held: int | None = None  # a second signal that came during that write
        self._previous: dict[int, object] = {}

    def install(self) -> None:
        try:
            self._previous = {s: signal.signal(s, self._handle) for s in STOPPING}
        except ValueError:  # not in the main thread
            self._previous = {}

    def uninstall(self) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        self._previous = {}

    @contextlib.contextmanager
    def held(self) -> Iterator[None]:
        """A second signal waits while the block (a checkpoint's write) runs."""
        self._holding = True
        try:
            yield
        finally:
            self._holding = False

    def stop_if_held(self) -> None:
        """StopNow for a second signal that was held back by ``held``."""
        if self._held is not None:
            raise StopNow(self._held)

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        if self.received is None:
            self.received = signum
        elif not self._holding:
            raise StopNow(signum)
        else:
            self._held = signum


def interrupted_line(step: int, folder: Path) -> str:
    return (
        f"interrupted at step {step}; checkpoint saved in {folder}. "
        "Run the same command again to continue."
    )


def stopped_at_once_line(signum: int, step: int, saved_step: int | None, folder: Path) -> str:
    kept = (
        f"the checkpoint of step {saved_step} in {folder} is intact"
        if saved_step is not None
        else "no checkpoint was written yet"
    )
    return (
        f"stopped at once by a second {signal.Signals(signum).name} at step {step}; {kept}. "
        "Run the same command again to continue."
    )

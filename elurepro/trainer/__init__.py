"""Training one population: ``loop.py`` is the loop; the modules beside it are its duties.

``config`` (what the loop is told), ``state`` (what it carries, and a checkpoint restores),
``recorder`` (every write into a member's folder), ``checkpointing``, ``signals``,
``evaluation``, ``monitoring``, ``execution`` (device, precision, DDP) and ``optimizer``.
"""

from elurepro.trainer.config import Events, ExecConfig, LoopConfig, OptimConfig
from elurepro.trainer.loop import Trainer, TrainingData
from elurepro.trainer.optimizer import sgd
from elurepro.trainer.recorder import Outputs

__all__ = [
    "Events",
    "ExecConfig",
    "LoopConfig",
    "OptimConfig",
    "Outputs",
    "Trainer",
    "TrainingData",
    "sgd",
]

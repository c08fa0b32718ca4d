"""The training command as the user typed it, for summaries and provenance.

Under a submitit launcher the training runs in a job whose own command line is submitit's
(``python -m submitit.core._submit <folder>``); the launcher passes the submitting command on in
``ELUREPRO_COMMAND``, set in the job's process only.
"""

from __future__ import annotations

import os
import shlex
import sys

ENV = "ELUREPRO_COMMAND"


def typed_command() -> str:
    """The command that started this run: the submitting one inside a launcher's job."""
    return os.environ.get(ENV) or shlex.join(["python", "-m", "elurepro.train", *sys.argv[1:]])

"""The 18-layer network's schedule (Table 1): the readings of the paper's, and phase ends."""

from __future__ import annotations

from collections.abc import Sequence

from elurepro.analysis.collect import MemberRun
from elurepro.analysis.table import RunTable

# The readings of "0.01, divided by 10 after 35k" (docs/protocol.md U14; configs/schedule/).
SCHEDULES = {
    "D1": "one drop to 0.001 at 35k; fine-tuning phases from 115k and 165k; 205k iterations",
    "D2": "one drop to 0.001 at 35k, fine-tuning from there; x1.5 dropout from 85k; 125k",
    "D3": "÷10 every 35k; fine-tuning phases from 115k and 165k; 205k iterations",
}


def schedule_line(members: Sequence[MemberRun]) -> str:
    """Which reading of Table 1's schedule the members were trained under."""
    names = sorted(
        {
            ((m.provenance or {}).get("config") or {}).get("optim", {}).get("schedule") or "D1"
            for m in members
        }
    )
    described = "; ".join(
        f"**{n}** ({SCHEDULES.get(n, 'not a reading of the paper')})" for n in names
    )
    return (
        f"Schedule: {described} (docs/protocol.md U14; runs from before the schedule was named "
        "are D1)."
    )


# Schedule D1 (docs/protocol.md §5.4, U14): phase ends at 115k, 165k and 205k of 205k iterations.
D1_PHASES = [
    ("before fine-tuning", 115 / 205),
    ("after fine-tuning", 165 / 205),
    ("after ×1.5 dropout", 1.0),
]


def phase_ends(table: RunTable, member: MemberRun) -> list[tuple[str, int]]:
    """(phase name, last step of the phase) for the 18-layer schedule.

    If the records carry a `phase` field, its last step per phase is used; otherwise the D1
    schedule's phase ends are placed at the same fractions of the member's total steps.
    """
    phases: dict[str, int] = {}
    steps, values = table.series(member, "phase", "step")
    for step, value in zip(steps.tolist(), values.tolist(), strict=True):
        # The trainer logs the phase as an int; the table holds every value as a float.
        name = str(int(value)) if value.is_integer() else str(value)
        phases[name] = max(phases.get(name, 0), int(step))
    if phases:
        return sorted(phases.items(), key=lambda kv: kv[1])
    total = (member.summary or {}).get("steps")
    if total is None:
        total = table.last_step(member) or 0
    return [(name, round(int(total) * frac)) for name, frac in D1_PHASES]

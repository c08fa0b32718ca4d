"""The paper's claims answered yes or no, and the report section that lists the answers."""

from __future__ import annotations

from collections.abc import Sequence

from elurepro.analysis.context import Analysis, ReportWriter


def elu_config(a: Analysis, lr: float | None = None) -> str | None:
    """The paper's ELU configuration (no BN; at learning rate `lr` when given)."""
    for config, members in a.configs().items():
        m = members[0]
        if m.unit == "elu" and not m.batchnorm and (lr is None or m.lr == lr):
            return config
    return None


def claim(
    question: str, elu: str | None, scores: dict[str, float], lacking: Sequence[str] = ()
) -> str:
    """'question **yes/no** — config value, ...' where the lowest score wins."""
    without = f"; no finished value for {', '.join(lacking)}" if lacking else ""
    if elu is None or elu not in scores:
        return f"{question} **cannot tell**: no finished ELU members with this metric{without}."
    ranking = sorted(scores.items(), key=lambda kv: kv[1])
    answer = "yes" if ranking[0][0] == elu else "no"
    listing = ", ".join(f"{c} {v:.4g}" for c, v in ranking)
    return f"{question} **{answer}** — {listing} (finished members only{without})."


def write(a: Analysis, w: ReportWriter, answers: Sequence[str]) -> None:
    """The answers, after the caveat when the runs are not comparable with the paper's."""
    w.section("Checks of the paper's claims")
    if a.claims_caveat():
        w.text(a.claims_caveat())
    w.bullets(answers)

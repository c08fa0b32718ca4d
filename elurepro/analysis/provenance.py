"""Data and budget labels, the provenance line, and why runs are not comparable with the paper."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence

from elurepro.analysis.collect import MemberRun

_DATASET_NAMES = {
    "mnist": "MNIST",
    "cifar10": "CIFAR-10",
    "cifar100": "CIFAR-100",
    "imagenet": "ImageNet",
    "tiny-imagenet-10": "Tiny ImageNet (10 classes)",
}


# How each reduced budget differs from the paper's protocol (README, "Budgets").
BUDGET_MEANING = {
    "short": "1/10 of the paper's training length",
    "demo": "1/100 of the paper's training length",
    "smoke": "a few steps on small subsets, a pipeline check",
}


def dataset_label(name: str, official: bool | None, description: str | None = None) -> str:
    """Human name of a data set; a non-official copy says so, with the trainer's description
    when it gave one (the only non-official CIFAR-10 of old runs was the lossy copy)."""
    pretty = _DATASET_NAMES.get(name, name)
    if official is False:
        if description:
            return f"{description} (not the official {pretty})"
        return "lossy CIFAR-10 copy" if name == "cifar10" else f"{pretty} (not the official data)"
    return pretty


def member_data_label(member: MemberRun) -> str:
    data = member.data
    return dataset_label(
        str(data.get("name", member.dataset)), data.get("official"), data.get("description")
    )


def data_label(members: Sequence[MemberRun]) -> str:
    """Data set label for titles, from member.json, the summaries or provenance.json."""
    labels = []
    for m in members:
        label = member_data_label(m)
        if label not in labels:
            labels.append(label)
    return ", ".join(labels) if labels else "no data"


def budget_label(members: Sequence[MemberRun]) -> str:
    budgets = sorted({m.budget or "unknown" for m in members})
    return "budget=" + "/".join(budgets) if budgets else "budget=?"


def _counted(values: Iterable[str]) -> str:
    counts = Counter(values)
    if len(counts) == 1:
        return next(iter(counts))
    return ", ".join(f"{value} ({n} members)" for value, n in counts.most_common())


def provenance(members: Sequence[MemberRun]) -> str:
    """One line: budget, device, torch, data set (official or not), git commit."""
    summarized = [m for m in members if m.summary is not None]
    if not summarized:
        return f"Provenance: {budget_label(members)}; no member has a summary.json yet."
    summaries = [m.summary or {} for m in summarized]
    datas = []
    for m in summarized:
        data = m.data
        official = data.get("official")
        kind = {True: "official", False: "NOT official"}.get(official, "official: unknown")
        fingerprint = data.get("fingerprint")
        fp = f", fingerprint {str(fingerprint)[:12]}" if fingerprint else ""
        datas.append(f"{member_data_label(m)} ({kind}{fp})")
    return (
        f"Provenance: {budget_label(members)}; "
        f"device: {_counted(str(s.get('device', '?')) for s in summaries)}; "
        f"torch {_counted(str(s.get('torch', '?')) for s in summaries)}; "
        f"data: {_counted(datas)}; "
        f"git commit {_counted(str(s.get('git_commit', '?'))[:12] for s in summaries)} "
        f"(read from {len(summarized)} run summaries)."
    )


def reduced_precision(members: Sequence[MemberRun]) -> list[str]:
    """The arithmetic options other than fp32 that these members were trained with."""
    return sorted(
        {
            key
            for m in members
            for key in ("bf16", "tf32")
            if (((m.summary or {}).get("config") or {}).get("execution") or {}).get(key)
        }
    )


def not_comparable_reason(
    members: Sequence[MemberRun], paper_dataset: str | Sequence[str] | None
) -> str | None:
    """Why these members' numbers cannot be set against the paper's, or None when they can.

    Not comparable: another data set than the paper's, data whose checksums are not the
    official release's (named, with the trainer's description), reduced precision (bf16, tf32),
    or any budget but `paper`.
    """
    reasons = []
    datasets = sorted({m.dataset for m in members})
    papers = [paper_dataset] if isinstance(paper_dataset, str) else list(paper_dataset or [])
    others = [d for d in datasets if papers and d not in papers]
    if others:
        reasons.append(
            f"the paper's numbers are for {', '.join(dataset_label(d, True) for d in papers)}, "
            f"these runs used {', '.join(dataset_label(d, None) for d in others)}"
        )
    unofficial: dict[str, MemberRun] = {}
    for m in members:
        if m.official is False:
            unofficial.setdefault(m.dataset, m)
    if unofficial:
        described = []
        for d in sorted(unofficial):
            m = unofficial[d]
            why = m.data.get("description")
            if why:
                described.append(f"{_DATASET_NAMES.get(d, d)}: {why}")
            else:
                described.append(
                    f"{member_data_label(m)}: its files' checksums are not the official release's"
                )
        reasons.append("made on non-official data (" + "; ".join(described) + ")")
    changed = reduced_precision(members)
    if changed:
        reasons.append(
            f"trained with execution.{'/'.join(changed)}, which changes the arithmetic "
            "(the paper's protocol is fp32)"
        )
    budgets = sorted({m.budget or "unknown" for m in members if m.budget != "paper"})
    if budgets:
        meaning = ", ".join(
            f"{b}: {BUDGET_MEANING[b]}" if b in BUDGET_MEANING else b for b in budgets
        )
        reasons.append(f"reduced budget ({meaning}), not the paper's")
    return "; ".join(reasons) or None

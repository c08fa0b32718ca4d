"""Analysis of trained runs: collect members, partition them into sweeps, paired statistics,
tables and figures."""

from elurepro.analysis.collect import MemberRun, collect_members, load_member
from elurepro.analysis.report import EXPERIMENTS, AnalysisResult, analyze, analyze_all
from elurepro.analysis.stats import (
    Comparison,
    SignedRank,
    compare,
    describe,
    pair_by_seed,
    signed_rank,
    wilcoxon_p,
)

__all__ = [
    "EXPERIMENTS",
    "AnalysisResult",
    "Comparison",
    "MemberRun",
    "SignedRank",
    "analyze",
    "analyze_all",
    "collect_members",
    "compare",
    "describe",
    "load_member",
    "pair_by_seed",
    "signed_rank",
    "wilcoxon_p",
]

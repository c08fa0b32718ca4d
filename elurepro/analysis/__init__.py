"""Analysis of trained runs: collect members, paired statistics, tables and figures."""

from elurepro.analysis.collect import Member, collect_members, load_member
from elurepro.analysis.report import EXPERIMENTS, AnalysisResult, analyze
from elurepro.analysis.stats import Comparison, compare, describe, pair_by_seed, wilcoxon_p

__all__ = [
    "EXPERIMENTS",
    "AnalysisResult",
    "Comparison",
    "Member",
    "analyze",
    "collect_members",
    "compare",
    "describe",
    "load_member",
    "pair_by_seed",
    "wilcoxon_p",
]

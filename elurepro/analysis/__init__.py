"""Analysis of trained runs: collect members, partition them into sweeps, paired statistics,
tables and figures."""

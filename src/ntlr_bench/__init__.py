"""ntlr-bench: the paper's experiments as declarative workloads, run against real baselines on real data."""

__version__ = "0.1.0"

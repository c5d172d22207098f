"""ntlr-bench: the paper's experiments as declarative workloads, run against real baselines on real data."""

from .outcome import Outcome, outcome

__all__ = ["Outcome", "outcome"]
__version__ = "0.1.0"

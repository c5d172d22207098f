"""The gauntlet's scoreboard: every TLR rule's cells beside every peer's best-tuned cell, per workload.

A *cell* is one setting of a method's knob (a TLR rule's initial rate α0 and inner optimizer; a peer's lr,
d0 or reps_rel), its value the final training loss averaged over seeds (the excess over the known optimum
for a regression workload). A rule is scored by its median and worst cell (untuned: every α0 and inner
optimizer counts), a peer by its best cell (tuned) and by its cell at its package's default setting
(untuned, ``experiments.PEER_DEFAULTS``), found by the knob's value. A run that diverged (final loss
non-finite or above the initial one) makes its cell infinite; stalls (above half the initial loss) are
counted.
"""

from __future__ import annotations

import math
import statistics
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from .experiments import GAUNTLET_INNER, GAUNTLET_PEERS, PEER_DEFAULTS, natural_knob
from .outcome import Outcome, final_train_loss, outcome

__all__ = ["CellKey", "MethodScore", "Scoreboard", "inner_label", "score", "tlr_method"]

TLR_OPTIMIZERS = frozenset(optimizer for optimizer, _ in GAUNTLET_INNER.values())
# The default target of issue 8: the median cell at or below the best peer's best, the worst within 1.25×.
WORST_RATIO = 1.25


@dataclass(frozen=True, order=True)
class CellKey:
    """A workload at a batch size: one column of the scoreboard."""

    workload: str
    batch_size: int

    def __str__(self) -> str:
        return f"{self.workload} bs{self.batch_size}"


@dataclass
class MethodScore:
    """One method on one workload: its cells' values by knob label, and how many of its runs failed.

    A peer's ``knobs`` gives each label's knob value (a label is text, ``lr=0.001``: a value is found by
    number, not by how it prints)."""

    method: str
    is_rule: bool
    # A peer's registry name (its defaults are looked up by it): a peer run with settings of its own is a
    # method of its own, ``mechanic (momentum=0.8, weight_decay=0.0005)``, with the base ``mechanic``.
    base: str = ""
    cells: dict[str, list[float]] = field(default_factory=dict)
    knobs: dict[str, float] = field(default_factory=dict)
    diverged: int = 0
    stalled: int = 0
    runs: int = 0

    def values(self) -> dict[str, float]:
        """Each cell's mean over seeds (infinite when a seed diverged)."""
        return {
            k: (math.inf if any(math.isinf(v) for v in vs) else statistics.fmean(vs))
            for k, vs in self.cells.items()
        }

    @property
    def median(self) -> float:
        return statistics.median(self.values().values())

    @property
    def worst(self) -> float:
        return max(self.values().values())

    @property
    def best(self) -> tuple[float, str]:
        value, knob = min((v, k) for k, v in self.values().items())
        return value, knob

    def at(self, knob_value: float) -> tuple[float, str] | None:
        """The cell whose knob is ``knob_value`` (relative tolerance 1e-9): its value and label; None if
        it was not run."""
        values = self.values()
        for label, value in self.knobs.items():
            if math.isclose(value, knob_value, rel_tol=1e-9):
                return values[label], label
        return None


@dataclass
class Scoreboard:
    """Per workload, per method (``TLR-<rule>`` aggregated over inner optimizers, ``TLR-<rule> <inner>``
    per inner optimizer, and each peer)."""

    scores: dict[CellKey, dict[str, MethodScore]]
    # What the rules' cells span, for the report to say what a median is over.
    alpha0: set[float] = field(default_factory=set)
    inner: set[str] = field(default_factory=set)

    @property
    def workloads(self) -> list[CellKey]:
        return sorted(self.scores)

    def rules(self) -> list[str]:
        return sorted({m for by in self.scores.values() for m, s in by.items() if s.is_rule and " " not in m})

    def peers(self) -> list[str]:
        return sorted({m for by in self.scores.values() for m, s in by.items() if not s.is_rule})

    def best_peer(self, key: CellKey) -> tuple[float, str] | None:
        bests = [(s.best[0], m) for m, s in self.scores[key].items() if not s.is_rule]
        return min(bests) if bests else None

    def at_default(self, key: CellKey, peer: str) -> tuple[float, str] | None:
        """``peer``'s cell at its package's default setting on ``key`` (None: not run, or no default)."""
        entry = self.scores[key].get(peer)
        if entry is None or entry.is_rule or (default := PEER_DEFAULTS.get(entry.base or peer)) is None:
            return None
        return entry.at(default)

    def best_default_peer(self, key: CellKey) -> tuple[float, str] | None:
        """The lowest peer cell at a package default on ``key``: (value, peer)."""
        cells = [(cell[0], m) for m in self.scores[key] if (cell := self.at_default(key, m)) is not None]
        return min(cells) if cells else None

    def meets_target(self, key: CellKey, rule: str) -> bool | None:
        """Whether ``rule`` meets the default's target on ``key`` (None: nothing to compare)."""
        score, peer = self.scores[key].get(rule), self.best_peer(key)
        if score is None or peer is None:
            return None
        return (
            score.diverged == 0
            and score.stalled == 0
            and score.median <= peer[0]
            and score.worst <= WORST_RATIO * peer[0]
        )


def final_value(record: Mapping[str, Any]) -> float:
    """The scored value of a run: ∞ when it diverged; the excess loss for a regression workload."""
    if outcome(record) is Outcome.DIVERGED:
        return math.inf
    final = record.get("final") or {}
    if "train_excess_loss" in final:
        return float(final["train_excess_loss"])
    return final_train_loss(record)


def tlr_method(config: Mapping[str, Any]) -> str:
    """A TLR run's method on the scoreboard: ``TLR-<rule>``, ``+anneal`` with TLR(total_steps=...) (the
    budget's decay, a method of its own), ``+<schedule>`` under a user's schedule (the bench's
    ``schedule`` override: another protocol, never pooled with the run without one)."""
    overrides = config.get("overrides", {})
    anneal = "+anneal" if overrides.get("anneal") else ""
    schedule = f"+{overrides['schedule']}" if overrides.get("schedule") else ""
    return f"TLR-{overrides.get('rule', 'default')}{anneal}{schedule}"


def inner_label(record: Mapping[str, Any]) -> str:
    """The gauntlet's label of a run's inner optimizer and settings (``SGD m0.8 wd``), of a TLR run or of a
    constant-rate run of the same optimizer; else its registry name."""
    optimizer = record["config"]["optimizer"]
    overrides = record["config"].get("overrides", {})
    for label, (name, fixed) in GAUNTLET_INNER.items():
        if name in (optimizer, f"tlr_{optimizer}") and all(overrides.get(k) == v for k, v in fixed.items()):
            return label
    return optimizer


def _knob(record: Mapping[str, Any]) -> tuple[str, float]:
    """A peer run's knob: its label and its value."""
    config = record["config"]
    knob = natural_knob(config["optimizer"])
    value = float(config["lr"] if knob == "lr" else config.get("overrides", {}).get(knob, math.nan))
    return f"{knob}={value:g}", value


def _peer_method(config: Mapping[str, Any]) -> str:
    """A peer run's method: its registry name, with the settings it ran at that differ from the gauntlet's
    fixed ones for it (its knob aside)."""
    peer = config["optimizer"]
    knob, _, fixed = GAUNTLET_PEERS[peer]
    own = {
        k: v
        for k, v in (config.get("overrides") or {}).items()
        if k != knob and (k not in fixed or fixed[k] != v)
    }
    if not own:
        return peer
    settings = (f"{k}={v:g}" if isinstance(v, float) else f"{k}={v}" for k, v in sorted(own.items()))
    return f"{peer} ({', '.join(settings)})"


def score(records: Iterable[Mapping[str, Any]]) -> Scoreboard:
    """The scoreboard of the gauntlet's ``records`` (other records are ignored)."""
    scores: dict[CellKey, dict[str, MethodScore]] = defaultdict(dict)
    alpha0: set[float] = set()
    inners: set[str] = set()
    for record in records:
        config = record["config"]
        key = CellKey(config["workload"], int(record["batch_size"]))
        value, result = final_value(record), outcome(record)
        knob_value: float | None = None
        if config["optimizer"] in TLR_OPTIMIZERS:
            rule = tlr_method(config)
            inner = inner_label(record)
            knob = f"{inner} α0={config['lr']:g}"
            methods = [(rule, True), (f"{rule} {inner}", True)]
            alpha0.add(float(config["lr"]))
            inners.add(inner)
        elif config["optimizer"] in GAUNTLET_PEERS:
            knob, knob_value = _knob(record)
            methods = [(_peer_method(config), False)]
        else:
            continue
        for method, is_rule in methods:
            base = "" if is_rule else str(config["optimizer"])
            entry = scores[key].setdefault(method, MethodScore(method, is_rule, base))
            entry.cells.setdefault(knob, []).append(value)
            if knob_value is not None:
                entry.knobs[knob] = knob_value
            entry.runs += 1
            entry.diverged += result is Outcome.DIVERGED
            entry.stalled += result is Outcome.STALLED
    return Scoreboard(dict(scores), alpha0, inners)

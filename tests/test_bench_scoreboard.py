"""The gauntlet's scoreboard on synthetic records: rules untuned, peers at their best and at their default."""

from __future__ import annotations

import math
from typing import Any

import pytest

from ntlr_bench.experiments import GAUNTLET_PEERS, PEER_DEFAULTS, get_experiment
from ntlr_bench.scoreboard import CellKey, score

WORKLOAD, BATCH = "digits_mlp", 64
KEY = CellKey(WORKLOAD, BATCH)


def _record(optimizer: str, final: float, *, lr: float = 1.0, seed: int = 0, **overrides: Any) -> dict:
    """The fields the scoreboard reads: a first step's loss of 2.3 and the final training loss."""
    config = {"workload": WORKLOAD, "optimizer": optimizer, "lr": lr, "seed": seed, "overrides": overrides}
    return {
        "config": config,
        "batch_size": BATCH,
        "diverged": False,
        "step_loss": [2.3],
        "final": {"train_loss": final},
    }


def test_a_peer_is_shown_at_its_best_and_at_its_default_cell():
    records = [
        _record("prodigy", 0.10, d0=1e-2),
        _record("prodigy", 0.50, d0=1e-6),  # Prodigy's default d0
        _record("prodigy", 0.30, d0=1e-8),
        _record("schedulefree_sgd", 0.20, lr=0.1),
        _record("schedulefree_sgd", 0.40, lr=1.0),  # its default rate
    ]
    board = score(records)
    assert board.scores[KEY]["prodigy"].best == (0.10, "d0=0.01")
    assert board.at_default(KEY, "prodigy") == (0.50, "d0=1e-06")
    assert board.at_default(KEY, "schedulefree_sgd") == (0.40, "lr=1")
    assert board.best_default_peer(KEY) == (0.40, "schedulefree_sgd")
    assert board.best_peer(KEY) == (0.10, "prodigy")


def test_the_report_shows_each_peer_at_its_default_below_its_best():
    from ntlr_bench.report.sections.gauntlet import _scoreboard_table

    records = [_record("prodigy", 0.10, d0=1e-2), _record("prodigy", 0.50, d0=1e-6), _record("mechanic", 0.2)]
    rows = {line.split(" | ")[0].strip("| "): line for line in _scoreboard_table(score(records))}
    assert rows["prodigy"].endswith("| 0.1 [d0=0.01] (0d) |")
    assert rows["prodigy at default"].endswith("| 0.5 [d0=1e-06] |")
    assert rows["mechanic at default"].endswith("| 0.2 [lr=1] |")
    assert rows["best peer at default"].endswith("| 0.2 (mechanic) |")


def test_the_default_cell_is_found_by_value_not_by_its_label():
    # 0.1 ** 6 is 1.0000000000000004e-06: the same setting as the default 1e-6, however it was computed.
    board = score([_record("dog", 0.2, reps_rel=0.1**6), _record("dog", 0.1, reps_rel=1e-4)])
    assert board.at_default(KEY, "dog") == (0.2, "reps_rel=1e-06")
    # A value that prints as the default's label but is another setting is not the default.
    board = score([_record("dog", 0.2, reps_rel=1.0000004e-6)])
    assert board.scores[KEY]["dog"].cells.keys() == {"reps_rel=1e-06"}
    assert board.at_default(KEY, "dog") is None


def test_the_default_cell_averages_its_seeds_and_a_diverged_seed_makes_it_infinite():
    seeds = [_record("mechanic", v, lr=1.0, seed=s) for s, v in enumerate((0.2, 0.4))]
    assert score(seeds).at_default(KEY, "mechanic") == (pytest.approx(0.3), "lr=1")
    blown = [*seeds, _record("mechanic", math.nan, lr=1.0, seed=2)]
    assert score(blown).at_default(KEY, "mechanic") == (math.inf, "lr=1")


def test_no_default_cell_where_none_was_run_or_for_a_rule():
    records = [
        _record("mechanic", 0.2, lr=0.1),
        _record("tlr_sgd", 0.1, lr=1.0, momentum=0.9, weight_decay=0.0, rule="robust"),
    ]
    board = score(records)
    assert board.at_default(KEY, "mechanic") is None
    assert board.at_default(KEY, "TLR-robust") is None
    assert board.at_default(KEY, "prodigy") is None  # not on this workload at all
    assert board.best_default_peer(KEY) is None


def test_every_gauntlet_grid_runs_each_peer_at_its_default():
    assert set(PEER_DEFAULTS) == set(GAUNTLET_PEERS)
    for budget in ("cpu", "paper"):
        configs = get_experiment("gauntlet").expand(budget)
        cells = {(c.workload, c.batch_size) for c in configs}
        for peer, (knob, _, _) in GAUNTLET_PEERS.items():
            for cell in cells:
                values = [
                    c.lr if knob == "lr" else c.overrides[knob]
                    for c in configs
                    if c.optimizer == peer and (c.workload, c.batch_size) == cell
                ]
                assert any(math.isclose(v, PEER_DEFAULTS[peer]) for v in values), (budget, peer, cell)


def test_a_peer_run_at_settings_of_its_own_is_a_method_of_its_own_with_the_same_default():
    records = [
        _record("mechanic", 0.001),  # the library's own setting: momentum 0.9, no weight decay
        _record("mechanic", 0.2, momentum=0.8, weight_decay=5e-4),  # the workload's inner optimizer's
        _record("prodigy", 0.3, d0=1e-6, weight_decay=5e-4),
    ]
    board = score(records)
    same_job = "mechanic (momentum=0.8, weight_decay=0.0005)"
    assert board.peers() == ["mechanic", same_job, "prodigy (weight_decay=0.0005)"]
    assert board.at_default(KEY, "mechanic") == (0.001, "lr=1")
    assert board.at_default(KEY, same_job) == (0.2, "lr=1")  # found by its base's default
    assert board.at_default(KEY, "prodigy (weight_decay=0.0005)") == (0.3, "d0=1e-06")


def test_the_report_says_what_the_rules_median_is_over():
    from ntlr_bench.report.sections.gauntlet import _intro

    records = [
        _record("tlr_sgd", 0.1, lr=lr, momentum=0.8, weight_decay=5e-4, rule="robust") for lr in (1.0, 1e-6)
    ]
    text = " ".join(_intro(score(records), 1.25))
    assert "α0 ∈ {1, 1e-06}" in text and "(SGD m0.8 wd;" in text
    assert "1e-4" not in text and "Adam" not in text


def test_the_long_tier_report_shows_each_cell_over_its_seeds():
    from ntlr_bench.report.sections.long_horizon import _seeds_table

    records = [
        _record("tlr_sgd", 0.10, lr=1e-3, seed=0, rule="robust", momentum=0.9, weight_decay=0.0),
        _record("tlr_sgd", 0.30, lr=1e-3, seed=1, rule="robust", momentum=0.9, weight_decay=0.0),
        _record("tlr_sgd", 0.20, lr=1.0, seed=0, rule="robust", momentum=0.9, weight_decay=0.0),  # one seed
        _record("mechanic", 0.4, seed=0),
        _record("mechanic", 0.6, seed=1),
        _record("mechanic", 0.9, seed=0, momentum=0.8, weight_decay=5e-4),
        _record("mechanic", 1.1, seed=1, momentum=0.8, weight_decay=5e-4),
    ]
    for record in records:
        record["lr"] = []
    lines = _seeds_table(records)
    rows = [line for line in lines if line.startswith(f"| {WORKLOAD}")]
    assert len(rows) == 3  # the α0 = 1 cell ran one seed
    cells = {tuple(c.strip() for c in row.strip("|").split("|")[1:4]): row for row in rows}
    assert "| 0.2 ± 0.1 | 0.1 – 0.3 | 0, 1 |" in cells["TLR-robust", "SGD m0.9", "0.001"]
    assert "| 0.5 ± 0.1 |" in cells["mechanic", "mechanic", "lr=1"]
    assert "| 1 ± 0.1 |" in cells["mechanic (momentum=0.8, weight_decay=0.0005)", "mechanic", "lr=1"]
    assert "1 other cell(s) ran one seed" in " ".join(lines)
    assert _seeds_table(records[2:4]) == []  # no cell with two seeds: no table


def test_the_long_tier_report_shows_each_cells_test_loss_beside_its_training_loss():
    from ntlr_bench.report.sections.long_horizon import _held_out_table

    records = [
        _record("schedulefree_sgd", 0.01, seed=0),
        _record("tlr_sgd", 0.10, lr=1e-3, seed=0, rule="robust", momentum=0.8, weight_decay=5e-4),
        _record("tlr_sgd", 0.20, lr=1e-3, seed=1, rule="robust", momentum=0.8, weight_decay=5e-4),
    ]
    for record, (test_loss, accuracy) in zip(records, [(0.56, 0.90), (0.29, 0.89), (0.31, 0.91)]):
        record["final"].update(test_loss=test_loss, test_accuracy=accuracy)
    lines = _held_out_table(records)
    rows = {r.strip("|").split("|")[1].strip(): r for r in lines if r.startswith("| ")}
    assert rows["schedulefree_sgd"].endswith("| 1 | 0.01 | 0.56 | 90 |")
    assert rows["TLR-robust"].endswith("| 2 | 0.15 | 0.3 | 90 |")  # means over the two seeds
    assert any("n = 1–2 seeds" in line for line in lines)


def test_a_run_under_a_schedule_is_a_method_of_its_own() -> None:
    """The default under a user's schedule is another protocol: never pooled with the default without one."""
    from ntlr_bench.scoreboard import tlr_method

    assert tlr_method({"overrides": {"rule": "robust"}}) == "TLR-robust"
    assert tlr_method({"overrides": {"rule": "robust", "schedule": "cosine"}}) == "TLR-robust+cosine"
    assert tlr_method({"overrides": {"rule": "robust", "anneal": True}}) == "TLR-robust+anneal"

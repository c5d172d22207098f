import itertools

import pytest

from ntlr_bench.budgets import BUDGETS
from ntlr_bench.experiments import EXPERIMENTS, GAUNTLET_LONG_WORKLOADS, get_experiment
from ntlr_bench.optimizers import OPTIMIZERS
from ntlr_bench.workloads import WORKLOADS


@pytest.mark.parametrize("name", sorted(EXPERIMENTS))
@pytest.mark.parametrize("budget", BUDGETS)
def test_every_run_names_a_registered_workload_and_optimizer(name, budget):
    configs = EXPERIMENTS[name].expand(budget)
    assert configs, name
    assert len({c.run_id for c in configs}) == len(configs)
    for c in configs:
        # The gauntlet's tiers and the schedules experiment (on its quick tier) run every workload at its
        # cpu budget (their smoke tiers at smoke); Table 1's CPU stand-in runs Fashion-MNIST at the paper's
        # 20 epochs.
        quick = name in ("gauntlet", "schedules")
        workload_budget = ("smoke" if budget == "smoke" else "cpu") if quick else budget
        if (name, budget) == ("hypergrad_table", "cpu"):
            workload_budget = "paper"
        if name == "gauntlet_long" and budget != "smoke":
            # Whole runs: the MLPs at the paper's 20 epochs, the character model at its 3000-step budget.
            workload_budget = {w: b for w, _, b in GAUNTLET_LONG_WORKLOADS}[c.workload]
        if name == "gauntlet_beyond" and budget != "smoke":
            # Past the paper's budget: the MLPs at the long budget, the character model at its paper one.
            workload_budget = "paper" if c.workload == "char_transformer" else "long"
        assert c.workload in WORKLOADS and c.optimizer in OPTIMIZERS and c.budget == workload_budget
        assert set(c.overrides) <= set(OPTIMIZERS[c.optimizer].hyperparameters) | {"p", "gamma"}


@pytest.mark.parametrize("name", sorted(EXPERIMENTS))
def test_only_the_window_family_gets_tlr_settings(name):
    for c in EXPERIMENTS[name].expand("cpu"):
        if not c.optimizer.startswith(("tlr_", "hypergrad_")):
            assert "p" not in c.overrides and "gamma" not in c.overrides, c
        elif c.optimizer.startswith("tlr_") and name not in (
            "demo",
            "gauntlet",
            "gauntlet_long",
            "gauntlet_beyond",
            "schedules",
        ):
            # The paper's experiments pin its rule, p and γ; the demo and the gauntlet measure what users
            # get, each rule with its own defaults, and so does the default rule's row of the robustness
            # experiments (its rule named, so that a record says what it ran if the default changes).
            if c.overrides.get("rule") == "robust" and name in ("lr0_robustness", "batch_robustness"):
                assert "p" not in c.overrides and "gamma" not in c.overrides, c
                continue
            assert {"p", "gamma"} <= set(c.overrides) and c.overrides["rule"] == "paper", c


def test_hparam_grid_paper_is_the_papers_grid():
    configs = get_experiment("hparam_grid").expand("paper")
    tlr = [c for c in configs if c.optimizer == "tlr_sgd"]
    lrs = {c.lr for c in tlr}
    assert lrs == {1e-1, 1e-2, 1e-3, 1e-4, 1e-5}
    assert {c.batch_size for c in tlr} == {64, 128, 256, 512}
    cells = {(c.overrides["p"], c.overrides["gamma"]) for c in tlr}
    assert len(tlr) == len(cells) * 5 * 4
    # The paper's text defaults and the authors' code defaults are both in the grid.
    assert (0.2, 0.33) in cells and (1 / 3, 0.2) in cells
    sgd = [c for c in configs if c.optimizer == "sgd"]
    assert sorted((c.lr, c.batch_size) for c in sgd) == sorted(itertools.product(lrs, (64, 128, 256, 512)))


def test_lr0_robustness_covers_nine_decades_for_all_three_rows():
    configs = get_experiment("lr0_robustness").expand("paper")
    rows = ("sgd", None), ("tlr_sgd", "paper"), ("tlr_sgd", "robust")  # SGD, the paper's rule, the default
    assert sorted((c.optimizer, c.overrides.get("rule"), round(c.lr, 20)) for c in configs) == sorted(
        (o, rule, round(10.0**-i, 20)) for o, rule in rows for i in range(1, 10)
    )


def test_hypergrad_table_columns():
    configs = get_experiment("hypergrad_table").expand("paper")
    add = {c.overrides["eta"] for c in configs if c.optimizer == "hypergrad_add"}
    mult = {c.overrides["eta"] for c in configs if c.optimizer == "hypergrad_mult"}
    assert add == {1e-1, 1e-2} and mult == {1e-4, 1e-5}
    assert {c.workload for c in configs} == {"cifar100_wrn16_4"}
    # The additive rule reads g as the window's per-step mean (see optimizers/hypergrad_window.py).
    for budget in ("paper", "cpu"):
        adds = [c for c in get_experiment("hypergrad_table").expand(budget) if c.optimizer == "hypergrad_add"]
        assert adds and all(c.overrides["g"] == "mean" for c in adds)
    # The CPU stand-in: Fashion-MNIST + MLP at the paper's 20 epochs and its batch sizes.
    cpu = get_experiment("hypergrad_table").expand("cpu")
    assert {c.workload for c in cpu} == {"fashion_mnist_mlp"} and {c.budget for c in cpu} == {"paper"}
    assert {c.batch_size for c in cpu} == {64, 128, 256, 512} and {c.lr for c in cpu} == {1e-1, 1e-2, 1e-3}
    assert len(cpu) == 4 * 3 * 5


def test_hparam_summary_is_the_grids_batch_128_rows_at_the_papers_p_and_gamma():
    configs = get_experiment("hparam_summary").expand("paper")
    assert {c.batch_size for c in configs} == {128} and {c.budget for c in configs} == {"paper"}
    assert {c.lr for c in configs} == {10.0**-i for i in range(1, 6)}
    tlr = [c for c in configs if c.optimizer == "tlr_sgd"]
    assert tlr and all((c.overrides["p"], c.overrides["gamma"]) == (0.2, 0.33) for c in tlr)
    # Same runs as lr0_robustness's at those rates: a sweep of one finds the other's records.
    lr0 = {c.run_id for c in get_experiment("lr0_robustness").expand("paper")}
    assert {c.run_id for c in configs} <= lr0


def test_seeds_multiply_the_grid():
    exp = get_experiment("lr0_robustness")
    assert len(exp.expand("paper", seeds=3)) == 3 * len(exp.expand("paper"))
    with pytest.raises(ValueError, match="seeds"):
        exp.expand("paper", seeds=0)


def test_unknown_names_are_clear_errors():
    with pytest.raises(ValueError, match="experiment"):
        get_experiment("nope")
    with pytest.raises(ValueError, match="budget"):
        get_experiment("demo").expand("huge")


def test_gauntlet_puts_every_rule_beside_every_peer_on_every_workload():
    from ntlr import RULES
    from ntlr_bench.experiments import GAUNTLET_ALPHA0, GAUNTLET_INNER, GAUNTLET_PEERS, GAUNTLET_QUICK

    configs = get_experiment("gauntlet").expand("cpu")
    for workload, bs in GAUNTLET_QUICK:
        cell = [c for c in configs if (c.workload, c.batch_size) == (workload, bs)]
        for rule in sorted(RULES):  # every rule the library has, not a list written out here
            for optimizer, fixed in GAUNTLET_INNER.values():
                for anneal in (False, True) if rule == "robust" else (False,):
                    runs = [
                        c
                        for c in cell
                        if c.optimizer == optimizer
                        and c.overrides.get("rule") == rule
                        and bool(c.overrides.get("anneal")) == anneal
                        and all(c.overrides.get(k) == v for k, v in fixed.items())
                    ]
                    # the default also with the run's budget known (TLR(total_steps=...))
                    assert sorted(c.lr for c in runs) == sorted(GAUNTLET_ALPHA0), (rule, anneal)
        for peer, (knob, values, _) in GAUNTLET_PEERS.items():
            runs = [c for c in cell if c.optimizer == peer]
            got = sorted(c.lr if knob == "lr" else c.overrides[knob] for c in runs)
            assert got == sorted(values), peer


def test_optimizer_comparison_sweeps_each_methods_natural_knob():
    configs = [c for c in get_experiment("optimizer_comparison").expand("cpu") if c.workload == "mnist_mlp"]

    def cells(name):
        return sorted(
            (c.lr, c.overrides.get("d0"), c.overrides.get("reps_rel")) for c in configs if c.optimizer == name
        )

    # TLR's α0 span: 0.1, 0.01, 0.001; every peer over the same span of its own knob.
    assert cells("tlr_sgd") == [(1e-3, None, None), (1e-2, None, None), (1e-1, None, None)]
    assert cells("adam") == [(1e-5, None, None), (1e-4, None, None), (1e-3, None, None)]
    for name in ("dadapt_sgd", "prodigy"):
        assert cells(name) == [(1.0, 1e-8, None), (1.0, 1e-7, None), (1.0, 1e-6, None)]
    assert cells("dog") == [(1.0, None, 1e-8), (1.0, None, 1e-7), (1.0, None, 1e-6)]


def test_the_long_budget_is_three_times_the_papers_epochs_where_a_workload_names_none():
    mnist = WORKLOADS["mnist_mlp"]
    assert mnist.budget("long").epochs == 3 * mnist.budget("paper").epochs
    assert mnist.budget("long").train_limit == mnist.budget("paper").train_limit
    with pytest.raises(ValueError, match=r"budget must be one of .*long"):
        mnist.budget("longer")

"""Reports: what the tables print and how the figures look, on records derived from one real run."""

import copy
import itertools

import pytest

from ntlr_bench import report
from ntlr_bench.experiments import _DEFAULT_LR, EXPERIMENTS, comparison_knob, get_experiment
from ntlr_bench.records import RunConfig
from ntlr_bench.report import figures, stats
from ntlr_bench.runner import run


@pytest.fixture(scope="module")
def real_record():
    return run(RunConfig("digits_mlp", "sgd", 0.1, budget="smoke"), progress=False)


def _variant(real, *, optimizer, lr, batch_size=128, seed=0, overrides=None, scale=1.0):
    record = copy.deepcopy(real)
    config = {**record["config"], "optimizer": optimizer, "lr": lr, "batch_size": batch_size, "seed": seed}
    config["overrides"] = overrides or {}
    record["config"], record["batch_size"] = config, batch_size
    record["run_id"] = RunConfig.from_dict(config).run_id
    record["step_loss"] = [v * scale for v in record["step_loss"]]
    record["lr"] = [[lr * (1 + i / 10)] for i in range(len(record["lr"]))]
    for e in record["evals"]:
        e["train_loss"] = e["train_loss"] * scale
    record["final"] = dict(record["evals"][-1])
    return record


def _grid(real):
    """Records covering every report section's grid: two methods, three rates, two batch sizes, two TLR
    settings, and every method of the optimizer comparison at three multiples of its usual rate."""
    records = []
    for i, (optimizer, lr, bs, (p, g)) in enumerate(
        itertools.product(("sgd", "tlr_sgd"), (1e-1, 1e-2, 1e-3), (64, 128), ((0.2, 0.33), (1 / 3, 0.2)))
    ):
        overrides = {"p": p, "gamma": g} if optimizer == "tlr_sgd" else {}
        if optimizer == "sgd" and (p, g) != (0.2, 0.33):
            continue
        records.append(
            _variant(
                real, optimizer=optimizer, lr=lr, batch_size=bs, overrides=overrides, scale=0.3 + 0.05 * i
            )
        )
    for i, (name, scale) in enumerate(itertools.product(_DEFAULT_LR, (0.01, 0.1, 1.0))):
        if name != "tlr_sgd":
            knob, usual = comparison_knob(name)
            if knob == "lr":
                records.append(_variant(real, optimizer=name, lr=usual * scale, scale=0.2 + 0.01 * i))
            else:  # the learning-rate-free peers over their d0 / reps_rel, at lr 1
                records.append(
                    _variant(
                        real,
                        optimizer=name,
                        lr=_DEFAULT_LR[name],
                        overrides={knob: usual * scale},
                        scale=0.2 + 0.01 * i,
                    )
                )
    return records


def test_a_cell_from_one_run_shows_no_spread():
    assert report.fmt_ms(report.mean_std([0.4381])) == "0.438 (n = 1)"
    assert report.fmt_ms(report.mean_std([1.0, 3.0])) == "2.000 ± 1.000"
    assert report.fmt_ms(report.mean_std([0.5, float("nan")])) == "0.500 (n = 1) (1 diverged)"


def test_a_spread_below_the_printed_precision_gets_the_digits_it_needs():
    assert report.fmt_ms(report.mean_std([0.0093, 0.0089, 0.0097])) == "0.0093 ± 0.0003"
    assert report.fmt_ms(report.mean_std([98.43, 98.47]), 1) == "98.45 ± 0.02"
    assert report.fmt_ms(report.mean_std([0.2, 0.2])) == "0.200 ± 0"


def test_n_says_how_many_each_spread_is_over():
    assert stats.n_phrase([[1, 2, 3], [4, 5, 6]], "seed") == "n = 3 seeds"
    assert stats.n_phrase([[1], [4, 5]], "seed") == "n = 1–2 seeds"
    assert stats.n_phrase([[1]], "run") == "n = 1 run"


def _tables(text):
    """Each Markdown table of ``text`` with the line of prose or heading above it."""
    lines, found = text.splitlines(), []
    for i, line in enumerate(lines):
        if line.startswith("|") and not (i and lines[i - 1].startswith("|")):
            end = next((j for j in range(i, len(lines)) if not lines[j].startswith("|")), len(lines))
            above = next((lines[j] for j in range(i - 1, -1, -1) if lines[j].strip()), "")
            found.append((above, lines[i:end]))
    return found


def _seeded_grid(real):
    """The grid of every section, at two seeds that end apart."""
    grid = _grid(real)
    second = []
    for r in grid:
        config = r["config"]
        twin = _variant(
            r,
            optimizer=config["optimizer"],
            lr=config["lr"],
            batch_size=r["batch_size"],
            seed=1,
            overrides=config["overrides"],
            scale=1.1,
        )
        second.append(twin)
    return grid + second


@pytest.mark.parametrize("experiment", sorted(EXPERIMENTS))
def test_every_table_with_a_spread_states_over_how_many(experiment, real_record, tmp_path):
    text = report.write_report(get_experiment(experiment), _seeded_grid(real_record), tmp_path).read_text()
    for above, table in _tables(text):
        if any("±" in row for row in table[2:]):
            assert "n = " in above or "n = " in table[0], f"{experiment}: no n for the table under {above!r}"


def test_a_report_over_single_runs_prints_no_zero_spread(real_record, tmp_path):
    records = [
        _variant(real_record, optimizer=o, lr=lr, scale=scale)
        for o, (lr, scale) in itertools.product(("sgd", "tlr_sgd"), ((0.1, 0.3), (0.01, 0.5)))
    ]
    text = report.write_report(get_experiment("demo"), records, tmp_path).read_text()
    assert "± 0.000" not in text and "± 0.0 " not in text and "(n = 1)" in text


@pytest.mark.parametrize("experiment", sorted(EXPERIMENTS))
def test_legends_sit_outside_the_axes_at_the_axes_text_size(experiment, real_record, tmp_path, monkeypatch):
    checked = []
    real_save = figures.save

    def inspect(fig, out_dir, name):
        fig.canvas.draw()
        renderer = fig.canvas.get_renderer()
        legends = [*fig.legends, *(ax.get_legend() for ax in fig.axes if ax.get_legend())]
        if not any(ax.get_legend_handles_labels()[1] for ax in fig.axes):
            return real_save(fig, out_dir, name)  # nothing labelled (the gauntlet's scoreboard): no legend
        assert legends, f"{name}: no legend"
        for legend in legends:
            box = legend.get_window_extent(renderer)
            assert fig.bbox.x0 <= box.x0 and box.x1 <= fig.bbox.x1, f"{name}: legend cut off at the sides"
            assert fig.bbox.y0 <= box.y0 and box.y1 <= fig.bbox.y1, f"{name}: legend cut off"
            for ax in fig.axes:
                assert not box.overlaps(ax.get_window_extent(renderer)), f"{name}: legend covers the axes"
                for text in (ax.xaxis.label, ax.yaxis.label, ax.title):
                    if text.get_text():
                        assert not box.overlaps(text.get_window_extent(renderer)), f"{name}: covers a label"
                axis_text = ax.xaxis.label.get_fontsize()
                assert all(t.get_fontsize() >= axis_text for t in legend.get_texts()), f"{name}: small text"
        checked.append(name)
        return real_save(fig, out_dir, name)

    monkeypatch.setattr(figures, "save", inspect)
    report.write_report(get_experiment(experiment), _grid(real_record), tmp_path)
    drawn = sorted(p.name for p in tmp_path.glob("*.png"))
    assert sorted(checked) == [n for n in drawn if n != "gauntlet_scoreboard.png"]


def test_hypergrad_table_says_how_the_additive_rule_reads_g(real_record, tmp_path):
    records = [
        _variant(real_record, optimizer="hypergrad_add", lr=0.1, overrides={"eta": eta, "g": "mean"})
        for eta in (1e-1, 1e-2)
    ]
    text = report.write_report(get_experiment("hypergrad_table"), records, tmp_path).read_text()
    assert "The additive rule's g: mean" in text
    # A record from before the option ran the window's sum.
    old = [_variant(real_record, optimizer="hypergrad_add", lr=0.1, overrides={"eta": 1e-1})]
    text = report.write_report(get_experiment("hypergrad_table"), old, tmp_path).read_text()
    assert "The additive rule's g: sum" in text


def test_optimizer_comparison_reads_each_methods_knob(real_record, tmp_path):
    names = ("adam", "dadapt_sgd", "prodigy", "dog")
    records = [r for r in _grid(real_record) if r["config"]["optimizer"] in names]
    text = report.write_report(get_experiment("optimizer_comparison"), records, tmp_path).read_text()
    lines = text.splitlines()
    header = next(line for line in lines if line.startswith("| optimizer | knob |"))
    first = lines[: lines.index(header)]
    main = {line.split(" | ")[0].strip("| "): line.split(" | ") for line in first if line.startswith("| ")}
    assert main["adam"][1] == "lr=0.001"
    assert main["dadapt_sgd"][1] == "d0=1e-06" and main["prodigy"][1] == "d0=1e-06"
    assert main["dog"][1] == "reps_rel=1e-06"
    # The sensitivity table: one column per value of the knob over its usual value, each from its own run.
    assert header == "| optimizer | knob | ×1 | ×0.1 | ×0.01 |"
    rows = [line for line in lines[lines.index(header) + 2 :] if line.startswith("| ")]
    by_name = {row.split(" | ")[0].strip("| "): row.split(" | ") for row in rows}
    assert by_name["dadapt_sgd"][1] == "d0" and by_name["dog"][1] == "reps_rel" and by_name["adam"][1] == "lr"
    for name in ("adam", "dadapt_sgd", "dog"):
        expected = {
            f"{r['final']['train_loss']:.3f} (n = 1)" for r in records if r["config"]["optimizer"] == name
        }
        assert {cell.strip("| ") for cell in by_name[name][2:]} == expected


def test_hparam_summary_averages_seeds_before_the_spread_over_rates(real_record, tmp_path):
    # Two seeds per rate; the paper's "± across the learning rates" is over the per-rate means.
    finals = {(0.1, 0): 0.2, (0.1, 1): 0.4, (0.01, 0): 0.6, (0.01, 1): 0.8}
    records = []
    for (lr, seed), value in finals.items():
        for name in ("sgd", "tlr_sgd"):
            r = _variant(real_record, optimizer=name, lr=lr, seed=seed)
            r["final"]["train_loss"] = value if name == "sgd" else value / 4
            records.append(r)
    text = report.write_report(get_experiment("hparam_summary"), records, tmp_path).read_text()
    sgd_row = next(line for line in text.splitlines() if line.startswith("| SGD |"))
    # Per-rate means 0.3 and 0.7 → 0.500 ± 0.200; the largest seed std is 0.1; the paper beside.
    assert sgd_row == "| SGD | 0.500 ± 0.200 | 0.1 | 0.661 ± 0.774 |"
    assert "- SGD: mean 0.500 against 0.661: within the paper's ± 0.774" in text
    assert "- TLR-SGD: mean 0.125 against 0.095: within the paper's ± 0.054" in text
    assert "4.0× here, 7.0× in the paper" in text


def test_batch_robustness_counts_the_cells_tlr_wins(real_record, tmp_path):
    records = []
    for bs, lr, seed in itertools.product((64, 512), (0.1, 0.001), (0, 1)):
        for name in ("sgd", "tlr_sgd"):
            r = _variant(real_record, optimizer=name, lr=lr, batch_size=bs, seed=seed)
            # TLR wins everywhere but at batch 512 from α0 = 0.1, where one seed ends above the initial
            # loss (diverged): no win.
            sgd = 0.1 * (1 + seed) * (bs / 64)
            tlr = sgd / 2 if (bs, lr) != (512, 0.1) else sgd * 2
            r["final"]["train_loss"] = sgd if name == "sgd" else tlr
            records.append(r)
    text = report.write_report(get_experiment("batch_robustness"), records, tmp_path).read_text()
    assert "TLR-SGD ends lower than SGD in 3 of 4 (batch, α0) cells" in text
    assert "| 64 | 1e-1 | 0.150 ± 0.050 | 0.075 ± 0.025 |" in text
    assert "| 512 | 1e-1 | 1.200 ± 0.400 | 1.600 (n = 1) (1 diverged) |" in text


_PAPER_RULE = {"p": 0.2, "gamma": 0.33, "rule": "paper"}
_DEFAULT_RULE = {"rule": "robust"}


def _three_rows(real, cells, finals):
    """SGD and the paper's rule at seeds 0-2, the default rule at seed 0 only (as the robustness grids ran
    them), in each (batch, α0) of ``cells``; ``finals(row, batch, lr, seed)`` is the final training loss."""
    rows = (("sgd", None, (0, 1, 2)), ("paper", _PAPER_RULE, (0, 1, 2)), ("default", _DEFAULT_RULE, (0,)))
    records = []
    for (bs, lr), (row, overrides, seeds) in itertools.product(cells, rows):
        for seed in seeds:
            optimizer = "sgd" if row == "sgd" else "tlr_sgd"
            r = _variant(real, optimizer=optimizer, lr=lr, batch_size=bs, seed=seed, overrides=overrides)
            r["final"]["train_loss"] = finals(row, bs, lr, seed)
            r["final"]["test_accuracy"] = 0.9
            records.append(r)
    return records


def test_lr0_robustness_tells_the_three_rows_apart_by_rule(real_record, tmp_path):
    def finals(row, bs, lr, seed):
        # The default rule ends below the paper's rule's mean (0.011) from both rates; from α0 = 1e-1 above
        # its seed 0 (0.010).
        paper = 0.010 + 0.001 * seed
        return {"sgd": 0.5 + 0.1 * seed, "paper": paper, "default": 0.0105 if lr == 0.1 else 0.008}[row]

    records = _three_rows(real_record, [(128, 0.1), (128, 0.01)], finals)
    text = report.write_report(get_experiment("lr0_robustness"), records, tmp_path).read_text()
    lines = text.splitlines()
    assert (
        "### Final training loss and test accuracy per initial rate, mean ± std over n = 3 seeds for SGD "
        "and TLR-SGD (paper's rule), n = 1 seed for TLR-SGD (default rule)"
    ) in lines
    assert (
        "| α0 | SGD train loss | SGD test acc % | TLR-SGD (paper's rule) train loss | TLR-SGD (paper's rule) "
        "test acc % | TLR-SGD (default rule) train loss | TLR-SGD (default rule) test acc % |"
    ) in lines
    # One seed: no spread, and its loss with as many significant digits as a spread's mean shows.
    tlr = "0.600 ± 0.082 | 90.0 ± 0 | 0.011 ± 0.001 | 90.0 ± 0"
    assert f"| 1e-1 | {tlr} | 0.0105 (n = 1) | 90.0 (n = 1) |" in lines
    assert f"| 1e-2 | {tlr} | 0.00800 (n = 1) | 90.0 (n = 1) |" in lines
    assert (
        "- The default rule ends at or below the paper's rule in all 2 α0 cells (the mean of its n = 1 "
        "seed against the mean of the paper's rule's n = 3 seeds); the worst ratio, default over paper's "
        "rule, is 0.955× at α0 = 1e-1."
    ) in lines
    # Seed for seed, the paper's rule's seed 0 ends at 0.010: below the default's 0.0105 at α0 = 1e-1.
    seed_for_seed = "- Seed for seed (against the paper's rule's runs of the same seeds only): at or below in"
    assert f"{seed_for_seed} 1 of 2." in lines
    assert not any(line.startswith("- Above the paper's rule") for line in lines)
    # Beside the paper's numbers at α0 = 0.1: SGD and the paper's rule, which the paper ran.
    assert "| SGD | 0.600 ± 0.082 | 90.0 ± 0 | 0.326 | 92.3 |" in lines
    assert "| TLR-SGD (paper's rule) | 0.011 ± 0.001 | 90.0 ± 0 | 0.095 | 96.0 |" in lines
    assert "solid, TLR-SGD (default rule) dashed" in text

    # Records of the paper's rule and SGD alone (before the third row): two rows, no comparison line.
    two = [r for r in records if r["config"]["overrides"].get("rule") != "robust"]
    text = report.write_report(get_experiment("lr0_robustness"), two, tmp_path).read_text()
    assert "mean ± std over n = 3 seeds\n" in text and "default rule" not in text
    header = "| α0 | SGD train loss | SGD test acc % | TLR-SGD (paper's rule) train loss |"
    assert f"{header} TLR-SGD (paper's rule) test acc % |\n" in text


def test_batch_robustness_counts_the_cells_where_the_default_rule_ends_at_or_below_the_papers(
    real_record, tmp_path
):
    cells = list(itertools.product((64, 512), (0.1, 0.001)))

    def finals(row, bs, lr, seed):
        # The default rule above the paper's rule at batch 64 from α0 = 0.1 only (by 1.2×).
        default = 0.048 if (bs, lr) == (64, 0.1) else 0.03
        return {"sgd": 0.2 + 0.01 * seed, "paper": 0.02 * (1 + seed), "default": default}[row]

    records = _three_rows(real_record, cells, finals)
    text = report.write_report(get_experiment("batch_robustness"), records, tmp_path).read_text()
    lines = text.splitlines()
    assert (
        "### Final training loss per batch size and initial rate, mean ± std over n = 3 seeds for SGD and "
        "TLR-SGD (paper's rule), n = 1 seed for TLR-SGD (default rule)"
    ) in lines
    assert "| batch | α0 | SGD | TLR-SGD (paper's rule) | TLR-SGD (default rule) |" in lines
    assert "| 64 | 1e-1 | 0.210 ± 0.008 | 0.040 ± 0.016 | 0.0480 (n = 1) |" in lines
    assert "| 512 | 1e-3 | 0.210 ± 0.008 | 0.040 ± 0.016 | 0.0300 (n = 1) |" in lines
    assert "| batch | SGD | TLR-SGD (paper's rule) | TLR-SGD (default rule) |" in lines
    for rule in ("paper's", "default"):
        wins = f"- TLR-SGD ({rule} rule) ends lower than SGD in 4 of 4 (batch, α0) cells (means over seeds)"
        assert wins in lines
    assert (
        "- The default rule ends at or below the paper's rule in 3 of 4 (batch, α0) cells (the mean of its "
        "n = 1 seed against the mean of the paper's rule's n = 3 seeds); the worst ratio, default over "
        "paper's rule, is 1.200× at batch 64, α0 = 1e-1."
    ) in lines
    assert (
        "- Above the paper's rule at: batch 64, α0 = 1e-1 (0.0480 (n = 1) against 0.040 ± 0.016, 1.200×)."
    ) in lines
    # Seed 0 of the paper's rule ends at 0.02, below the default everywhere.
    seed_for_seed = "- Seed for seed (against the paper's rule's runs of the same seeds only): at or below in"
    assert f"{seed_for_seed} 0 of 4." in lines
    assert "each point the mean over n = 3 seeds for SGD and TLR-SGD (paper's rule), n = 1 seed" in text


def test_a_number_beside_the_papers_says_on_which_side_it_falls():
    assert stats.against(0.013, (0.095, 0.054)).endswith("below the paper's mean by more than its ± 0.054")
    assert stats.against(0.9, (0.095, 0.054)).endswith("above the paper's mean by more than its ± 0.054")
    assert stats.against(0.1, (0.095, 0.054)).endswith("within the paper's ± 0.054")


def test_the_cpu_budget_difference_is_printed_only_for_cpu_runs(real_record, tmp_path):
    exp = get_experiment("batch_robustness")
    (cpu_line,) = exp.cpu_differences
    records = [_variant(real_record, optimizer=o, lr=0.1) for o in ("sgd", "tlr_sgd")]
    for budget, printed in (("paper", False), ("cpu", True)):
        for r in records:
            r["config"]["budget"] = budget
        text = report.write_report(exp, records, tmp_path).read_text()
        assert (cpu_line in text) is printed
        assert exp.differences[0] in text


def test_the_provenance_names_the_processor_and_uncommitted_code():
    from ntlr_bench.report.provenance import _processor

    assert _processor({"cpu": "Intel(R) Xeon(R) Processor", "cpu_capability": "AVX512"}) == (
        " (Intel(R) Xeon(R) Processor, AVX512)"
    )
    assert _processor({"torch": "2.13.0"}) == ""  # a record from before the field


def test_a_complete_one_seed_grid_with_more_seeds_in_some_cells_is_not_called_partial(real_record, tmp_path):
    from ntlr_bench.experiments import Experiment, Grid
    from ntlr_bench.report.sections.generic import final_numbers

    tiny = Experiment(
        name="two_cells",
        description="two cells",
        paper="a test",
        grids={"smoke": (Grid(("digits_mlp",), ("sgd",), (1e-1, 1e-2), budget="smoke"),), "paper": ()},
        report=final_numbers,
    )
    configs = tiny.expand("smoke", seeds=3)
    seed0 = [c for c in configs if c.seed == 0]
    more = [c for c in configs if c.lr == 1e-1 and c.seed > 0]
    records = [
        _variant(real_record, optimizer="sgd", lr=c.lr, batch_size=c.batch_size, seed=c.seed)
        for c in seed0 + more
    ]
    text = report.write_report(tiny, records, tmp_path).read_text()
    assert "partial" not in text
    assert "every run of the grid at seed 0 (2); 1 of its cells also at seeds 1–2 (4 runs" in text
    lone = report.write_report(tiny, records[1:], tmp_path / "lone").read_text()  # a seed-0 run missing
    assert "**partial**: 3 of the grid's 6 runs had finished" in lone


# -- a new user's audit: a report over records of several budgets, or of one run twice ----------------------
def _at_budget(record, budget):
    record = copy.deepcopy(record)
    record["config"]["budget"] = budget
    record["run_id"] = RunConfig.from_dict(record["config"]).run_id
    return record


def _write(records, folder):
    from ntlr_bench.records import write_record

    for r in records:
        write_record(r, folder / f"{r['run_id']}.json")
    return str(folder)


def _single_runs(real):
    """The audit's: TLR-SGD and SGD at smoke, then TLR-SGD again at cpu, all seed 0 (not in demo's grid)."""
    tlr, sgd = (_variant(real, optimizer=o, lr=1e-2) for o in ("tlr_sgd", "sgd"))
    return [tlr, sgd, _at_budget(tlr, "cpu")]


def test_a_report_over_two_budgets_reports_the_one_asked_for_and_says_what_it_left(
    real_record, tmp_path, capsys
):
    """Before: 'of the `--budget cpu` grid; workloads at budget cpu, smoke', a smoke and a cpu run n = 2."""
    from ntlr_bench.cli import main

    folder = _write(_single_runs(real_record), tmp_path / "single")
    out = tmp_path / "report"
    assert main(["report", "demo", "--records", folder, "--budget", "cpu", "--report-dir", str(out)]) == 0
    err = capsys.readouterr().err
    assert (
        "left out 2 of 3 records: they ran at budget smoke" in err and "--budget smoke reports those" in err
    )
    text = (out / "README.md").read_text()
    assert "runs: 1 " in text and "workloads at budget cpu:" in text and "n = 2" not in text


def test_a_report_over_two_budgets_without_budget_asks_for_one(real_record, tmp_path, capsys):
    from ntlr_bench.cli import main

    folder = _write(_single_runs(real_record), tmp_path / "single")
    assert main(["report", "demo", "--records", folder, "--report-dir", str(tmp_path / "report")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("ntlr-bench: error: --budget: the records ran at budgets smoke, cpu")
    assert "pass --budget smoke or --budget cpu" in err and err.count("\n") == 1


def test_a_run_present_twice_counts_as_one_seed_and_is_said(real_record, tmp_path, capsys):
    """Two folders holding one run, and the same config under another id (a record of another version):
    one record each, not n = 2 seeds."""
    from ntlr_bench.cli import main

    runs = [_variant(real_record, optimizer=o, lr=1e-2) for o in ("tlr_sgd", "sgd")]
    renamed = {**copy.deepcopy(runs[0]), "run_id": "digits_mlp-tlr_sgd-an-older-id"}
    first = _write(runs, tmp_path / "a")
    second = _write([*runs, renamed], tmp_path / "b")
    out = tmp_path / "report"
    assert main(["report", "demo", "--records", first, "--records", second, "--report-dir", str(out)]) == 0
    err = capsys.readouterr().err
    assert "left out 3 duplicate record(s)" in err and "the first found of each is kept" in err
    text = (out / "README.md").read_text()
    assert "runs: 2 " in text and "n = 2" not in text


def test_a_grid_whose_blocks_pin_another_budget_keeps_its_records():
    """gauntlet_long's cpu grid runs some workloads at the paper budget: no record of it is left out."""
    from ntlr_bench.report.command import of_grid

    exp = get_experiment("gauntlet_long")
    records = [{"config": c.to_dict(), "run_id": c.run_id} for c in exp.expand("cpu")]
    assert {r["config"]["budget"] for r in records} == {"cpu", "paper"}
    kept, left = of_grid(exp, records, "cpu")
    assert len(kept) == len(records) and not left
    smoke = [{"config": c.to_dict(), "run_id": c.run_id} for c in exp.expand("smoke")]
    kept, left = of_grid(exp, records + smoke, "smoke")
    assert kept == smoke and len(left) == len(records)

"""`ntlr-bench rerun`: a record's own config run again, and an honest verdict on how far it reproduces."""

import copy
import shutil
from pathlib import Path

import pytest

from ntlr_bench.cli import main
from ntlr_bench.experiments import Experiment, Grid
from ntlr_bench.records import RecordError, read_record, write_record
from ntlr_bench.rerun import Verdict, compare, find_records, rerun_records
from ntlr_bench.sweep import records_dir, sweep

TWO = Experiment(
    name="two",
    description="two tiny digits runs",
    paper="a test",
    grids={"smoke": (Grid(("digits_mlp",), ("sgd", "tlr_sgd"), (1e-1,)),), "paper": ()},
)


def _quiet(_: str) -> None:
    pass


@pytest.fixture(scope="module")
def committed(tmp_path_factory) -> list[Path]:
    """Two records as a docs folder holds them: compressed, one of them TLR's (with meta-step statuses)."""
    runs = tmp_path_factory.mktemp("runs")
    sweep(TWO, out_dir=runs, budget="smoke", progress=False, log=_quiet)
    folder = tmp_path_factory.mktemp("docs")
    paths = []
    for path in sorted(records_dir(runs, "two", "smoke").glob("*.json")):
        paths.append(write_record(read_record(path), folder / f"{path.name}.gz"))
    return paths


def _tlr(paths: list[Path]) -> Path:
    return next(p for p in paths if "tlr_sgd" in p.name)


def _edited(path: Path, dest: Path, edit) -> Path:
    record = copy.deepcopy(read_record(path))
    edit(record)
    return write_record(record, dest / path.name)


def test_a_rerun_of_an_untouched_record_is_identical_and_a_second_call_reuses_it(committed, tmp_path):
    results = rerun_records(committed, out_dir=tmp_path, log=_quiet)
    assert [r.verdict for r in results] == [Verdict.IDENTICAL] * 2
    assert any(r.comparison is not None and _statuses(r.source) for r in results)
    lines = []
    again = rerun_records(committed, out_dir=tmp_path, log=lines.append)
    assert "2 rerun(s) already" in lines[0] and "0 to run" in lines[0]
    assert [r.verdict for r in again] == [Verdict.IDENTICAL] * 2


def _statuses(path: Path) -> list[str]:
    return [h["status"] for h in read_record(path).get("optimizer_history") or []]


def test_a_changed_final_loss_is_different_unless_within_the_tolerance(committed, tmp_path):
    def nudge(record):
        record["final"]["train_loss"] *= 1 + 1e-4

    edited = _edited(_tlr(committed), tmp_path / "docs", nudge)
    (result,) = rerun_records([edited], out_dir=tmp_path / "out", log=_quiet)
    assert result.verdict is Verdict.DIFFERENT and result.comparison is not None
    assert result.comparison.metric == "train_loss"
    assert result.comparison.max_rel_diff == pytest.approx(1e-4, rel=1e-3)
    (loose,) = rerun_records([edited], out_dir=tmp_path / "out", rtol=1e-3, log=_quiet)
    assert loose.verdict is Verdict.CLOSE


def test_one_decision_that_differs_is_different_at_any_tolerance(committed, tmp_path):
    def flip(record):
        history = record["optimizer_history"]
        history[-1]["status"] = "rollback" if history[-1]["status"] != "rollback" else "updated"

    edited = _edited(_tlr(committed), tmp_path / "docs", flip)
    (result,) = rerun_records([edited], out_dir=tmp_path / "out", rtol=1.0, log=_quiet)
    assert result.verdict is Verdict.DIFFERENT and result.comparison is not None
    assert result.comparison.decisions_differ == 1 and "1 meta-step decision(s) differ" in result.line()


def test_the_record_s_own_thread_count_is_used_and_another_machine_is_named(committed, tmp_path):
    def elsewhere(record):
        record["environment"]["torch_threads"] = 2
        record["environment"]["cpu"] = "Some Other CPU"
        record["final"]["train_loss"] *= 2

    edited = _edited(_tlr(committed), tmp_path / "docs", elsewhere)
    (result,) = rerun_records([edited], out_dir=tmp_path / "out", log=_quiet)
    assert read_record(result.rerun)["environment"]["torch_threads"] == 2
    assert result.machine == ("cpu",) and "made with another cpu" in result.line()


def test_an_older_record_that_does_not_name_its_processor_says_so(committed, tmp_path):
    def older(record):
        del record["environment"]["cpu"]
        record["final"]["test_loss"] *= 2

    edited = _edited(_tlr(committed), tmp_path / "docs", older)
    (result,) = rerun_records([edited], out_dir=tmp_path / "out", log=_quiet)
    assert "cpu" in result.unrecorded and "does not state its cpu" in result.line()


def test_a_run_that_fails_is_reported_and_the_others_still_compared(committed, tmp_path):
    def unknown(record):
        record["config"]["workload"] = "no_such_workload"
        record["run_id"] = "no_such_workload-run"

    broken = _edited(_tlr(committed), tmp_path / "docs", unknown)
    results = rerun_records([broken, committed[0]], out_dir=tmp_path / "out", log=_quiet)
    assert [r.verdict for r in results] == [Verdict.FAILED, Verdict.IDENTICAL]
    assert "no_such_workload" in results[0].line()


def test_a_data_set_that_cannot_be_loaded_is_looked_for_once_and_fails_each_of_its_records(
    committed, unreachable_mnist, monkeypatch
):
    import ntlr_bench.data as data_package

    tmp_path = unreachable_mnist
    calls = []
    real_locate = data_package.locate
    monkeypatch.setattr(data_package, "locate", lambda *a, **k: (calls.append(a), real_locate(*a, **k))[1])

    def on_mnist(record):
        record["config"]["workload"] = "mnist_mlp"
        record["run_id"] = f"mnist-{record['run_id']}"

    mnist = [_edited(path, tmp_path / "docs", on_mnist) for path in committed]
    lines: list[str] = []
    results = rerun_records([*mnist, committed[0]], out_dir=tmp_path / "out", log=lines.append)
    assert [r.verdict for r in results] == [Verdict.FAILED, Verdict.FAILED, Verdict.IDENTICAL]
    assert all("data set 'mnist' could not be loaded" in r.line() for r in results[:2])
    assert len(calls) == 1  # the second record does not look for the data set again
    assert sum("was not found" in line for line in lines) == 1


def test_the_cli_prints_one_line_per_record_and_exits_1_when_one_differs(committed, tmp_path, capsys):
    folder = tmp_path / "docs"
    folder.mkdir()
    for path in committed:
        shutil.copy(path, folder)
    assert main(["rerun", str(folder), "--out", str(tmp_path / "runs")]) == 0
    out = capsys.readouterr().out
    assert out.count("identical  ") == 2 and "2 identical, 0 close, 0 different, 0 failed" in out

    def nudge(record):
        record["final"]["train_loss"] *= 1.5

    _edited(_tlr(committed), folder, nudge)
    assert main(["rerun", str(folder), "--out", str(tmp_path / "runs")]) == 1
    assert "1 identical, 0 close, 1 different, 0 failed" in capsys.readouterr().out


def test_paths_that_hold_no_record_are_clear_errors(tmp_path, capsys):
    with pytest.raises(FileNotFoundError, match="neither a record file nor a folder"):
        find_records([tmp_path / "missing"])
    with pytest.raises(ValueError, match="holds no run record"):
        find_records([tmp_path])
    (tmp_path / "notes.json").write_text("[1, 2")
    with pytest.raises(RecordError, match=r"notes\.json"):
        rerun_records(find_records([tmp_path]), out_dir=tmp_path / "out", log=_quiet)
    assert main(["rerun", str(tmp_path / "missing")]) == 2
    assert "neither a record file nor a folder" in capsys.readouterr().err


@pytest.mark.parametrize("kwargs", [{"workers": 0}, {"threads": 0}, {"rtol": -1.0}, {"rtol": float("nan")}])
def test_bad_arguments_name_themselves(committed, tmp_path, kwargs):
    with pytest.raises(ValueError, match=next(iter(kwargs))):
        rerun_records(committed, out_dir=tmp_path, log=_quiet, **kwargs)


def test_compare_counts_a_metric_missing_from_the_rerun_as_a_difference(committed):
    record = read_record(committed[0])
    fewer = copy.deepcopy(record)
    del fewer["final"]["test_loss"]
    assert compare(record, record).verdict is Verdict.IDENTICAL
    assert compare(record, fewer, rtol=1.0).verdict is Verdict.DIFFERENT


# -- the committed records themselves --------------------------------------------------------------------
_GAUNTLET = Path(__file__).resolve().parents[1] / "docs" / "experiments" / "gauntlet" / "records"


def _committed_default_sample() -> list[Path]:
    """One committed default-rule record of each of the quick tier's digits and least-squares workloads and
    inner optimizers (the first by name: a fixed sample of about 20 runs of well under a second)."""
    import gzip
    import json

    chosen: dict[tuple[str, str, int], Path] = {}
    for path in sorted(_GAUNTLET.glob("*.json.gz")):
        if not path.name.startswith(("digits_", "lstsq_")):
            continue
        with gzip.open(path, "rt") as handle:
            config = json.load(handle)["config"]
        if config.get("overrides", {}).get("rule") != "robust" or config.get("overrides", {}).get("anneal"):
            continue
        chosen.setdefault((config["workload"], config["optimizer"], config["batch_size"]), path)
    return list(chosen.values())


def test_the_committed_default_records_rerun_identically_on_their_machine(tmp_path: Path) -> None:
    # A change to the library that moves the default rule's decisions must come with its records rerun:
    # here a sample of the quick tier's reruns through `ntlr-bench rerun`. A record made on another kind of
    # processor or torch may round differently, so only the ones made on this kind are held to it.
    from ntlr_bench.records import environment
    from ntlr_bench.rerun import MACHINE_KEYS

    here = environment()
    sample = [
        path
        for path in _committed_default_sample()
        if all(read_record(path).get("environment", {}).get(key) == here.get(key) for key in MACHINE_KEYS)
    ]
    if not sample:
        pytest.skip("no committed default-rule record was made on this kind of machine and torch")
    # Bit for bit: least squares' known optimum is rounded where torch.linalg.lstsq's last bits vary
    # (ntlr_bench.data.synthetic), so its excess loss reproduces too.
    results = rerun_records(sample, out_dir=tmp_path, workers=1, progress=False, log=_quiet)
    assert len(results) == len(sample) >= 10
    assert [r.line() for r in results if r.verdict is not Verdict.IDENTICAL] == []

"""A run's outcome (OK / STALLED / DIVERGED) and the reports that count it."""

import copy
import math

import pytest

from ntlr_bench import Outcome, outcome
from ntlr_bench.experiments import get_experiment
from ntlr_bench.outcome import final_train_loss, initial_loss
from ntlr_bench.records import RunConfig
from ntlr_bench.report import write_report
from ntlr_bench.runner import run


def _record(step_loss, final_train, *, diverged=False, evals=None, steps_per_epoch=2):
    final = {} if final_train is None else {"train_loss": final_train}
    return {
        "step_loss": step_loss,
        "steps_per_epoch": steps_per_epoch,
        "diverged": diverged,
        "evals": evals if evals is not None else [{"epoch": 1, "step": len(step_loss), **final}],
        "final": final,
    }


@pytest.mark.parametrize(
    "final, expected",
    [
        (0.5, Outcome.OK),
        (1.0, Outcome.OK),  # exactly half: not above it
        (1.5, Outcome.STALLED),
        (2.0, Outcome.STALLED),  # exactly the initial loss: not above it
        (2.3, Outcome.DIVERGED),
        (33.0, Outcome.DIVERGED),
        (math.inf, Outcome.DIVERGED),
        (math.nan, Outcome.DIVERGED),
    ],
)
def test_outcome_compares_the_final_training_loss_with_the_initial_one(final, expected):
    assert outcome(_record([2.0, 1.9, 1.8], final)) is expected


def test_a_run_the_runner_stopped_is_diverged_whatever_its_last_eval():
    record = _record([2.0, math.nan], 0.1, diverged=True)
    assert outcome(record) is Outcome.DIVERGED and math.isnan(final_train_loss(record))


def test_an_evaluation_before_training_is_the_initial_loss():
    evals = [{"epoch": 0, "step": 0, "train_loss": 4.0}, {"epoch": 1, "step": 3, "train_loss": 3.0}]
    record = _record([2.0, 1.9, 1.8], 3.0, evals=evals)
    assert initial_loss(record) == 4.0 and outcome(record) is Outcome.STALLED


def test_without_a_training_evaluation_the_last_epochs_step_losses_are_the_final_loss():
    record = _record([2.0, 1.9, 0.4, 0.6], None, steps_per_epoch=2)
    assert final_train_loss(record) == pytest.approx(0.5) and outcome(record) is Outcome.OK


def test_a_run_without_steps_is_judged_on_finiteness_only():
    assert outcome(_record([], 1.0, evals=[])) is Outcome.OK


@pytest.fixture(scope="module")
def demo_records():
    """One real digits run, and copies of it ending below half, between half and above its initial loss."""
    real = run(RunConfig("digits_mlp", "sgd", 0.1, budget="smoke"), progress=False)
    first = real["step_loss"][0]
    records = []
    for lr, factor in ((1.0, 14.0), (0.1, 0.8), (0.01, 0.1)):
        record = copy.deepcopy(real)
        record["config"]["lr"] = lr
        record["run_id"] = RunConfig.from_dict(record["config"]).run_id
        record["final"]["train_loss"] = record["evals"][-1]["train_loss"] = factor * first
        records.append(record)
    return records


def test_the_report_counts_a_finite_run_that_ended_above_its_start_as_diverged(demo_records, tmp_path):
    assert [outcome(r) for r in demo_records] == [Outcome.DIVERGED, Outcome.STALLED, Outcome.OK]
    text = write_report(get_experiment("demo"), demo_records, tmp_path).read_text()
    assert "- runs: 3 (1 diverged, 1 stalled)" in text
    row = next(line for line in text.splitlines() if line.startswith("| 1e+00 |"))
    assert "(1 diverged)" in row  # left out of the mean, counted beside it

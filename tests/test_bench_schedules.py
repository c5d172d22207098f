"""The bench's ``schedule`` override: a user's schedule over the run, on a plain optimizer or on TLR."""

from __future__ import annotations

import warnings

import pytest
import torch

from ntlr import TLR
from ntlr_bench.optimizers import build_optimizer
from ntlr_bench.optimizers.schedules import WARMUP_FRACTION, Schedule, make_scheduler

TOTAL = 40


def _params() -> list[torch.nn.Parameter]:
    return [torch.nn.Parameter(torch.ones(3))]


def _scheduled_lrs(name: str, schedule: str, lr: float = 0.1) -> list[float]:
    """The scheduled lr at each step of a TOTAL-step run, stepped the way the runner steps it (after every
    optimizer step, the last included)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        _, built = build_optimizer(
            name, _params(), lr=lr, steps_per_epoch=10, total_steps=TOTAL, schedule=schedule
        )
        assert built.scheduler is not None
        lrs = []
        for _ in range(TOTAL):
            lrs.append(built.optimizer.param_groups[0]["lr"])
            built.optimizer.step()  # no grads: a no-op step, which is what the scheduler's order check wants
            built.scheduler.step()
    return lrs


@pytest.mark.parametrize("name", ["sgd", "adam", "adamw", "tlr_sgd", "tlr_adam", "tlr_adamw"])
@pytest.mark.parametrize("schedule", [s.value for s in Schedule])
def test_every_schedule_spans_the_run(name: str, schedule: str) -> None:
    lrs = _scheduled_lrs(name, schedule)
    assert max(lrs) == pytest.approx(0.1, rel=1e-2)
    assert lrs[-1] < 0.5 * max(lrs)  # the run ends annealed
    if schedule == "cosine":
        assert lrs[0] == 0.1 and lrs[TOTAL // 2] == pytest.approx(0.05)
    elif schedule == "warmup_cosine":
        warm = round(WARMUP_FRACTION * TOTAL)
        assert lrs[: warm + 1] == pytest.approx([0.1 * (t + 1) / warm for t in range(warm)] + [0.1])
    elif schedule == "multistep":
        assert lrs == pytest.approx([0.1] * 20 + [0.01] * 10 + [0.001] * 10)
    else:
        assert lrs[0] < 0.01 and abs(lrs.index(max(lrs)) - 0.3 * TOTAL) <= 1  # OneCycleLR's peak at 30 %


def test_on_tlr_the_schedule_is_the_lr_its_factor_multiplies() -> None:
    _, built = build_optimizer(
        "tlr_sgd", _params(), lr=0.1, steps_per_epoch=10, total_steps=TOTAL, schedule="cosine"
    )
    assert isinstance(built.optimizer, TLR) and built.scheduler is not None
    assert built.scheduler.optimizer is built.optimizer


def test_sgd_mstep_is_the_multistep_schedule() -> None:
    """sgd_mstep (the paper's) and ``sgd`` with ``schedule=multistep`` are one schedule, one code path."""
    _, built = build_optimizer("sgd_mstep", _params(), lr=0.1, steps_per_epoch=10, total_steps=TOTAL)
    assert isinstance(built.scheduler, torch.optim.lr_scheduler.MultiStepLR)
    assert sorted(built.scheduler.milestones) == [20, 30]
    assert _scheduled_lrs("sgd", "multistep") == pytest.approx([0.1] * 20 + [0.01] * 10 + [0.001] * 10)


@pytest.mark.parametrize("value", ["cosin", "", 1.0, None])
def test_an_unknown_schedule_is_refused_by_name(value: object) -> None:
    with pytest.raises(
        ValueError, match="schedule must be one of cosine, warmup_cosine, onecycle, multistep"
    ):
        build_optimizer("tlr_sgd", _params(), lr=0.1, steps_per_epoch=10, total_steps=TOTAL, schedule=value)


def test_a_schedule_needs_a_positive_step_count() -> None:
    opt = torch.optim.SGD(_params(), lr=0.1)
    with pytest.raises(ValueError, match="total_steps must be a positive int"):
        make_scheduler(opt, Schedule.COSINE, 0)


def test_without_a_schedule_nothing_is_scheduled() -> None:
    for name in ("sgd", "tlr_sgd"):
        _, built = build_optimizer(name, _params(), lr=0.1, steps_per_epoch=10, total_steps=TOTAL)
        assert built.scheduler is None


def _record(optimizer: str, lr: float, schedule: str | None, loss: float, seed: int = 0) -> dict:
    """A run record as the schedules report reads it: its config, batch size, first and final loss."""
    overrides = {"rule": "robust"} if optimizer.startswith("tlr_") else {}
    if schedule is not None:
        overrides["schedule"] = schedule
    config = {
        "workload": "digits_mlp",
        "optimizer": optimizer,
        "lr": lr,
        "seed": seed,
        "overrides": overrides,
    }
    return {"config": config, "batch_size": 64, "step_loss": [2.3, loss], "final": {"train_loss": loss}}


def test_the_schedules_report_puts_each_schedule_in_its_column(tmp_path) -> None:
    """TLR's cell is the median / worst over its runs, the plain optimizer's its best rate's mean over
    seeds; a run under another schedule never leaks into a column, and a diverged run is counted."""
    from ntlr_bench.experiments import get_experiment
    from ntlr_bench.report.sections.schedules import SCHEDULE_COLUMNS, schedule_composition

    records = [
        _record("tlr_sgd", 1.0, None, 0.01),
        _record("tlr_sgd", 1e-3, None, 0.03),
        _record("tlr_sgd", 1e-6, None, 0.02),
        _record("tlr_sgd", 1.0, "cosine", 0.5),
        _record("tlr_sgd", 1e-3, "cosine", float("nan")),
        _record("sgd", 0.1, None, 0.04, seed=0),
        _record("sgd", 0.1, None, 0.06, seed=1),
        _record("sgd", 0.3, None, 0.045),
        _record("sgd", 0.3, "cosine", 0.001),
    ]
    lines = schedule_composition(get_experiment("schedules"), records, tmp_path)
    header = next(line for line in lines if line.startswith("| method"))
    assert header == "| " + " | ".join(["method", *SCHEDULE_COLUMNS]) + " |"
    rows = {
        line.split(" | ")[0].lstrip("| "): line.split(" | ")[1:] for line in lines if line.startswith("| ")
    }
    tlr, sgd = rows["TLR default, SGD m0.9"], rows["SGD m0.9, best rate"]
    assert tlr[0] == "0.02 / 0.03"
    assert tlr[1] == "0.5 / diverged (1d)"
    assert tlr[2].rstrip(" |") == "—"
    assert sgd[0] == "0.045 [lr=3e-1]"  # 0.1's mean over its two seeds is 0.05
    assert sgd[1] == "0.001 [lr=3e-1]"

"""TLR over every optimizer in PyTorch's own ``optim_db``, with each of the settings torch tests it with.

torch's ``test_forloop_goes_right_direction`` (test/test_optim.py) in TLR's clothes: 20 steps on
``(W x + b)²`` must lower the loss (raise it under ``maximize``), with the loss observed through a
closure and without; and its ``test_foreach_matches_forloop`` / ``test_fused_matches_forloop``: the
inner optimizer's multi-tensor or fused kernels must leave TLR on the for-loop kernels' trajectory; and its
``test_tensor_lr``: a rate given as a tensor steps as the same float; and its
``test_param_group_with_lrscheduler_goes_right_direction``. torch's
table is read, not copied, so a new torch optimizer or setting is covered.
"""

from __future__ import annotations

import copy
import importlib.util
import math
import warnings
from pathlib import Path
from typing import Any

import pytest
import torch

from ntlr import RULES, TLR

pytest.importorskip("torch.testing._internal.common_optimizers", reason="torch's optim_db needs expecttest")

# The protocol lives with the benchmark that runs it over many seeds (benchmarks/rule_stress.py
# --torch-table); this test is its seed 0, case by case.
_SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "rule_stress.py"
_spec = importlib.util.spec_from_file_location("bench_rule_stress", _SCRIPT)
assert _spec is not None and _spec.loader is not None
bench = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(bench)

CASES = bench.torch_table_cases()

# Measured, not hidden: the runs that go the wrong way in torch's 20 steps at this seed (0). At K = 1-2 they
# are chaotic (a window of one step is one gradient's evidence, and which seed's run ends high moves with
# any change to the rule), so the rule is judged over many seeds: `python benchmarks/rule_stress.py
# --torch-table` counts them over seeds 1-10 (23 of 8,000 runs; 27 before RobustRule's item 19, which took
# this seed's two ASGD cases off the list: a rollback one window deeper where a short window started high;
# 35 before item 18; 107 before
# the weak-veto climb cap and ASGD's rate rescale, which also took seed 1234, the one torch's TestCase sets,
# from 14 to 2, and this seed from 3 to 7; 39 before RobustRule's runaway stop, item 14, which took this
# seed's two RMSprop cases at K = 1, a settled rate climbing x2 a step back past its own, off the list).
# Adadelta's own steps grow while its accumulators fill; ASGD with weight decay, once converged, drifts
# along aligned windows that invite a climb. strict: a fix shows up as an unexpected pass.
KNOWN_WRONG_WAY = {
    ("Adadelta-default", 2, False),
    ("Adadelta-nonzero weight_decay", 2, False),
    ("Adadelta-rho", 2, False),
}


@pytest.mark.parametrize("closure_step", [False, True], ids=["step", "closure"])
@pytest.mark.parametrize("update_every", [1, 2, 3, 5, 10])
@pytest.mark.parametrize(("name", "cls", "kwargs", "needs_closure"), CASES, ids=[c[0] for c in CASES])
def test_goes_the_right_direction(
    request: pytest.FixtureRequest,
    name: str,
    cls: type,
    kwargs: dict,
    needs_closure: bool,
    update_every: int,
    closure_step: bool,
) -> None:
    if (name, update_every, closure_step) in KNOWN_WRONG_WAY:
        reason = "known at this seed: windows of 1-2 steps (see KNOWN_WRONG_WAY)"
        request.applymarker(pytest.mark.xfail(strict=True, reason=reason))
    initial, final = bench.right_direction_losses(cls, kwargs, update_every, closure_step or needs_closure)
    if kwargs.get("maximize", False):
        assert final > initial
    else:
        assert final < initial


# torch's test_foreach_matches_forloop and test_fused_matches_forloop (test/test_optim.py, _compare_between)
# in TLR's clothes: the same model built twice, the inner optimizer's flag off in one and on in the other,
# 7 steps (no gradients at step 2, the second layer frozen at steps 3-4), and after each step every
# parameter and every state entry of both (TLR's window buffers included) equal within float32 tolerance.
# torch hands each optimizer an extra 0-dim parameter from torch.empty (any bits) that never gets a
# gradient; here it holds NaN, the worst such bits (TLR leaves a frozen non-finite parameter out).
def _flag_cases(flag: str) -> list[tuple[str, type, dict, bool]]:
    from torch.testing._internal.common_optimizers import optim_db

    cases = []
    for info in optim_db:
        if info.only_supports_sparse_grads or info.optim_cls.__name__ in ("Muon", "LBFGS"):
            continue
        if flag == "fused" and "cpu" not in info.supports_fused_on:
            continue
        for optim_input in info.optim_inputs_func(device="cpu", dtype=torch.float32):
            kwargs = dict(optim_input.kwargs)
            if kwargs.get("capturable") or "foreach" in kwargs or "fused" in kwargs:
                continue
            cases.append(
                (
                    f"{info.optim_cls.__name__}-{optim_input.desc}",
                    info.optim_cls,
                    kwargs,
                    info.step_requires_closure,
                )
            )
    return cases


def _first_mismatch(
    cls: type, kwargs: dict, flag: str, update_every: int, rule: str, needs_closure: bool
) -> str | None:
    models, opts = [], []
    for value in (False, True):
        torch.manual_seed(1)
        model = torch.nn.Sequential(
            torch.nn.Linear(2, 3), torch.nn.Sigmoid(), torch.nn.Linear(3, 1), torch.nn.Sigmoid()
        )
        never_trained = torch.full((), math.nan, requires_grad=True)
        never_trained.grad = torch.rand_like(never_trained)
        inner = cls([*model.parameters(), never_trained], **{**kwargs, flag: value})
        models.append(model)
        opts.append(TLR(inner, update_every=update_every, rule=rule))
    inputs = torch.tensor([0.1, 0.2, 0.3, 0.4, 0.5, 0.6]).reshape(3, 2)
    for step in range(7):
        for model, opt in zip(models, opts):
            opt.zero_grad()
            if step == 3:
                model[2].requires_grad_(False)
            if step == 5:
                model[2].requires_grad_(True)
            if step != 2:
                model(inputs).sum().backward()
            if needs_closure:
                opt.step(lambda model=model: model(inputs).sum())
            else:
                opt.step()
        for off, on in zip(models[0].parameters(), models[1].parameters()):
            if not torch.allclose(off, on, rtol=1.3e-6, atol=1e-5):
                return f"step {step}: a parameter differs by {float((off - on).abs().max()):.3g}"
            state_off, state_on = opts[0].state[off], opts[1].state[on]
            for key, value in state_off.items():
                other = state_on[key]
                if isinstance(value, torch.Tensor):
                    same = value.shape == other.shape and torch.allclose(
                        value.double(), other.double(), rtol=1.3e-6, atol=1e-5
                    )
                else:
                    same = value == other
                if not same:
                    return f"step {step}: state {key!r} differs"
    return None


# Measured, not hidden (2026-12-05): the pairs whose runs part at K = 1. Around ASGD the robust rule's
# windows after a rollback repeat the rolled-back direction (a / b within 1e-4 of 1), where a window with
# no loss to read holds the rate if b - a <= 0 and climbs if it is a hair above 0: the two kernels' rounding
# (4e-5 apart by then) picks the side. Making such a window climb like its Newton neighbour matched all
# pairs but sent PyTorch's right-direction table from 39 to 61 wrong-way runs (rule_stress 32 -> 58), and
# holding any climb for one window after a rollback cost the quick tier 1.7 %: neither kept. The paper's
# rule climbs x40-x100 at each K = 1 window, which multiplies the kernels' rounding. Since item 18 of
# RobustRule (2026-12-06: without a loss, no climb on directions that grew past x1.5) the robust rule's
# three ASGD pairs match: the climbs that amplified the rounding were on growing directions.
KNOWN_MISMATCH = {
    ("paper", "foreach", "ASGD-maximize", 1),
    ("paper", "foreach", "ASGD-maximize, nonzero weight_decay", 1),
    ("paper", "foreach", "RAdam-maximize", 1),
    ("paper", "fused", "Adam-non-default lr", 1),
    ("paper", "fused", "AdamW-non-default lr", 1),
    ("paper", "fused", "AdamW-nonzero weight_decay", 1),
    ("paper", "fused", "AdamW-amsgrad", 1),
}
FLAG_CASES = [(flag, *case) for flag in ("foreach", "fused") for case in _flag_cases(flag)]


@pytest.mark.parametrize("rule", sorted(RULES))
@pytest.mark.parametrize("update_every", [1, 2, 3, 5])
@pytest.mark.parametrize(
    ("flag", "name", "cls", "kwargs", "needs_closure"), FLAG_CASES, ids=[f"{c[0]}-{c[1]}" for c in FLAG_CASES]
)
def test_foreach_and_fused_match_the_for_loop(
    request: pytest.FixtureRequest,
    flag: str,
    name: str,
    cls: type,
    kwargs: dict,
    needs_closure: bool,
    update_every: int,
    rule: str,
) -> None:
    if (rule, flag, name, update_every) in KNOWN_MISMATCH:
        request.applymarker(pytest.mark.xfail(strict=True, reason="known: K = 1 (see KNOWN_MISMATCH)"))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # no loss observed, torch's notes on some settings
        assert _first_mismatch(cls, kwargs, flag, update_every, rule, needs_closure) is None


# torch's test_tensor_lr in TLR's clothes: the same problem stepped by an inner optimizer given lr as a
# float and by one given it as a 0-dim tensor (the rate a capturable step reads), 5 steps, equal weights
# after each within float32 tolerance. TLR scales either kind of rate by the same factor.
def _tensor_lr_mismatch(
    cls: type, kwargs: dict, update_every: int, rule: str, needs_closure: bool
) -> str | None:
    weight, bias, inputs = bench.torch_problem(0)
    rate = 1.0 if needs_closure else 1e-3
    runs = []
    for lr in (rate, torch.tensor(rate)):
        w, b = weight.detach().clone().requires_grad_(True), bias.detach().clone().requires_grad_(True)
        try:
            opt = TLR(cls([w, b], **{**kwargs, "lr": lr}), update_every=update_every, rule=rule)
        except ValueError:
            return None  # a setting torch itself refuses a tensor lr (torch skips it too)
        runs.append((opt, w, b, bench.problem_closure(opt, w, b, inputs)))

    for step in range(5):
        for opt, _, _, closure in runs:
            if needs_closure:
                opt.step(closure)
            else:
                closure()
                opt.step()
        (_, w0, b0, _), (_, w1, b1, _) = runs
        if not (
            torch.allclose(w0, w1, rtol=1.3e-6, atol=1e-5) and torch.allclose(b0, b1, rtol=1.3e-6, atol=1e-5)
        ):
            return f"step {step}: the weights differ by {float((w0 - w1).abs().max()):.3g}"
    return None


# Measured (2026-12-05): the paper's rule at K = 1 climbs up to x100 a step, which multiplies the float32
# rounding of a tensor rate (0.001 is not a float32 number) past torch's tolerance within 5 steps.
KNOWN_TENSOR_LR = {
    ("Adamax-maximize", 1),
    ("Adamax-maximize, weight_decay", 1),
    ("ASGD-non-default lambd", 1),
    ("ASGD-nonzero weight_decay", 1),
    ("RAdam-nonzero weight_decay", 1),
    ("RAdam-decoupled_weight_decay", 1),
    ("SGD-default", 1),
    ("SGD-non-default lr", 1),
    ("SGD-tensor lr", 1),
    ("SGD-non-zero weight_decay", 1),
}


@pytest.mark.parametrize("rule", sorted(RULES))
@pytest.mark.parametrize("update_every", [1, 2, 3, 5])
@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_a_tensor_rate_steps_as_the_float_one(
    request: pytest.FixtureRequest, case: tuple[str, type, dict, bool], update_every: int, rule: str
) -> None:
    name, cls, kwargs, needs_closure = case
    if rule == "paper" and (name, update_every) in KNOWN_TENSOR_LR:
        request.applymarker(pytest.mark.xfail(strict=True, reason="known: the paper's rule at K = 1"))
    settings = {k: v for k, v in kwargs.items() if k != "lr"}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert _tensor_lr_mismatch(cls, settings, update_every, rule, needs_closure) is None


# torch's test_param_group_with_lrscheduler_goes_right_direction in TLR's clothes: two param groups (the
# bias's with its own lr), each of the scheduler combinations optim_db lists for the optimizer stepped
# after every closure step (ReduceLROnPlateau on the loss), 20 steps must lower the loss. At torch's
# TestCase seed (1234) and ours (0) the default rule passes all 240 runs; over seeds 1-10 it went the wrong
# way in 3 of 1,200 (Adadelta at K = 2, as in the table above), the paper's rule in 39 of the 240.
def _scheduler_cases() -> list[tuple[str, type, int, Any]]:
    from torch.testing._internal.common_optimizers import optim_db

    return [
        (f"{info.optim_cls.__name__}-schedulers{index}", info.optim_cls, index, schedulers)
        for info in optim_db
        if not info.only_supports_sparse_grads and info.optim_cls.__name__ not in ("Muon", "LBFGS")
        for index, schedulers in enumerate(info.scheduler_inputs)
    ]


SCHEDULER_CASES = _scheduler_cases()


@pytest.mark.parametrize("seed", [0, 1234])
@pytest.mark.parametrize("update_every", [1, 2, 3, 5, 10])
@pytest.mark.parametrize(
    ("name", "cls", "index", "schedulers"), SCHEDULER_CASES, ids=[c[0] for c in SCHEDULER_CASES]
)
def test_param_groups_under_lr_schedulers_go_the_right_direction(
    name: str, cls: type, index: int, schedulers: Any, update_every: int, seed: int
) -> None:
    weight, bias, inputs = bench.torch_problem(seed)
    opt = TLR(cls([{"params": [weight]}, {"params": [bias], "lr": 0.01}]), update_every=update_every)
    initial, final = _scheduled_run(opt, schedulers, weight, bias, inputs, closure_step=True)
    assert final < initial


def _scheduled_run(
    opt: TLR, schedulers: Any, weight: Any, bias: Any, inputs: Any, *, closure_step: bool
) -> tuple[float, float]:
    """torch's 20 steps on ``(W x + b)^2`` with ``schedulers`` built on ``opt`` and stepped after each
    (ReduceLROnPlateau with the loss): the loss before and after."""
    from torch.optim.lr_scheduler import ReduceLROnPlateau

    built = [make(opt) for make in schedulers]
    closure = bench.problem_closure(opt, weight, bias, inputs)
    initial = closure().item()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch's notes on some settings
        for _ in range(20):
            if closure_step:
                loss = opt.step(closure)
            else:
                loss = closure()
                opt.step()
            for scheduler in built:
                if isinstance(scheduler, ReduceLROnPlateau):
                    scheduler.step(loss)
                else:
                    scheduler.step()
    return initial, closure().item()


# torch's test_forloop_goes_right_direction with_lrsched=True: every setting of every optimizer under each
# of its scheduler sets (ReduceLROnPlateau stepped with the loss), 20 steps, with and without a closure.
# Measured (2026-12-06, seeds 0 and 1234, K = 1, 2, 3, 5, 10): 10 of 3,280 runs went the wrong way, all at
# K = 1-2 (SGD with weight decay 4, Adadelta 4, Adafactor maximize with weight decay 2; 20 before
# RobustRule's item 19), the known class of KNOWN_WRONG_WAY above; none at K = 3, 5 or 10, which this
# holds. The same sweep found a tensor lr that PolynomialLR brings to 0 crashing the meta-step (fixed; see
# tests/test_torch_optim_protocols.py).
def _setting_scheduler_cases() -> list[Any]:
    from torch.testing._internal.common_optimizers import optim_db

    cases = []
    for info in optim_db:
        if info.only_supports_sparse_grads or info.optim_cls.__name__ in ("Muon", "LBFGS"):
            continue
        for optim_input in info.optim_inputs_func(device="cpu", dtype=torch.float32):
            kwargs = dict(optim_input.kwargs)
            if kwargs.get("capturable") or "foreach" in kwargs or "fused" in kwargs:
                continue
            for index, schedulers in enumerate(info.scheduler_inputs):
                name = f"{info.optim_cls.__name__}-{optim_input.desc}-schedulers{index}"
                cases.append(pytest.param(info.optim_cls, kwargs, schedulers, id=name))
    return cases


@pytest.mark.parametrize(("cls", "kwargs", "schedulers"), _setting_scheduler_cases())
def test_every_setting_under_its_schedulers_goes_the_right_direction(
    cls: type, kwargs: dict, schedulers: Any
) -> None:
    for update_every in (3, 5, 10):
        for closure_step in (False, True):
            weight, bias, inputs = bench.torch_problem(0)
            # A fresh copy: a tensor lr is one object every case of the setting shares, and a scheduler
            # changes it in place.
            opt = TLR(cls([weight, bias], **copy.deepcopy(kwargs)), update_every=update_every)
            initial, final = _scheduled_run(opt, schedulers, weight, bias, inputs, closure_step=closure_step)
            where = f"K = {update_every}, {'closure' if closure_step else 'step'}"
            assert (final > initial) if kwargs.get("maximize", False) else (final < initial), where

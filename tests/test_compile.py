"""TLR with ``torch.compile``: a compiled model, and a compiled inner optimizer step.

The property that matters is that meta-steps, which change the learning rate and rewrite TLR's buffers,
do not make torch.compile recompile over and over: the compile count must stop growing once the first
meta-steps have been seen. ``CompileCounter`` (Dynamo only, no Inductor) keeps these tests fast; the
Inductor run is marked slow. Every rule must keep this contract: the tests run over the paper's rule and
the robust one (whose windows last at least Adam's momentum horizon, and which reads the loss and may roll
a window back: rewriting the weights and the inner optimizer's moments in place).
"""

from __future__ import annotations

from collections.abc import Callable

import pytest
import torch
from torch import nn

from ntlr import RULES, TLR

dynamo = pytest.importorskip("torch._dynamo")
from torch._dynamo.testing import CompileCounter  # noqa: E402

UPDATE_EVERY = 2
over_rules = pytest.mark.parametrize("rule", sorted(RULES))


def make_net() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(4, 16), nn.Tanh(), nn.Linear(16, 1))


def batches(step: int) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(step % 8)
    x = torch.randn(8, 4, generator=gen)
    return x, torch.sin(2 * x.sum(1, keepdim=True))


def train(
    net: Callable[[torch.Tensor], torch.Tensor], opt: TLR, steps: range, *, loss_scale: float = 1.0
) -> None:
    for step in steps:
        x, y = batches(step)
        opt.zero_grad()
        loss = nn.functional.mse_loss(net(x), y)
        loss.backward()
        if opt.observes_loss:
            opt.observe_loss(loss * loss_scale)
        opt.step()


def make_opt(net: nn.Module, rule: str) -> TLR:
    return TLR(torch.optim.Adam(net.parameters(), lr=0.01), update_every=UPDATE_EVERY, rule=rule)


def window(opt: TLR) -> int:
    """The window length in steps (the robust rule's lasts at least Adam's momentum horizon, 10)."""
    length = getattr(opt.rule, "window_length", None)
    return opt.update_every if length is None else length(opt.update_every, opt.param_groups[0])


def eager_lrs(steps: int, rule: str) -> list[float]:
    net = make_net()
    opt = make_opt(net, rule)
    train(net, opt, range(steps))
    return [r.lr for r in opt.history]


@pytest.fixture(autouse=True)
def _fresh_dynamo():
    dynamo.reset()
    yield
    dynamo.reset()


@over_rules
def test_compiled_model_compiles_once(rule: str):
    net = make_net()
    counter = CompileCounter()
    compiled = torch.compile(net, backend=counter)
    opt = make_opt(net, rule)
    steps = 8 * window(opt)  # eight meta-steps
    train(compiled, opt, range(steps))
    assert len(opt.history) == 8
    assert counter.frame_count == 1
    assert [r.lr for r in opt.history] == pytest.approx(eager_lrs(steps, rule), rel=1e-6)
    assert any(r.status == "updated" for r in opt.history)


@over_rules
def test_compiled_inner_step_stops_recompiling(rule: str):
    net = make_net()
    opt = make_opt(net, rule)
    counter = CompileCounter()
    # Compile the inner optimizer's step, not TLR.step: the meta-step's bookkeeping and its one host sync
    # belong outside the graph.
    opt.optimizer.step = torch.compile(opt.optimizer.step, backend=counter)
    steps = 8 * window(opt)  # eight meta-steps, then eight more
    train(net, opt, range(steps))
    after_warmup = counter.frame_count
    rates_seen = len({r.lr for r in opt.history})
    train(net, opt, range(steps, 2 * steps))
    assert len(opt.history) == 16
    # The rate changed at the later meta-steps too, yet nothing was recompiled for it: a float lr becomes
    # a symbolic input after its first change (automatic dynamic), and TLR's buffers keep their identity.
    assert len({r.lr for r in opt.history}) > rates_seen
    assert counter.frame_count == after_warmup
    # The traced Adam rounds differently from the eager one; the gap grows slowly over 16 meta-steps.
    assert [r.lr for r in opt.history] == pytest.approx(eager_lrs(2 * steps, rule), rel=1e-2)


def test_a_late_first_rollback_does_not_recompile():
    # The robust rule's state and the previous window's loss live in the param groups, and some of them
    # first change long after warm-up (at the first rollback, the first decrease). A compiled inner step
    # guards on every value in its param groups: TLR keeps them out of the groups while it runs.
    net = make_net()
    opt = make_opt(net, "robust")
    counter = CompileCounter()
    opt.optimizer.step = torch.compile(opt.optimizer.step, backend=counter)
    length = window(opt)
    train(net, opt, range(4 * length))
    assert "rollback" not in [r.status for r in opt.history]  # else this test checks nothing
    after_warmup = counter.frame_count
    train(net, opt, range(4 * length, 5 * length), loss_scale=100.0)  # a loss jump: rolled back
    train(net, opt, range(5 * length, 8 * length))
    assert [r.status for r in opt.history][4] == "rollback"
    assert counter.frame_count == after_warmup


@over_rules
def test_window_buffers_keep_their_identity(rule: str):
    # A compiled inner step guards on the identity of every tensor in optimizer.state, TLR's buffers
    # included: rewriting them in place at meta-steps (rather than swapping them) keeps those guards
    # valid whatever the number of param groups.
    net = make_net()
    opt = make_opt(net, rule)

    def buffer_ids() -> list[int]:
        return [
            id(opt.state[p][k])
            for p in net.parameters()
            for k in ("tlr_snapshot", "tlr_prev_update", "exp_avg", "exp_avg_sq", "step")
        ]

    train(net, opt, range(1))
    before = buffer_ids()
    train(net, opt, range(1, 3 * window(opt)))
    assert len(opt.history) == 3  # odd: two swaps would have restored the identities
    assert buffer_ids() == before


@pytest.mark.slow
@over_rules
def test_inductor_compiled_model(rule: str):
    net = make_net()
    compiled = torch.compile(net)
    opt = make_opt(net, rule)
    steps = 4 * window(opt)
    train(compiled, opt, range(steps))
    graphs = dynamo.utils.counters["stats"]["unique_graphs"]
    train(compiled, opt, range(steps, 2 * steps))
    assert len(opt.history) == 8
    assert dynamo.utils.counters["stats"]["unique_graphs"] == graphs
    # Inductor's fused kernels round differently from eager.
    assert [r.lr for r in opt.history] == pytest.approx(eager_lrs(2 * steps, rule), rel=1e-3)

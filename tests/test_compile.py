"""TLR with ``torch.compile``: a compiled model, and a compiled inner optimizer step.

The property that matters is that meta-steps, which change the learning rate and rewrite TLR's buffers,
do not make torch.compile recompile over and over: the compile count must stop growing once the first
meta-steps have been seen. ``CompileCounter`` (Dynamo only, no Inductor) keeps these tests fast; the
Inductor run is marked slow.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest
import torch
from torch import nn

from ntlr import TLR

dynamo = pytest.importorskip("torch._dynamo")
from torch._dynamo.testing import CompileCounter  # noqa: E402

UPDATE_EVERY = 2


def make_net() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(4, 16), nn.Tanh(), nn.Linear(16, 1))


def batches(step: int) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(step % 8)
    x = torch.randn(8, 4, generator=gen)
    return x, torch.sin(2 * x.sum(1, keepdim=True))


def train(net: Callable[[torch.Tensor], torch.Tensor], opt: TLR, steps: range) -> None:
    for step in steps:
        x, y = batches(step)
        opt.zero_grad()
        nn.functional.mse_loss(net(x), y).backward()
        opt.step()


def make_opt(net: nn.Module) -> TLR:
    return TLR(torch.optim.Adam(net.parameters(), lr=0.01), update_every=UPDATE_EVERY)


def eager_lrs(steps: int) -> list[float]:
    net = make_net()
    opt = make_opt(net)
    train(net, opt, range(steps))
    return [r.lr for r in opt.history]


@pytest.fixture(autouse=True)
def _fresh_dynamo():
    dynamo.reset()
    yield
    dynamo.reset()


def test_compiled_model_compiles_once():
    net = make_net()
    counter = CompileCounter()
    compiled = torch.compile(net, backend=counter)
    opt = make_opt(net)
    train(compiled, opt, range(16))  # eight meta-steps
    assert counter.frame_count == 1
    assert [r.lr for r in opt.history] == pytest.approx(eager_lrs(16), rel=1e-6)
    assert any(r.status == "updated" for r in opt.history)


def test_compiled_inner_step_stops_recompiling():
    net = make_net()
    opt = make_opt(net)
    counter = CompileCounter()
    # Compile the inner optimizer's step, not TLR.step: the meta-step's bookkeeping and its one host sync
    # belong outside the graph.
    opt.optimizer.step = torch.compile(opt.optimizer.step, backend=counter)
    train(net, opt, range(16))
    after_warmup = counter.frame_count
    rates_seen = len({r.lr for r in opt.history})
    train(net, opt, range(16, 32))
    # The rate changed at the later meta-steps too, yet nothing was recompiled for it: a float lr becomes
    # a symbolic input after its first change (automatic dynamic), and TLR's buffers keep their identity.
    assert len({r.lr for r in opt.history}) > rates_seen
    assert counter.frame_count == after_warmup
    # The traced Adam rounds differently from the eager one; the gap grows slowly over 16 meta-steps.
    assert [r.lr for r in opt.history] == pytest.approx(eager_lrs(32), rel=1e-2)


def test_window_buffers_keep_their_identity():
    # A compiled inner step guards on the identity of every tensor in optimizer.state, TLR's buffers
    # included: rewriting them in place at meta-steps (rather than swapping them) keeps those guards
    # valid whatever the number of param groups.
    net = make_net()
    opt = make_opt(net)

    def buffer_ids() -> list[int]:
        return [id(opt.state[p][k]) for p in net.parameters() for k in ("tlr_snapshot", "tlr_prev_update")]

    train(net, opt, range(1))
    before = buffer_ids()
    train(net, opt, range(1, 6))
    assert len(opt.history) == 3  # odd: two swaps would have restored the identities
    assert buffer_ids() == before


@pytest.mark.slow
def test_inductor_compiled_model():
    net = make_net()
    compiled = torch.compile(net)
    opt = make_opt(net)
    train(compiled, opt, range(8))
    graphs = dynamo.utils.counters["stats"]["unique_graphs"]
    train(compiled, opt, range(8, 16))
    assert dynamo.utils.counters["stats"]["unique_graphs"] == graphs
    # Inductor's fused kernels round differently from eager.
    assert [r.lr for r in opt.history] == pytest.approx(eager_lrs(16), rel=1e-3)

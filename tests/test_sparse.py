"""Sparse gradients (``nn.Embedding(sparse=True)``): TLR reads weights, not gradients, so an inner optimizer
that takes sparse gradients (SGD, Adagrad, SparseAdam) trains under it as its dense twin does, as torch's
own ``test_rosenbrock_sparse`` asks of the bare optimizers."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import torch
from torch import nn

from ntlr import TLR

Inner = Callable[[list[nn.Parameter]], torch.optim.Optimizer]
INNERS: dict[str, Inner] = {
    "SGD": lambda params: torch.optim.SGD(params, lr=0.5),
    "SGD momentum": lambda params: torch.optim.SGD(params, lr=0.5, momentum=0.9),
    "Adagrad": lambda params: torch.optim.Adagrad(params, lr=0.1),
}


def _train(make: Inner, *, sparse: bool, steps: int = 60, rule: str = "robust") -> tuple[TLR, nn.Embedding]:
    torch.manual_seed(0)
    embedding = nn.Embedding(40, 6, sparse=sparse)
    target = torch.randn(40, 6)
    opt = TLR(make(list(embedding.parameters())), update_every=10, rule=rule)
    for _ in range(steps):
        rows = torch.randperm(40)[:8]  # distinct rows: the dense grad sums nothing twice
        opt.zero_grad()
        loss = (embedding(rows) - target[rows]).pow(2).sum()
        loss.backward()
        assert embedding.weight.grad is not None and embedding.weight.grad.is_sparse == sparse
        if opt.observes_loss:
            opt.observe_loss(loss)
        opt.step()
    return opt, embedding


@pytest.mark.parametrize("rule", ["robust", "paper"])
@pytest.mark.parametrize("inner", sorted(INNERS))
def test_sparse_gradients_train_as_their_dense_twin(inner: str, rule: str) -> None:
    sparse_opt, sparse = _train(INNERS[inner], sparse=True, rule=rule)
    dense_opt, dense = _train(INNERS[inner], sparse=False, rule=rule)
    # To float32 rounding: SGD's sparse momentum buffer adds in another order than the dense one.
    torch.testing.assert_close(sparse.weight, dense.weight, rtol=1e-4, atol=1e-4)
    assert sparse_opt.get_lr() == pytest.approx(dense_opt.get_lr(), rel=1e-4)
    assert [r.status for r in sparse_opt.history] == [r.status for r in dense_opt.history]
    assert len({r.factor for r in sparse_opt.history}) > 1  # the rate was trained: the check is not vacuous


def test_sparse_adam_trains_under_tlr() -> None:
    opt, embedding = _train(lambda params: torch.optim.SparseAdam(params, lr=0.05), sparse=True, steps=200)
    torch.manual_seed(0)  # the initial weights and the target _train drew
    initial = nn.Embedding(40, 6)
    target = torch.randn(40, 6)
    assert (embedding.weight - target).pow(2).mean() < 0.1 * (initial.weight - target).pow(2).mean()
    assert len(opt.history) >= 19

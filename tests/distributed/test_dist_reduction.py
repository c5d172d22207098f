"""The reduction rules of ntlr.distributed in one process (no collectives needed)."""

from __future__ import annotations

import pytest
import torch

from ntlr import TLR
from ntlr import distributed as ntlr_dist


def test_plain_tensor_without_group_is_replicated():
    assert ntlr_dist.reduction_key(torch.zeros(3), None) == ()


def test_local_tensor_of_plain_tensor_is_itself():
    t = torch.zeros(3)
    assert ntlr_dist.local_tensor(t) is t


def test_reduce_without_keys_keeps_the_local_sums():
    f64 = torch.float64
    sums = {(): {0: torch.tensor([1.0, 2.0, 5.0], dtype=f64), 2: torch.tensor([3.0, 4.0, 6.0], dtype=f64)}}
    out = ntlr_dist.reduce_partial_sums(sums, 3)
    assert out.tolist() == [[1.0, 2.0, 5.0], [0.0, 0.0, 0.0], [3.0, 4.0, 6.0]]
    two = {(): {1: torch.tensor([1.0, 2.0], dtype=f64)}}
    assert ntlr_dist.reduce_partial_sums(two, 2, width=2).tolist() == [[0.0, 0.0], [1.0, 2.0]]


def test_reduce_with_nothing_gives_zeros():
    assert ntlr_dist.reduce_partial_sums({}, 2).tolist() == [[0.0, 0.0, 0.0], [0.0, 0.0, 0.0]]


def test_buckets_keep_parameter_order():
    params = [torch.zeros(1), torch.zeros(2), torch.zeros(3)]
    assert ntlr_dist.group_by_key(params, None) == {(): [0, 1, 2]}


@pytest.mark.parametrize("bad", ["world", 0, object()])
def test_process_group_must_be_a_process_group(bad):
    model = torch.nn.Linear(2, 2)
    with pytest.raises(TypeError, match="process_group"):
        TLR(torch.optim.SGD(model.parameters(), lr=0.1), update_every=2, process_group=bad)


def test_process_group_none_is_the_default():
    model = torch.nn.Linear(2, 2)
    opt = TLR(torch.optim.SGD(model.parameters(), lr=0.1), update_every=2)
    assert opt.process_group is None

"""DDP, FSDP2, HSDP, FSDP1 and flat shards on 2 gloo processes: the trajectory of one process."""

from __future__ import annotations

import pytest
from dist_scenarios import META_STEPS, RULES, assert_same_trajectory, reference, reference_frozen, scenario

pytestmark = [pytest.mark.distributed, pytest.mark.parametrize("rule", RULES)]

INNERS = ["sgd", "adam"]
LAYOUTS = ["ddp", "fsdp2", "hsdp_2x1", "hsdp_1x2", "fsdp1", "flat"]


@pytest.mark.parametrize("inner", INNERS)
@pytest.mark.parametrize("layout", LAYOUTS)
def test_ranks_agree_bitwise(dist_results, layout, inner, rule):
    rank0, rank1 = scenario(dist_results, f"{layout}_{inner}_{rule}")
    for key in ("a", "b", "lr", "status"):
        assert rank0[key] == rank1[key]
    assert len(rank0["lr"]) == META_STEPS


@pytest.mark.parametrize("inner", INNERS)
@pytest.mark.parametrize("layout", LAYOUTS)
def test_matches_single_process(dist_results, layout, inner, rule):
    want = reference(inner, rule)
    # The trajectory must actually move the rate, or agreeing on it would prove little.
    assert "updated" in want["status"]
    for got in scenario(dist_results, f"{layout}_{inner}_{rule}"):
        assert_same_trajectory(got, want)


@pytest.mark.parametrize("inner", INNERS)
@pytest.mark.parametrize("per_layer", [False, True], ids=["group", "layers"])
def test_sharded_and_replicated_parameters_together(dist_results, per_layer, inner, rule):
    # Two reduction keys (the FSDP2 shard dim, none): summed within one group, or one per group.
    want = reference(inner, rule, per_layer=per_layer)
    assert len(set(want["group"])) == (2 if per_layer else 1)
    rank0, rank1 = scenario(dist_results, f"mixed_{'layers' if per_layer else 'group'}_{inner}_{rule}")
    assert rank0["lr"] == rank1["lr"]
    for got in (rank0, rank1):
        assert_same_trajectory(got, want)


@pytest.mark.parametrize("inner", INNERS)
def test_flat_shards_need_the_process_group(dist_results, inner, rule):
    # Without process_group each rank trains its rate on its own half of the weights: ranks disagree
    # and neither matches the single-process run. This is what the reduction fixes.
    rank0, rank1 = scenario(dist_results, f"flat_noreduce_{inner}_{rule}")
    want = reference(inner, rule)
    assert rank0["a"] != rank1["a"]
    assert any(abs(x - y) > 1e-3 * abs(y) for x, y in zip(rank0["a"], want["a"]))


@pytest.mark.parametrize("inner", INNERS)
@pytest.mark.parametrize(
    ("layout", "placements"),
    [
        ("fsdp2", ["Shard"]),
        ("hsdp_2x1", ["Replicate", "Shard"]),
        ("hsdp_1x2", ["Replicate", "Shard"]),
    ],
)
def test_window_buffers_stay_dtensors(dist_results, layout, placements, inner, rule):
    for result in scenario(dist_results, f"{layout}_{inner}_{rule}"):
        assert result["placements"] == placements
        assert result["buffer_types"] == ["DTensor"]


def test_a_frozen_nonfinite_parameter_sharded_is_left_out_on_every_rank(dist_results, rule):
    # The run beside a frozen NaN parameter, sharded by FSDP2, takes the trajectory of one process beside a
    # frozen zero one: the NaN windows are summed again without it on both ranks (no rank waits alone).
    want = reference_frozen(rule, 0.0)
    assert "updated" in want["status"]
    rank0, rank1 = scenario(dist_results, f"fsdp2_frozen_{rule}")
    assert rank0["lr"] == rank1["lr"]
    for got in (rank0, rank1):
        got = {**got, "params": {k: v for k, v in got["params"].items() if k != "frozen"}}
        want_params = {k: v for k, v in want["params"].items() if k != "frozen"}
        assert_same_trajectory(got, {**want, "params": want_params})

"""Distributed checkpointing (DCP) of an FSDP2 model trained with TLR, on 2 gloo processes."""

from __future__ import annotations

import pytest
import torch
from dist_scenarios import META_STEPS, RULES, assert_same_trajectory, reference, scenario, split, window

pytestmark = [pytest.mark.distributed, pytest.mark.parametrize("rule", RULES)]

CASES = [(inner, layout) for inner in ("sgd", "adam") for layout in ("nested", "flat")]
# The checkpoint is saved mid-window: 3 meta-steps done, one counted step into the fourth window.


@pytest.mark.parametrize(("inner", "layout"), CASES)
def test_resume_continues_the_uninterrupted_trajectory(dist_results, inner, layout, rule):
    for result in scenario(dist_results, f"dcp_{inner}_{layout}_{rule}"):
        assert result["saved_history"] == split(inner, rule) // window(inner, rule) == 3
        uninterrupted = result["uninterrupted"]
        tail = {k: v[result["saved_history"] :] for k, v in uninterrupted.items() if k != "params"}
        assert_same_trajectory(
            {**result["resumed"], "params": result["resumed"]["params"]},
            {**tail, "params": uninterrupted["params"]},
            rel=1e-6,
        )
        assert len(result["resumed"]["lr"]) == META_STEPS - 3


@pytest.mark.parametrize(("inner", "layout"), CASES)
def test_uninterrupted_run_matches_single_process(dist_results, inner, layout, rule):
    for result in scenario(dist_results, f"dcp_{inner}_{layout}_{rule}"):
        assert_same_trajectory(result["uninterrupted"], reference(inner, rule))


@pytest.mark.parametrize(("inner", "layout"), CASES)
def test_state_restored_as_dtensors(dist_results, inner, layout, rule):
    for result in scenario(dist_results, f"dcp_{inner}_{layout}_{rule}"):
        assert result["is_dtensor"]
        assert result["buffer_types"] == ["DTensor"]
        for group, saved in zip(result["restored_groups"], result["saved_groups"], strict=True):
            assert group["tlr_steps"] == split(inner, rule)
            assert group["tlr_window_steps"] == 1
            assert group["tlr_meta_steps"] == 3
            # Every entry comes back: the rule's state and the window's loss sums too.
            assert set(group) == set(saved)
            for key, value in saved.items():
                if isinstance(value, torch.Tensor):
                    assert torch.equal(group[key].cpu(), value.cpu()), key
                elif key == "tlr_rule_state":  # [field, value] pairs; NaN marks a field not yet measured
                    assert _same_pairs(group[key], value)
                else:
                    assert group[key] == value, key
            if rule == "robust":
                assert saved["tlr_rule_state"] and saved["tlr_prev_loss"] is not None
        # DCP's initialising step on a fresh optimizer (lr 0, zero grads) moved nothing, counted nothing.
        assert result["init_ok"]


def _same_pairs(got: list, want: list) -> bool:
    return len(got) == len(want) and all(
        k == k2 and (v == v2 or (isinstance(v, float) and v != v and v2 != v2))
        for (k, v), (k2, v2) in zip(got, want)
    )

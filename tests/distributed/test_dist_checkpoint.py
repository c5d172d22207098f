"""Distributed checkpointing (DCP) of an FSDP2 model trained with TLR, on 2 gloo processes."""

from __future__ import annotations

import pytest
from dist_scenarios import STEPS, UPDATE_EVERY, assert_same_trajectory, reference, scenario

pytestmark = pytest.mark.distributed

CASES = [(inner, layout) for inner in ("sgd", "adam") for layout in ("nested", "flat")]
SPLIT = 10  # mid-window: 3 meta-steps done, one counted step into the fourth window


@pytest.mark.parametrize(("inner", "layout"), CASES)
def test_resume_continues_the_uninterrupted_trajectory(dist_results, inner, layout):
    for result in scenario(dist_results, f"dcp_{inner}_{layout}"):
        assert result["saved_history"] == SPLIT // UPDATE_EVERY
        uninterrupted = result["uninterrupted"]
        tail = {k: v[result["saved_history"] :] for k, v in uninterrupted.items() if k != "params"}
        assert_same_trajectory({**result["resumed"], "params": result["resumed"]["params"]},
                               {**tail, "params": uninterrupted["params"]}, rel=1e-6)
        assert len(result["resumed"]["lr"]) == STEPS // UPDATE_EVERY - SPLIT // UPDATE_EVERY


@pytest.mark.parametrize(("inner", "layout"), CASES)
def test_uninterrupted_run_matches_single_process(dist_results, inner, layout):
    for result in scenario(dist_results, f"dcp_{inner}_{layout}"):
        assert_same_trajectory(result["uninterrupted"], reference(inner))


@pytest.mark.parametrize(("inner", "layout"), CASES)
def test_state_restored_as_dtensors(dist_results, inner, layout):
    for result in scenario(dist_results, f"dcp_{inner}_{layout}"):
        assert result["is_dtensor"]
        assert result["buffer_types"] == ["DTensor"]
        for group in result["restored_groups"]:
            assert group["tlr_steps"] == SPLIT
            assert group["tlr_window_steps"] == SPLIT % UPDATE_EVERY
            assert group["tlr_meta_steps"] == SPLIT // UPDATE_EVERY
        # DCP's initialising step on a fresh optimizer (lr 0, zero grads) moved nothing, counted nothing.
        assert result["init_ok"]

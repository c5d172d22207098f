"""One 2-process gloo job runs every distributed scenario; the tests read its per-rank results.

Starting two Python processes that import torch costs most of the time here, so the job is spawned
once per session and each scenario records its result or its traceback for the tests to judge.
"""

from __future__ import annotations

import socket
import time
from pathlib import Path
from typing import Any

import pytest
import torch

WORLD = 2
DEADLINE_S = 300


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="session")
def dist_results(tmp_path_factory: pytest.TempPathFactory) -> list[dict[str, Any]]:
    """``[rank0_results, rank1_results]``: scenario name → trajectory (or ``{"error": traceback}``)."""
    if not (torch.distributed.is_available() and torch.distributed.is_gloo_available()):
        pytest.skip("torch.distributed with the gloo backend is not available")
    import dist_scenarios
    import torch.multiprocessing as mp

    workdir = tmp_path_factory.mktemp("dist")
    context = mp.start_processes(
        dist_scenarios.worker,
        args=(WORLD, _free_port(), str(workdir)),
        nprocs=WORLD,
        join=False,
        start_method="spawn",
    )
    deadline = time.monotonic() + DEADLINE_S
    while not context.join(timeout=1.0):
        if time.monotonic() > deadline:
            for process in context.processes:
                process.terminate()
            pytest.fail(f"the {WORLD}-process job did not finish in {DEADLINE_S} s")
    results = []
    for rank in range(WORLD):
        path = Path(workdir) / f"rank{rank}.pt"
        results.append(torch.load(path, weights_only=False))
    return results

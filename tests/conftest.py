"""Test-wide setup: one torch thread (CI has 2 cores) and the local data folder when there is one."""

import dataclasses
import os
from pathlib import Path

import pytest
import torch

torch.set_num_threads(1)

# The development machines and CI keep the real data sets beside the checkout; users point NTLR_DATA_DIR
# at theirs. Nothing in the library knows about this folder.
_SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
if "NTLR_DATA_DIR" not in os.environ and _SHARED_DATA.is_dir():
    os.environ["NTLR_DATA_DIR"] = str(_SHARED_DATA)


class HostReads:
    """Counts Tensor → host conversions (``item``, ``tolist``, ``float(t)``, ``bool(t)``, ...): on an
    accelerator each is a host sync, so on the CPU their count stands in for the syncs."""

    NAMES = ("tolist", "item", "__float__", "__int__", "__bool__", "__index__")

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.calls = 0
        for name in self.NAMES:
            original = getattr(torch.Tensor, name)

            def counted(*args, _original=original, **kwargs):
                self.calls += 1
                return _original(*args, **kwargs)

            monkeypatch.setattr(torch.Tensor, name, counted)


@pytest.fixture
def host_reads(monkeypatch: pytest.MonkeyPatch):
    """A factory: ``host_reads()`` starts counting host reads from that moment on."""
    return lambda: HostReads(monkeypatch)


@pytest.fixture
def unreachable_mnist(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Empty data and cache folders under ``tmp_path`` (returned), MNIST's mirrors unreachable (fast, no
    network), and no MNIST that an earlier test loaded in the sweep's cache."""
    from ntlr_bench import sweep as sweep_module
    from ntlr_bench.data import DATASETS
    from ntlr_bench.data.download import RemoteFile

    monkeypatch.setenv("NTLR_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("NTLR_CACHE_DIR", str(tmp_path / "cache"))
    spec = DATASETS["mnist"]
    unreachable = tuple(
        RemoteFile(r.filename, (f"file:///nonexistent/{r.filename}",), r.md5) for r in spec.remote
    )
    monkeypatch.setitem(DATASETS, "mnist", dataclasses.replace(spec, remote=unreachable))
    monkeypatch.setattr(sweep_module, "_DATA_CACHE", {})
    return tmp_path

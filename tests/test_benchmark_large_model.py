"""benchmarks/large_model.py: the parameter count formula, and tiny runs of the whole benchmark (its table's
rows, a mode TLR rejects skipped with a note, the low-memory and no-sync modes each against its own bare
AdamW row), and command lines shown without folders."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from types import ModuleType

import pytest
import torch

from benchmark_scripts import load_benchmark


def _load() -> ModuleType:
    return load_benchmark("large_model")


@pytest.fixture(scope="module")
def lm() -> Iterator[ModuleType]:
    module = _load()
    yield module
    sys.modules.pop("bench_large_model", None)


def test_gpt2_small_count(lm: ModuleType) -> None:
    assert lm.param_count(lm.GPT2_SMALL) == 124_439_808  # GPT-2 small's published count (tied head)
    untied = lm.GPTConfig(tied=False)
    assert lm.param_count(untied) == 124_439_808 + 50257 * 768


@pytest.mark.parametrize("tied", [True, False])
def test_param_count_formula_matches_the_model(lm: ModuleType, tied: bool) -> None:
    for cfg in (lm.GPTConfig(2, 32, 4, 97, 16, tied), lm.GPTConfig(1, 24, 3, 50, 8, tied)):
        model = lm.build_model(cfg)
        assert sum(p.numel() for p in model.parameters()) == lm.param_count(cfg)
    quick = lm.QUICK if tied else lm.GPTConfig(**{**vars(lm.QUICK), "tied": False})
    with torch.device("meta"):  # the --quick model's shape, without allocating it
        model = lm.GPT(quick)
    assert sum(p.numel() for p in model.parameters()) == lm.param_count(quick)
    assert (quick.n_layer, quick.d_model) == (4, 256)


def test_tiny_run_table_rows(lm: ModuleType, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(lm.MODES, "bogus", {"no_such_keyword": 1})
    cfg = lm.GPTConfig(n_layer=2, d_model=32, n_head=4, vocab=97, n_ctx=16)
    args = lm.parse_args(["--quick", "--steps", "3", "--modes", "exact,bogus", "--meta-windows", "1"])
    logged: list[str] = []
    results = lm.run_benchmark(
        cfg,
        modes=args.modes,
        steps=args.steps,
        k=args.k,
        batch=1,
        seq=8,
        meta_k=args.meta_k,
        meta_windows=args.meta_windows,
        rss=False,
        log=logged.append,
    )
    assert results.numel == lm.param_count(cfg)
    assert [row.name for row in results.rows] == ["AdamW", "TLR exact"]
    assert any("'bogus' skipped" in line for line in logged) and results.notes
    bare, tlr = results.rows
    assert len(bare.train.plain) == len(tlr.train.plain) == 3  # K = 100: no window closes
    assert bare.state_inner / bare.numel == pytest.approx(8.0, abs=0.01)  # exp_avg + exp_avg_sq (+ step)
    assert tlr.state_tlr / tlr.numel == pytest.approx(8.0, abs=0.01)  # tlr_snapshot + tlr_prev_update
    assert len(tlr.opt.closing) == 1 and tlr.statuses  # one window of optimizer steps, its meta-step timed

    table = lm.markdown_table(results).splitlines()
    assert len(table) == 4
    assert table[0].startswith("| variant |") and set(table[1]) == {"|", "-"}
    assert table[0].count("|") == table[1].count("|") == table[2].count("|") == table[3].count("|")
    assert table[2].startswith("| AdamW |") and table[3].startswith("| TLR exact |")
    assert "TLR exact" in lm.details(results)


def test_rss_growth_in_process(lm: ModuleType) -> None:
    cfg = lm.GPTConfig(n_layer=1, d_model=16, n_head=2, vocab=31, n_ctx=8)
    probe = lm.RssProbe(cfg, "exact", meta_k=10, steps=10, batch=1, seq=4)
    assert lm.RssProbe.from_json(probe.to_json()) == probe
    result = lm.rss_growth(probe)
    assert result["meta_steps"] == 1
    assert 0 <= result["state_tlr"] - 2 * 4 * lm.param_count(cfg) <= 64  # + the window loss sums
    assert result["maxrss_after"] >= result["maxrss_before"] > 0


def test_rss_in_a_fresh_process_runs_the_probe_it_is_given(lm: ModuleType) -> None:
    cfg = lm.GPTConfig(n_layer=1, d_model=16, n_head=2, vocab=31, n_ctx=8)
    bare = lm.rss_in_subprocess(lm.RssProbe(cfg, None, meta_k=5, steps=3, batch=1, seq=4), threads=1)
    tlr = lm.rss_in_subprocess(lm.RssProbe(cfg, "exact", meta_k=10, steps=10, batch=1, seq=4), threads=1)
    assert (bare["steps"], bare["state_tlr"], bare["meta_steps"]) == (3, 0, 0)
    assert tlr["steps"] == 10 and tlr["meta_steps"] == 1 and tlr["state_tlr"] > 0


def test_modes_with_inner_kwargs_run_against_their_own_bare_row(lm: ModuleType) -> None:
    """The low-memory and no-sync modes: sketch=8 keeps 1 B/param of window buffers; no-sync (the paper's
    rule on the device, a tensor rate) runs on a fused AdamW and is compared with a bare fused AdamW."""
    assert lm.mode_kwargs(lm.MODES["no-sync"]) == ({"rule": "paper", "host_sync": False}, {"fused": True})
    assert lm.mode_kwargs({"sketch": 8}) == ({"sketch": 8}, {})  # a plain dict: TLR's keywords alone
    cfg = lm.GPTConfig(n_layer=2, d_model=32, n_head=4, vocab=96, n_ctx=16)
    results = lm.run_benchmark(
        cfg,
        modes=["exact", "sketch=8", "no-sync"],
        steps=2,
        k=100,
        batch=1,
        seq=8,
        meta_k=10,
        meta_windows=1,
        rss=False,
        log=lambda line: None,
    )
    names = [row.name for row in results.rows]
    assert names == ["AdamW", "TLR exact", "TLR sketch=8", "AdamW fused", "TLR no-sync"]
    rows = dict(zip(names, results.rows, strict=True))
    assert [rows[n].against for n in names] == [None, "AdamW", "AdamW", None, "AdamW fused"]
    assert rows["TLR sketch=8"].state_tlr / results.numel == pytest.approx(1.0, abs=0.05)
    assert rows["TLR no-sync"].state_tlr / results.numel == pytest.approx(8.0, abs=0.01)
    for name in ("TLR exact", "TLR sketch=8", "TLR no-sync"):
        assert len(rows[name].opt.closing) == 1 and rows[name].statuses  # its window closed and was timed
    table = lm.markdown_table(results).splitlines()
    assert len(table) == 2 + len(names)
    assert table[-1].startswith("| TLR no-sync | AdamW fused |")


def test_command_lines_are_shown_without_folders(lm: ModuleType) -> None:
    line = lm.without_folders("/usr/bin/python -m ntlr_bench run --out /work/runs/x/ --lr 0.1")
    assert line == "python -m ntlr_bench run --out x --lr 0.1"

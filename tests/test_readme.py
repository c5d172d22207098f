"""The README's install and data instructions say what the code does."""

import re
from pathlib import Path

from ntlr_bench.cli import build_parser
from ntlr_bench.data import DATASETS

README = (Path(__file__).resolve().parents[1] / "README.md").read_text(encoding="utf-8")


def test_the_first_two_commands_stay_as_they_are():
    block = README.split("```bash\n", 1)[1].split("```", 1)[0].splitlines()
    assert block[:2] == [
        'pip install torch==2.13.0 && pip install -e ".[bench]" && ntlr-bench demo',
        'pip install torch==2.13.0 && pip install -e ".[bench,test,frameworks]" '
        "&& ruff check . && mypy && python -m pytest",
    ]


def test_the_second_command_ends_in_what_ci_runs():
    second = README.split("```bash\n", 1)[1].splitlines()[1]
    ci = (Path(__file__).resolve().parents[1] / ".ci" / "run").read_text(encoding="utf-8").splitlines()
    test_command = [line for line in ci if line.strip() and not line.lstrip().startswith("#")][-1]
    assert test_command == "ruff check . && mypy && python -m pytest"
    assert second.endswith(" && " + test_command)


def test_the_cpu_only_torch_wheel_is_named():
    assert "pip install torch==2.13.0 --index-url https://download.pytorch.org/whl/cpu" in README


def test_the_offline_mnist_paragraph_names_the_files_and_every_place_looked():
    text = " ".join(README.split())
    assert "ntlr-bench run --workload mnist_mlp" in README
    for remote in DATASETS["mnist"].remote:
        assert f"`{remote.filename}`" in text
    for place in (
        "--data-dir",
        "NTLR_DATA_DIR",
        "~/.cache/ntlr/mnist/",
        "NTLR_CACHE_DIR",
        "ntlr-bench download mnist",
    ):
        assert place in text, place


def test_every_ntlr_bench_command_in_the_readme_exists():
    parser = build_parser()
    commands = set(parser._subparsers._group_actions[0].choices)
    used = set(re.findall(r"ntlr-bench ([a-z]+)", README))
    assert used and used <= commands, used - commands


def test_the_quickstart_runs_as_written() -> None:
    import torch
    from torch.utils.data import DataLoader, TensorDataset

    block = README.split("## Quickstart", 1)[1].split("```python", 1)[1].split("```", 1)[0]
    gen = torch.Generator().manual_seed(0)
    images = torch.randn(64, 1, 28, 28, generator=gen)
    labels = torch.randint(0, 10, (64,), generator=gen)
    # The block as a user pastes it, on a small stand-in for their loader and a shorter budget.
    code = block.replace("epochs = 20", "epochs = 2")
    assert code != block, "the quickstart no longer sets epochs = 20: update this test"
    scope = {"train_loader": DataLoader(TensorDataset(images, labels), batch_size=16)}
    exec(compile(code, "README.md#quickstart", "exec"), scope)
    opt = scope["opt"]
    assert opt.total_steps == 8 and opt.get_lr() == [0.0]  # decayed to 0 at the end of the budget
    assert len(opt.history) >= 1


# -- the results table: every number is the long tier's committed records, at the digits it shows -----------
_LONG_TIER = Path(__file__).resolve().parents[1] / "docs" / "experiments" / "gauntlet_long" / "records"
_SGD_M08 = "sgd (momentum=0.8, weight_decay=0.0005)"
# A row's workload, TLR's inner optimizer (its scoreboard label) and the same inner optimizer as a peer.
_ROWS = {
    "MNIST, SGD m0.8 + wd 5e-4 (the paper's)": ("mnist_mlp", "SGD m0.8 wd", _SGD_M08),
    "Fashion-MNIST, SGD m0.8 + wd 5e-4": ("fashion_mnist_mlp", "SGD m0.8 wd", _SGD_M08),
    "MNIST, SGD m0.9, no wd": ("mnist_mlp", "SGD m0.9", "sgd"),
    "Fashion-MNIST, SGD m0.9, no wd": ("fashion_mnist_mlp", "SGD m0.9", "sgd"),
    "MNIST, AdamW": ("mnist_mlp", "AdamW", "adamw"),
    "Fashion-MNIST, AdamW": ("fashion_mnist_mlp", "AdamW", "adamw"),
    "character transformer, AdamW (nats)": ("char_transformer", "AdamW", "adamw"),
}
_PEER_NAMES = {
    "Schedule-Free SGD": "schedulefree_sgd",
    "Schedule-Free AdamW": "schedulefree_adamw",
    "DoG": "dog",
}


def _shown(text: str) -> tuple[float, float]:
    """A table number and half a unit of its last shown digit (``0.0092``: 5e-5; ``3.3e-4``: 5e-6)."""
    text = text.strip().strip("*")
    mantissa, _, exponent = text.partition("e")
    decimals = len(mantissa.partition(".")[2])
    return float(text), 0.5 * 10.0 ** (int(exponent or 0) - decimals)


def _results_rows() -> dict[str, list[str]]:
    section = README.split("## What to expect (measured)", 1)[1]
    rows = {}
    for line in section.splitlines():
        if line.startswith("|") and not line.startswith(("| workload", "|---")):
            cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
            rows[cells[0]] = cells[1:]
        elif rows and not line.startswith("|"):
            break
    return rows


def test_the_results_table_is_what_the_long_tiers_records_say():
    from ntlr_bench.records import read_record
    from ntlr_bench.scoreboard import CellKey, score

    board = score(read_record(path) for path in sorted(_LONG_TIER.glob("*.json.gz")))
    keys = {key.workload: key for key in board.workloads}
    rows = _results_rows()
    assert set(rows) == set(_ROWS)
    checked = 0
    for label, (workload, inner, peer) in _ROWS.items():
        key: CellKey = keys[workload]
        scores = board.scores[key]
        default, budget, constant, paper, peers = rows[label]
        expected = [
            (default, scores[f"TLR-robust {inner}"].median),
            (budget, scores[f"TLR-robust+anneal {inner}"].median),
            (constant, scores[peer].best[0]),
        ]
        if paper:
            expected.append((paper, scores[f"TLR-paper {inner}"].median))
        for name, value in re.findall(r"([A-Za-z][A-Za-z -]*?) \**([0-9.]+(?:e-?[0-9]+)?)\**", peers):
            name = name.strip().strip("*")
            if name == "Mechanic":
                base = "mechanic (momentum=0.8, weight_decay=0.0005)" if "m0.8" in inner else "mechanic"
            else:
                base = _PEER_NAMES[name]
            at = board.at_default(key, base)
            assert at is not None, (label, name)
            expected.append((value, at[0]))
        for text, value in expected:
            shown, half_unit = _shown(text)
            assert abs(shown - value) <= half_unit * (1 + 1e-9), (label, text, value)
            checked += 1
    assert checked >= 30

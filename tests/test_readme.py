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

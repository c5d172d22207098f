"""What the command line prints about itself, and the names of the files it writes."""

import re

import pytest

from ntlr_bench.budgets import BUDGETS
from ntlr_bench.cli import build_parser, plain_text
from ntlr_bench.experiments import EXPERIMENTS
from ntlr_bench.records import RunConfig
from ntlr_bench.workloads import WORKLOADS

MARKUP = re.compile(r"``|:[a-z]+:`")


def _parsers():
    parser = build_parser()
    yield "ntlr-bench", parser
    for action in parser._subparsers._group_actions:
        yield from ((f"ntlr-bench {name}", sub) for name, sub in action.choices.items())


def test_help_is_plain_text_not_restructuredtext():
    for name, parser in _parsers():
        text = parser.format_help()
        assert not MARKUP.search(text), f"{name} --help shows markup:\n{text}"
    assert "ntlr-bench: run, sweep and report" in build_parser().format_help()


def test_plain_text_unwraps_literals_and_roles():
    assert plain_text("``ntlr-bench`` calls :func:`run` on ``x``.") == "ntlr-bench calls run on x."


def test_a_run_id_names_the_batch_size_the_run_trains_with():
    run_id = RunConfig("digits_mlp", "sgd", 0.1).run_id
    assert f"-bs{WORKLOADS['digits_mlp'].batch_size}-" in run_id and "None" not in run_id
    # The hash still tells "the workload's batch size" from the same size given explicitly.
    assert run_id != RunConfig("digits_mlp", "sgd", 0.1, batch_size=WORKLOADS["digits_mlp"].batch_size).run_id


def test_run_ids_of_configs_with_a_batch_size_are_unchanged():
    # Ids written by earlier versions, for configs that gave a batch size: resumed sweeps find them.
    assert (
        RunConfig("digits_mlp", "sgd", 0.1, batch_size=128).run_id
        == "digits_mlp-sgd-lr0.1-bs128-s0-0b53c46797fa"
    )
    config = RunConfig(
        "digits_mlp", "tlr_sgd", 0.01, batch_size=64, seed=2, overrides={"p": 0.2, "gamma": 0.33}
    )
    assert config.run_id == "digits_mlp-tlr_sgd-lr0.01-bs64-s2-c1f1975762c3"


@pytest.mark.parametrize("budget", BUDGETS)
def test_no_record_file_name_says_none(budget):
    for experiment in EXPERIMENTS.values():
        for config in experiment.expand(budget):
            assert "None" not in config.run_id, config


def test_the_cli_run_writes_its_record_under_the_workloads_batch_size(tmp_path, capsys):
    from ntlr_bench.cli import main

    argv = ["run", "--workload", "digits_mlp", "--optimizer", "sgd", "--lr", "0.1", "--budget", "smoke"]
    assert main([*argv, "--out", str(tmp_path), "--no-progress"]) == 0
    (path,) = (tmp_path / "single").glob("*.json")
    assert f"-bs{WORKLOADS['digits_mlp'].batch_size}-" in path.name and "None" not in path.name

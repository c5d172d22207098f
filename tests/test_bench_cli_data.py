"""What a command-line user sees when data is missing, truncated or fails its checksum."""

import dataclasses
import gzip
import hashlib
import struct

import numpy as np
import pytest

from ntlr_bench.cli import main
from ntlr_bench.data import DATASETS, DataNotFoundError, load
from ntlr_bench.data.download import RemoteFile

RUN = ["run", "--workload", "mnist_mlp", "--optimizer", "sgd", "--lr", "0.1", "--budget", "smoke"]
IDX = {
    "train-images-idx3-ubyte.gz": (12, 28, 28),
    "train-labels-idx1-ubyte.gz": (12,),
    "t10k-images-idx3-ubyte.gz": (6, 28, 28),
    "t10k-labels-idx1-ubyte.gz": (6,),
}


def write_mnist(folder):
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for name, shape in IDX.items():
        array = rng.integers(0, 10 if len(shape) == 1 else 256, size=shape, dtype=np.uint8)
        header = struct.pack(">BBBB", 0, 0, 0x08, array.ndim) + struct.pack(f">{array.ndim}I", *shape)
        (folder / name).write_bytes(gzip.compress(header + array.tobytes()))


def _error(capsys):
    captured = capsys.readouterr()
    assert "Traceback" not in captured.err + captured.out
    return captured.err


def test_missing_data_tells_a_cli_user_the_cli_way(unreachable_mnist, capsys):
    assert main([*RUN, "--out", str(unreachable_mnist / "runs"), "--no-progress"]) == 2
    err = _error(capsys)
    assert err.startswith("ntlr-bench: error: data set 'mnist'")
    assert "--data-dir" in err and "ntlr-bench download mnist" in err
    assert "data_dir=" not in err and "download=True" not in err


def test_missing_data_tells_a_python_caller_the_python_way(unreachable_mnist):
    with pytest.raises(DataNotFoundError) as caught:
        load("mnist")
    message = str(caught.value)
    assert "data_dir=" in message and "load('mnist', download=True)" in message
    assert "--data-dir" not in message and "ntlr-bench" not in message


def test_a_truncated_file_is_one_message_not_a_traceback(unreachable_mnist, capsys):
    folder = unreachable_mnist / "data" / "mnist"
    write_mnist(folder)
    path = folder / "train-images-idx3-ubyte.gz"
    path.write_bytes(path.read_bytes()[:40])
    assert main([*RUN, "--out", str(unreachable_mnist / "runs"), "--no-progress"]) == 2
    err = _error(capsys)
    assert err.startswith("ntlr-bench: error:") and "truncated" in err and str(path) in err
    assert len(err.strip().splitlines()) == 1


def test_a_checksum_mismatch_is_one_message_not_a_traceback(unreachable_mnist, capsys):
    folder = unreachable_mnist / "data" / "mnist"
    write_mnist(folder)
    (folder / "SHA256SUMS").write_text("".join(f"{'0' * 64}  {name}\n" for name in IDX))
    assert main([*RUN, "--out", str(unreachable_mnist / "runs"), "--no-progress"]) == 2
    err = _error(capsys)
    assert err.startswith("ntlr-bench: error:") and "SHA256 mismatch" in err


def test_a_sweep_reports_a_missing_data_set_once_on_stderr(unreachable_mnist, capsys, monkeypatch):
    import ntlr_bench.data as data_package
    from ntlr_bench.experiments import Experiment, Grid

    grid = Grid(("mnist_mlp",), ("sgd",), (0.1, 0.01, 0.001))
    monkeypatch.setattr(
        "ntlr_bench.experiments.EXPERIMENTS", {"tiny": Experiment("tiny", "", "", {"smoke": (grid,)})}
    )
    calls = []
    real_locate = data_package.locate
    monkeypatch.setattr(data_package, "locate", lambda *a, **k: (calls.append(a), real_locate(*a, **k))[1])
    code = main(
        ["sweep", "tiny", "--budget", "smoke", "--out", str(unreachable_mnist / "runs"), "--no-progress"]
    )
    captured = capsys.readouterr()
    assert code == 1 and "Traceback" not in captured.err + captured.out
    assert captured.err.count("was not found") == 1 and "ntlr-bench download mnist" in captured.err
    assert len(calls) == 1  # the data set is not looked for again for the other two runs
    assert "0 runs done, 0 already finished, 3 failed" in captured.out


def test_the_download_command_fetches_into_the_cache(unreachable_mnist, capsys, monkeypatch):
    published = unreachable_mnist / "published"
    write_mnist(published)
    remote = tuple(
        RemoteFile(p.name, (p.as_uri(),), sha256=hashlib.sha256(p.read_bytes()).hexdigest())
        for p in sorted(published.iterdir())
    )
    monkeypatch.setitem(DATASETS, "mnist", dataclasses.replace(DATASETS["mnist"], remote=remote))
    assert main(["download", "mnist"]) == 0
    assert str(unreachable_mnist / "cache" / "mnist") in capsys.readouterr().out
    assert (unreachable_mnist / "cache" / "mnist" / "SHA256SUMS").is_file()
    assert main(["download", "svhn"]) == 2 and "dataset must be one of" in capsys.readouterr().err

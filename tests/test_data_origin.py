"""Where a run's data came from, as a record keeps it: words that hold on another machine, never a path."""

from __future__ import annotations

import pytest

from ntlr_bench.data import cache_root
from ntlr_bench.data.origin import describe_origin, is_path

LOCAL = "a local copy"
SUMS = "verified against the sha256 sums beside"
MNIST_SUMS = [f"{name} (sha256)" for name in ("t10k-images-idx3-ubyte.gz", "train-images-idx3-ubyte.gz")]


@pytest.mark.parametrize(
    ("dataset", "source", "checksums", "expected"),
    [
        ("digits", "sklearn.datasets.load_digits", None, "sklearn.datasets.load_digits"),
        ("fashion_mnist", "/usr/share/datasets/fashion-mnist", [], "Debian's dataset-fashion-mnist package"),
        (
            "mnist",
            "/srv/data/mnist",
            MNIST_SUMS,
            f"{LOCAL}, 2 files {SUMS} them",
        ),
        (
            "mnist",
            "/srv/data/mnist",
            MNIST_SUMS[:1],
            f"{LOCAL}, 1 file {SUMS} it",
        ),
        ("mnist", "/srv/data/mnist", [], "a local copy, no checksum file beside it"),
        ("mnist", "/srv/data/mnist", None, "a local copy, checksums not recorded"),
        (
            "cifar10",
            "/srv/c/cifar10-jpg.tar.gz",
            None,
            f"{LOCAL} of cifar10-jpg.tar.gz, checksums not recorded",
        ),
        ("mnist", "", None, "source not recorded"),
    ],
)
def test_a_source_is_described_without_its_folder(dataset, source, checksums, expected):
    described = describe_origin(dataset, source, checksums)
    assert described == expected and not is_path(described)


def test_the_download_cache_is_named_as_such(tmp_path, monkeypatch):
    monkeypatch.setenv("NTLR_CACHE_DIR", str(tmp_path / "cache"))
    folder = cache_root() / "mnist"
    assert describe_origin("mnist", str(folder), MNIST_SUMS).startswith(
        "the download cache, 2 files verified"
    )


@pytest.mark.parametrize("source", ["/a/b", "~/data", "C:\\data\\mnist"])
def test_paths_of_any_machine_are_paths(source):
    assert is_path(source)

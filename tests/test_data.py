"""The data layer: every format on tiny generated files, resolution order, checksums, errors; real data
when it is present (skipped otherwise)."""

from __future__ import annotations

import dataclasses
import gzip
import hashlib
import io
import os
import pickle
import struct
import tarfile
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from ntlr_bench.data import (
    BOS,
    DATASETS,
    EOS,
    PAD,
    SPECIALS,
    UNK,
    ArrayData,
    DataError,
    DataNotFoundError,
    ImageFolderData,
    TranslationData,
    load,
    tokenize,
)
from ntlr_bench.data import download as download_module
from ntlr_bench.data.ding import parse_ding
from ntlr_bench.data.download import RemoteFile

PIL = pytest.importorskip("PIL")
from PIL import Image  # noqa: E402

IDX_NAMES = {
    "train": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"),
    "test": ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"),
}


# --------------------------------------------------------------------------- helpers


@pytest.fixture
def isolated(tmp_path, monkeypatch):
    """Empty NTLR_DATA_DIR and cache, no system folders: only what a test creates exists."""
    data, cache = tmp_path / "env_data", tmp_path / "cache"
    data.mkdir()
    monkeypatch.setenv("NTLR_DATA_DIR", str(data))
    monkeypatch.setenv("NTLR_CACHE_DIR", str(cache))
    for name, spec in list(DATASETS.items()):
        monkeypatch.setitem(DATASETS, name, dataclasses.replace(spec, system_paths=()))
    return tmp_path


def idx_bytes(array: np.ndarray) -> bytes:
    header = struct.pack(">BBBB", 0, 0, 0x08, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    return header + array.astype(np.uint8).tobytes()


def write_idx_set(folder: Path, n_train: int = 12, n_test: int = 6, seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    arrays = {}
    for split, n in (("train", n_train), ("test", n_test)):
        images = rng.integers(0, 256, size=(n, 28, 28), dtype=np.uint8)
        labels = rng.integers(0, 10, size=n, dtype=np.uint8)
        image_name, label_name = IDX_NAMES[split]
        (folder / image_name).write_bytes(gzip.compress(idx_bytes(images)))
        (folder / label_name).write_bytes(gzip.compress(idx_bytes(labels)))
        arrays[f"{split}_images"], arrays[f"{split}_labels"] = images, labels
    return arrays


def cifar_batch(n: int, label_key: bytes, num_classes: int, rng: np.random.Generator):
    data = rng.integers(0, 256, size=(n, 3072), dtype=np.uint8)
    labels = rng.integers(0, num_classes, size=n).tolist()
    return {b"batch_label": b"generated", b"data": data, label_key: labels}


def write_cifar_pickles(folder: Path, hundred: bool, seed: int = 0) -> dict[str, list]:
    """The official layout with tiny batches; returns the batches written, by file name."""
    rng = np.random.default_rng(seed)
    if hundred:
        names, key, classes = ["train", "test"], b"fine_labels", 100
        meta_name, meta_key = "meta", b"fine_label_names"
    else:
        names, key, classes = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"], b"labels", 10
        meta_name, meta_key = "batches.meta", b"label_names"
    folder.mkdir(parents=True, exist_ok=True)
    label_names = {meta_key: [f"kind{c}".encode() for c in range(classes)]}
    (folder / meta_name).write_bytes(pickle.dumps(label_names, protocol=2))
    batches = {}
    for name in names:
        batches[name] = cifar_batch(4, key, classes, rng)
        (folder / name).write_bytes(pickle.dumps(batches[name], protocol=2))
    return batches


def make_tar(source: Path, archive: Path, arcname: str, *, reverse: bool = False) -> Path:
    """A gzip tarball of ``source`` under ``arcname``; ``reverse`` stores members in reverse path order."""
    files = sorted(source.rglob("*"), reverse=reverse)
    with tarfile.open(archive, "w:gz") as tar:
        for file in files:
            tar.add(file, arcname=f"{arcname}/{file.relative_to(source).as_posix()}", recursive=False)
    return archive


def write_image_tree(root: Path, classes: list[str], per_class: dict[str, int], suffix: str, size=(8, 8)):
    """``{split}/<class>/<i>.<suffix>``; each image is one solid colour that encodes (split, class, i)."""
    colours = {}
    for split, count in per_class.items():
        for c, label in enumerate(classes):
            (root / split / label).mkdir(parents=True, exist_ok=True)
            for i in range(count):
                colour = (25 * c + 10, 60 * i + 10, 200 if split == "train" else 50)
                Image.new("RGB", size, colour).save(root / split / label / f"{i:03d}.{suffix}")
                colours[(split, label, i)] = colour
    return colours


# --------------------------------------------------------------------------- IDX (MNIST / Fashion-MNIST)


def test_idx_set_loads_with_shapes_dtypes_labels_and_stats(isolated):
    arrays = write_idx_set(isolated / "parent" / "mnist")
    data = load("mnist", isolated / "parent", download=False)
    assert isinstance(data, ArrayData)
    assert data.train_inputs.shape == (12, 1, 28, 28) and data.train_inputs.dtype == torch.uint8
    assert data.test_inputs.shape == (6, 1, 28, 28)
    assert data.train_targets.dtype == torch.int64 and data.num_classes == 10
    assert np.array_equal(data.train_inputs[:, 0].numpy(), arrays["train_images"])
    assert np.array_equal(data.test_targets.numpy(), arrays["test_labels"])
    pixels = arrays["train_images"] / 255.0
    assert data.mean == pytest.approx((pixels.mean(),), abs=1e-9)
    assert data.std == pytest.approx((pixels.std(),), abs=1e-9)
    # The data set's own folder works as data_dir too.
    same = load("mnist", isolated / "parent" / "mnist", download=False)
    assert torch.equal(same.train_inputs, data.train_inputs)


def test_idx_uncompressed_files_are_accepted(isolated):
    folder = isolated / "raw" / "mnist"
    write_idx_set(folder)
    for path in folder.glob("*.gz"):
        path.with_suffix("").write_bytes(gzip.decompress(path.read_bytes()))
        path.unlink()
    assert load("mnist", folder, download=False).train_inputs.shape == (12, 1, 28, 28)


@pytest.mark.parametrize(
    "corrupt",
    ["truncated_gzip", "truncated_payload", "trailing_bytes", "bad_magic", "count_mismatch"],
)
def test_idx_damage_raises_data_error(isolated, corrupt):
    folder = isolated / "mnist"
    write_idx_set(folder)
    images = folder / IDX_NAMES["train"][0]
    raw = gzip.decompress(images.read_bytes())
    if corrupt == "truncated_gzip":
        images.write_bytes(images.read_bytes()[:-100])
    elif corrupt == "truncated_payload":
        images.write_bytes(gzip.compress(raw[:-28]))
    elif corrupt == "trailing_bytes":
        images.write_bytes(gzip.compress(raw + b"\0"))
    elif corrupt == "bad_magic":
        images.write_bytes(gzip.compress(b"\x01" + raw[1:]))
    else:
        labels = folder / IDX_NAMES["train"][1]
        labels.write_bytes(gzip.compress(idx_bytes(np.zeros(5, np.uint8))))
    with pytest.raises(DataError):
        load("mnist", folder, download=False)


def test_sha256sums_beside_the_files_are_verified(isolated):
    folder = isolated / "mnist"
    write_idx_set(folder)
    names = [n for pair in IDX_NAMES.values() for n in pair]
    lines = [f"{hashlib.sha256((folder / n).read_bytes()).hexdigest()}  {n}\n" for n in names]
    (folder / "SHA256SUMS").write_text("".join(lines))
    data = load("mnist", folder, download=False)
    assert len(data.meta["checksums_verified"]) == 4
    lines[0] = "0" * 64 + lines[0][64:]
    (folder / "SHA256SUMS").write_text("".join(lines))
    with pytest.raises(DataError, match="SHA256 mismatch"):
        load("mnist", folder, download=False)


# --------------------------------------------------------------------------- resolution and errors


def test_resolution_order_data_dir_then_env_then_system(isolated, monkeypatch):
    write_idx_set(isolated / "arg" / "fashion_mnist", n_train=5)
    write_idx_set(isolated / "env_data" / "fashion-mnist", n_train=7)
    system = isolated / "system" / "fashion-mnist"
    write_idx_set(system, n_train=9)
    write_idx_set(isolated / "cache" / "fashion_mnist", n_train=11)
    spec = DATASETS["fashion_mnist"]
    monkeypatch.setitem(DATASETS, "fashion_mnist", dataclasses.replace(spec, system_paths=(str(system),)))

    # Every place holds a copy (of a different size); removing the winner each time reveals the next.
    assert len(load("fashion_mnist", isolated / "arg", download=False).train_targets) == 5
    assert len(load("fashion_mnist", download=False).train_targets) == 7
    monkeypatch.setenv("NTLR_DATA_DIR", str(isolated / "elsewhere"))
    assert len(load("fashion_mnist", download=False).train_targets) == 9
    monkeypatch.setitem(DATASETS, "fashion_mnist", dataclasses.replace(spec, system_paths=()))
    assert len(load("fashion_mnist", download=False).train_targets) == 11


def test_missing_data_message_lists_every_place(isolated, monkeypatch):
    system = isolated / "nowhere" / "fashion-mnist"
    spec = DATASETS["fashion_mnist"]
    monkeypatch.setitem(DATASETS, "fashion_mnist", dataclasses.replace(spec, system_paths=(str(system),)))
    with pytest.raises(DataNotFoundError) as caught:
        load("fashion_mnist", isolated / "given", download=False)
    message = str(caught.value)
    for place in (
        isolated / "given",
        isolated / "given" / "fashion_mnist",
        isolated / "env_data" / "fashion_mnist",
        system,
        isolated / "cache" / "fashion_mnist",
    ):
        assert str(place) in message
    assert "download=False" in message and "apt install dataset-fashion-mnist" in message


def test_missing_data_message_lists_the_places_in_the_order_searched(isolated, monkeypatch):
    monkeypatch.delenv("NTLR_DATA_DIR", raising=False)
    spec = DATASETS["fashion_mnist"]
    system = isolated / "nowhere" / "fashion-mnist"
    monkeypatch.setitem(DATASETS, "fashion_mnist", dataclasses.replace(spec, system_paths=(str(system),)))
    with pytest.raises(DataNotFoundError) as caught:
        load("fashion_mnist", isolated / "given", download=False)
    message = str(caught.value)
    order = [str(isolated / "given" / "fashion_mnist"), "NTLR_DATA_DIR: (not set)", str(system), "cache: "]
    positions = [message.index(place) for place in order]
    assert positions == sorted(positions)


def test_incomplete_folder_is_reported(isolated):
    folder = isolated / "env_data" / "mnist"
    write_idx_set(folder)
    (folder / IDX_NAMES["test"][1]).unlink()
    with pytest.raises(DataNotFoundError, match="incomplete: missing t10k-labels-idx1-ubyte"):
        load("mnist", download=False)


def test_unreachable_download_fails_fast_with_the_not_found_message(isolated, monkeypatch):
    spec = DATASETS["mnist"]
    unreachable = tuple(
        RemoteFile(
            r.filename, ("http://127.0.0.1:9/" + r.filename, "file:///nonexistent/" + r.filename), r.md5
        )
        for r in spec.remote
    )
    monkeypatch.setitem(DATASETS, "mnist", dataclasses.replace(spec, remote=unreachable))
    started = time.perf_counter()
    with pytest.raises(DataNotFoundError) as caught:
        load("mnist", download=True)
    assert time.perf_counter() - started < 10
    message = str(caught.value)
    assert "download into" in message and "127.0.0.1:9" in message and "failed" in message
    assert str(isolated / "env_data" / "mnist") in message
    assert not list((isolated / "cache" / "mnist").glob("*.part"))


def _served_remote(monkeypatch, files: dict[str, bytes], digests: dict[str, str]):
    """Remote files served by a monkeypatched opener, as a mirror would serve them."""
    served = []

    def fake_urlopen(url, timeout):
        served.append(url)
        name = url.rsplit("/", 1)[-1]
        if name not in files:
            raise download_module.urllib.error.URLError("no such file")
        return io.BytesIO(files[name])

    monkeypatch.setattr(download_module, "_urlopen", fake_urlopen)
    return tuple(RemoteFile(n, (f"https://mirror.invalid/{n}",), md5=digests[n]) for n in files), served


def test_download_with_matching_checksum_is_used_and_recorded(isolated, monkeypatch):
    source = isolated / "published"
    arrays = write_idx_set(source)
    files = {p.name: p.read_bytes() for p in source.iterdir()}
    digests = {n: hashlib.md5(b).hexdigest() for n, b in files.items()}
    remote, served = _served_remote(monkeypatch, files, digests)
    monkeypatch.setitem(DATASETS, "mnist", dataclasses.replace(DATASETS["mnist"], remote=remote))
    data = load("mnist", download=True)
    assert len(served) == 4
    assert np.array_equal(data.train_inputs[:, 0].numpy(), arrays["train_images"])
    cached = isolated / "cache" / "mnist"
    assert data.source == str(cached) and (cached / "MD5SUMS").is_file()
    # A later load uses the cache (no download) and re-verifies it against the recorded digests.
    assert len(load("mnist", download=True).meta["checksums_verified"]) == 4
    assert len(served) == 4
    (cached / IDX_NAMES["test"][1]).write_bytes(gzip.compress(idx_bytes(np.ones(6, np.uint8))))
    with pytest.raises(DataError, match="MD5 mismatch"):
        load("mnist", download=True)


def test_download_with_wrong_checksum_raises_and_leaves_nothing(isolated, monkeypatch):
    source = isolated / "published"
    write_idx_set(source)
    files = {p.name: p.read_bytes() for p in source.iterdir()}
    digests = {n: "0" * 32 for n in files}
    remote, _ = _served_remote(monkeypatch, files, digests)
    monkeypatch.setitem(DATASETS, "mnist", dataclasses.replace(DATASETS["mnist"], remote=remote))
    with pytest.raises(DataError, match="failed verification"):
        load("mnist", download=True)
    assert list((isolated / "cache" / "mnist").iterdir()) == []


def test_download_from_a_file_url(isolated, monkeypatch):
    source = isolated / "published"
    write_idx_set(source)
    remote = tuple(
        RemoteFile(p.name, (p.as_uri(),), sha256=hashlib.sha256(p.read_bytes()).hexdigest())
        for p in sorted(source.iterdir())
    )
    monkeypatch.setitem(DATASETS, "mnist", dataclasses.replace(DATASETS["mnist"], remote=remote))
    data = load("mnist")
    assert len(data.train_targets) == 12 and (isolated / "cache" / "mnist" / "SHA256SUMS").is_file()


def test_bad_arguments_raise_value_or_type_errors(isolated):
    with pytest.raises(ValueError, match="name must be one of"):
        load("svhn")
    with pytest.raises(TypeError, match="name"):
        load(3)
    for bad in (0, -1, 2.5, True):
        with pytest.raises(ValueError, match="limit"):
            load("digits", limit=bad)
    with pytest.raises(TypeError, match="data_dir"):
        load("mnist", data_dir=5)


def test_registry_specs_describe_where_and_how():
    expected = {
        "digits",
        "lstsq",
        "mnist",
        "fashion_mnist",
        "cifar10",
        "cifar100",
        "imagenet",
        "translation_de_en",
        "ding_en_chars",
        "multi30k",
    }
    assert set(DATASETS) == expected
    for name, spec in DATASETS.items():
        assert spec.name == name and spec.description and spec.how_to_get and callable(spec.loader)
    for remote in (r for spec in DATASETS.values() for r in spec.remote):
        assert remote.md5 or remote.sha256


# --------------------------------------------------------------------------- limit


def test_limit_is_deterministic_and_per_split(isolated):
    write_idx_set(isolated / "mnist", n_train=40, n_test=20)
    full = load("mnist", isolated, download=False)
    a = load("mnist", isolated, download=False, limit=7)
    b = load("mnist", isolated, download=False, limit=7)
    assert len(a.train_targets) == 7 and len(a.test_targets) == 7
    assert torch.equal(a.train_inputs, b.train_inputs) and torch.equal(a.test_targets, b.test_targets)
    # A subset of the full set, in the original order, and not simply its first rows.
    rows = [int((full.train_inputs == x).flatten(1).all(1).nonzero()) for x in a.train_inputs]
    assert rows == sorted(rows) and rows != list(range(7))
    assert a.mean == full.mean  # statistics come from the full training split
    assert len(load("mnist", isolated, download=False, limit=1000).train_targets) == 40


# --------------------------------------------------------------------------- CIFAR


@pytest.mark.parametrize("hundred", [False, True])
@pytest.mark.parametrize("packed", [False, True])
def test_cifar_pickles_folder_and_official_tarball(isolated, hundred, packed):
    name = "cifar100" if hundred else "cifar10"
    inner = "cifar-100-python" if hundred else "cifar-10-batches-py"
    batches = write_cifar_pickles(isolated / "extracted" / inner, hundred)
    if packed:
        (isolated / name).mkdir()
        archive = "cifar-100-python.tar.gz" if hundred else "cifar-10-python.tar.gz"
        make_tar(isolated / "extracted" / inner, isolated / name / archive, inner)
        data_dir = isolated
    else:
        data_dir = isolated / "extracted"
    data = load(name, data_dir, download=False)
    train_names = ["train"] if hundred else [f"data_batch_{i}" for i in range(1, 6)]
    test_name = "test" if hundred else "test_batch"
    key = b"fine_labels" if hundred else b"labels"
    want_x = np.concatenate([batches[n][b"data"] for n in train_names]).reshape(-1, 3, 32, 32)
    want_y = np.concatenate([batches[n][key] for n in train_names])
    assert data.train_inputs.shape == (len(want_y), 3, 32, 32) and data.train_inputs.dtype == torch.uint8
    assert np.array_equal(data.train_inputs.numpy(), want_x)
    assert np.array_equal(data.train_targets.numpy(), want_y) and data.train_targets.dtype == torch.int64
    assert np.array_equal(data.test_targets.numpy(), batches[test_name][key])
    assert data.num_classes == (100 if hundred else 10) and len(data.mean) == 3
    assert data.meta["format"] == ("pickle tar" if packed else "pickle")
    assert data.meta["classes"][:2] == ["kind0", "kind1"] and len(data.meta["classes"]) == data.num_classes


def test_cifar_pickle_that_would_run_code_is_refused(isolated):
    folder = isolated / "cifar10" / "cifar-10-batches-py"
    write_cifar_pickles(folder, hundred=False)

    class Exploit:
        def __reduce__(self):
            return (os.system, ("echo pwned",))

    (folder / "test_batch").write_bytes(pickle.dumps({b"data": Exploit()}, protocol=2))
    with pytest.raises(DataError, match="refusing"):
        load("cifar10", isolated, download=False)


def test_cifar_truncated_tarball_raises_data_error(isolated):
    write_cifar_pickles(isolated / "x" / "cifar-10-batches-py", hundred=False)
    archive = make_tar(
        isolated / "x" / "cifar-10-batches-py", isolated / "x" / "full.tar.gz", "cifar-10-batches-py"
    )
    (isolated / "cifar10").mkdir()
    (isolated / "cifar10" / "cifar-10-python.tar.gz").write_bytes(archive.read_bytes()[:-200])
    with pytest.raises(DataError, match="truncated"):
        load("cifar10", isolated, download=False)


@pytest.mark.parametrize("packed", [False, True])
def test_image_tree_folder_and_tarball_decode_and_cache(isolated, packed):
    classes = [f"class{c}" for c in range(10)]  # cifar10 needs 10 class folders
    root = isolated / "tree" / "cifar10-png"
    colours = write_image_tree(root, list(reversed(classes)), {"train": 2, "test": 1}, "png")
    if packed:
        (isolated / "cifar10").mkdir()
        source = make_tar(root, isolated / "cifar10" / "cifar10-png.tar.gz", "cifar10-png", reverse=True)
    else:
        source = root
    data = load("cifar10", source, download=False)
    assert data.meta["classes"] == classes  # sorted folder names, whatever the creation order
    assert data.train_inputs.shape == (20, 3, 8, 8) and data.test_inputs.shape == (10, 3, 8, 8)
    assert data.train_targets.tolist() == [c for c in range(10) for _ in range(2)]
    assert tuple(data.train_inputs[3, :, 0, 0].tolist()) == colours[("train", "class1", 1)]  # PNG: exact
    assert data.meta["format"] in ("image-tree", "tree tar")
    cached = Path(data.meta["decoded_cache"])
    assert cached.is_file() and cached.parent == isolated / "cache" / "cifar10"
    again = load("cifar10", source, download=False)
    assert again.meta["format"] == "image-tree (decoded cache)"
    assert torch.equal(again.train_inputs, data.train_inputs) and torch.equal(
        again.test_targets, data.test_targets
    )
    # Changing the source invalidates the cache.
    if packed:
        os.utime(source, ns=(time.time_ns(), time.time_ns() + 5_000_000_000))
    else:
        Image.new("RGB", (8, 8), (1, 2, 3)).save(root / "test" / "class0" / "000.png")
    fresh = load("cifar10", source, download=False)
    assert fresh.meta["format"] != "image-tree (decoded cache)"


def test_jpeg_tree_tarball_like_the_shared_cifar10(isolated):
    classes = [f"c{c}" for c in range(10)]
    root = isolated / "build" / "cifar10-jpg"
    colours = write_image_tree(root, classes, {"train": 1, "test": 1}, "jpg", size=(32, 32))
    (isolated / "env_data" / "cifar10").mkdir()
    make_tar(root, isolated / "env_data" / "cifar10" / "cifar10-jpg.tar.gz", "cifar10-jpg")
    data = load("cifar10", download=False)  # found through NTLR_DATA_DIR
    assert data.train_inputs.shape == (10, 3, 32, 32) and data.train_inputs.dtype == torch.uint8
    got = data.test_inputs[4].float().mean(dim=(1, 2))
    assert torch.allclose(got, torch.tensor(colours[("test", "c4", 0)], dtype=torch.float32), atol=4)


def test_image_tree_with_mixed_sizes_or_unknown_test_class_raises(isolated):
    root = isolated / "cifar10"
    write_image_tree(root, [f"c{c}" for c in range(10)], {"train": 1, "test": 1}, "png")
    Image.new("RGB", (9, 8)).save(root / "train" / "c3" / "odd.png")
    with pytest.raises(DataError, match="share one size"):
        load("cifar10", isolated, download=False)
    (root / "train" / "c3" / "odd.png").unlink()
    (root / "test" / "extra").mkdir()
    Image.new("RGB", (8, 8)).save(root / "test" / "extra" / "x.png")
    with pytest.raises(DataError, match="no training images"):
        load("cifar10", isolated, download=False)


def test_image_tree_with_undecodable_file_raises(isolated):
    root = isolated / "cifar10"
    write_image_tree(root, [f"c{c}" for c in range(10)], {"train": 1, "test": 1}, "jpg")
    (root / "train" / "c0" / "broken.jpg").write_bytes(b"not a jpeg")
    with pytest.raises(DataError, match="cannot decode"):
        load("cifar10", isolated, download=False)


# --------------------------------------------------------------------------- ImageNet-style streaming


@pytest.fixture
def imagenet_tree(isolated):
    root = isolated / "imagenet"
    rng = np.random.default_rng(0)
    for split, count in (("train", 5), ("val", 2)):
        for wnid in ["n02", "n01", "n03"]:
            (root / split / wnid).mkdir(parents=True)
            for i in range(count):
                w, h = int(rng.integers(20, 60)), int(rng.integers(20, 60))
                pixels = rng.integers(0, 256, size=(h, w, 3), dtype=np.uint8)
                Image.fromarray(pixels).save(root / split / wnid / f"{wnid}_{i}.JPEG", format="JPEG")
    return isolated


def test_imagenet_tree_lists_files_and_streams_batches(imagenet_tree):
    data = load("imagenet", imagenet_tree, download=False)
    assert isinstance(data, ImageFolderData)
    assert data.classes == ["n01", "n02", "n03"] and data.num_classes == 3
    assert data.num_examples("train") == 15 and data.num_examples("val") == 6
    assert data.split("test") is data.split("val")
    assert data.steps_per_epoch(4) == 4 and data.steps_per_epoch(4, drop_last=True) == 3
    assert data.steps_per_epoch(4, "val") == 2
    paths, targets = data.split("train")
    assert all(Path(p).parent.name == data.classes[t] for p, t in zip(paths, targets.tolist()))

    batches = list(
        data.batches("train", 4, shuffle=True, seed=3, image_size=16, train_augment=True, num_workers=0)
    )
    assert len(batches) == 4
    images, labels = batches[0]
    assert images.shape == (4, 3, 16, 16) and images.dtype == torch.uint8 and labels.dtype == torch.int64
    assert sorted(torch.cat([b[1] for b in batches]).tolist()) == sorted(targets.tolist())

    again = list(
        data.batches("train", 4, shuffle=True, seed=3, image_size=16, train_augment=True, num_workers=0)
    )
    assert all(torch.equal(a[0], b[0]) and torch.equal(a[1], b[1]) for a, b in zip(batches, again))
    other = list(
        data.batches("train", 4, shuffle=True, seed=4, image_size=16, train_augment=True, num_workers=0)
    )
    # Same order, other seed: only the augmentation draws differ, and they do.
    fixed = dict(shuffle=False, image_size=16, train_augment=True, num_workers=0)
    first, second = (next(data.batches("train", 15, seed=s, **fixed)) for s in (3, 4))
    assert torch.equal(first[1], second[1])
    assert sum(not torch.equal(a, b) for a, b in zip(first[0], second[0])) > 10
    assert not all(torch.equal(a[0], b[0]) for a, b in zip(batches, other))

    evals = list(
        data.batches("val", 4, shuffle=False, seed=0, image_size=12, train_augment=False, num_workers=0)
    )
    assert [len(b[1]) for b in evals] == [4, 2] and evals[0][0].shape == (4, 3, 12, 12)
    assert torch.cat([b[1] for b in evals]).tolist() == data.split("val")[1].tolist()


def test_imagenet_batches_do_not_depend_on_worker_count(imagenet_tree):
    data = load("imagenet", imagenet_tree, download=False)
    kwargs = dict(shuffle=True, seed=1, image_size=8, train_augment=True)
    serial = list(data.batches("train", 5, num_workers=0, **kwargs))
    parallel = list(data.batches("train", 5, num_workers=2, **kwargs))
    assert all(torch.equal(a[0], b[0]) and torch.equal(a[1], b[1]) for a, b in zip(serial, parallel))


def test_imagenet_limit_and_errors(imagenet_tree):
    small = load("imagenet", imagenet_tree, download=False, limit=4)
    assert small.num_examples("train") == 4 and small.num_examples("val") == 4
    assert len(set(small.split("train")[1].tolist())) > 1  # not one class only
    with pytest.raises(ValueError, match="split"):
        small.split("holdout")
    with pytest.raises(ValueError, match="batch_size"):
        small.batches("train", 0, shuffle=False, seed=0, train_augment=False)
    val = imagenet_tree / "imagenet" / "val"
    for wnid in list(val.iterdir()):
        for file in wnid.iterdir():
            file.rename(val / file.name)  # the official flat layout
        wnid.rmdir()
    with pytest.raises(DataError, match="wnid"):
        load("imagenet", imagenet_tree, download=False)


# --------------------------------------------------------------------------- translation


def test_tokenizer_is_lowercase_words_and_punctuation():
    assert tokenize("Ich glaube, er kommt’s nicht!") == ["ich", "glaube", ",", "er", "kommt's", "nicht", "!"]
    assert tokenize("Don't  stop-now.") == ["don't", "stop", "-", "now", "."]


MULTI30K = {
    "train": [
        ("Ein Hund läuft.", "A dog runs."),
        ("Ein Mann läuft.", "A man runs."),
        ("Zwei Hunde spielen im Schnee.", "Two dogs play in the snow."),
        ("Ein Kind spielt.", "A child plays."),
    ],
    "val": [("Ein Hund spielt.", "A dog plays."), ("Eine Katze schläft.", "A cat sleeps.")],
    "test_2016_flickr": [("Ein Mann spielt.", "A man plays.")],
}


def write_multi30k(folder: Path, gz: bool = False) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for stem, pairs in MULTI30K.items():
        for lang, column in (("de", 0), ("en", 1)):
            text = "".join(pair[column] + "\n" for pair in pairs).encode()
            if gz:
                (folder / f"{stem}.{lang}.gz").write_bytes(gzip.compress(text))
            else:
                (folder / f"{stem}.{lang}").write_bytes(text)


@pytest.mark.parametrize("gz", [False, True])
def test_multi30k_text_files(isolated, gz):
    write_multi30k(isolated / "multi30k", gz=gz)
    data = load("multi30k", isolated, download=False)
    assert isinstance(data, TranslationData)
    assert data.src_vocab[:4] == list(SPECIALS) and data.tgt_vocab[:4] == list(SPECIALS)
    # min frequency 2 on the training split: "ein" (3×) and "." stay, "schnee" (1×) does not.
    assert "ein" in data.src_vocab and "läuft" in data.src_vocab and "schnee" not in data.src_vocab
    assert data.src_vocab.index(".") < data.src_vocab.index("läuft")  # most frequent first
    assert data.train_src.shape == (4, 6) and data.train_src.dtype == torch.int64
    assert data.train_tgt.shape == (4, 9)  # the longest target: 7 tokens + BOS + EOS
    assert (data.train_tgt[:, 0] == BOS).all()
    first = data.train_tgt[0].tolist()
    a, runs, stop = (data.tgt_vocab.index(t) for t in ("a", "runs", "."))
    assert first[: first.index(EOS) + 1] == [BOS, a, UNK, runs, stop, EOS]  # "dog" is seen once
    assert first[first.index(EOS) + 1 :] == [PAD] * (len(first) - first.index(EOS) - 1)
    assert data.train_src[2].tolist()[2] == UNK  # "spielen" is seen once
    assert data.valid_src.shape[0] == 2 and data.test_src is not None and data.test_src.shape[0] == 1


def test_multi30k_misaligned_files_raise(isolated):
    write_multi30k(isolated / "multi30k")
    (isolated / "multi30k" / "val.en").write_text("A dog plays.\n")
    with pytest.raises(DataError, match="lines"):
        load("multi30k", isolated, download=False)


DING_SAMPLE = """\
# Version :: test
Hund {m} | Hunde {pl} :: dog | dogs
Katze {f} [zool.] :: cat
laufen | Der Hund läuft schnell. | Der Hund läuft (sehr) weit. :: run | The dog runs fast. | The dog runs far.
Ich suche ein bestimmtes Buch. :: I’m looking for a particular book.; I am looking for a certain book.
Das steht noch nicht fest. [ugs.] :: It’s still not definite. [Br.]
z. B. {Abk.} :: e.g.
Ges. m. b. H. :: Ltd.
Der Hund läuft schnell. :: The dog runs quickly.
Wie geht es dir? :: How are you?
kaputt machen | Mach das nicht kaputt! :: to break | Don't break it!
ein kaputtes Ding :: a broken thing | with a mismatched count
"""


def test_ding_parser_keeps_example_sentences_only():
    pairs, stats = parse_ding(DING_SAMPLE.splitlines())
    assert pairs == [
        ("Der Hund läuft schnell.", "The dog runs fast."),
        ("Der Hund läuft weit.", "The dog runs far."),
        ("Ich suche ein bestimmtes Buch.", "I’m looking for a particular book."),
        ("Das steht noch nicht fest.", "It’s still not definite."),
        ("Wie geht es dir?", "How are you?"),
        ("Mach das nicht kaputt!", "Don't break it!"),
    ]
    assert stats["duplicates"] == 1 and stats["malformed"] == 1


def test_trans_de_en_file_loads_with_deterministic_split(isolated):
    body = "".join(
        f"Der Hund Nummer {i} läuft schnell. :: The dog number {i} runs fast.\n" for i in range(60)
    )
    long_de = " ".join(["Wort"] * 31) + "."
    (isolated / "translation_de_en").mkdir()
    (isolated / "translation_de_en" / "de-en").write_text(
        "# header\n" + body + f"{long_de} :: Short enough.\n", encoding="utf-8"
    )
    data = load("translation_de_en", isolated, download=False)
    assert isinstance(data, TranslationData)
    assert data.meta["pairs_found"] == 61 and data.meta["pairs_dropped_length"] == 1
    assert data.valid_src.shape[0] == 3 and data.train_src.shape[0] == 57  # 5 % of 60, rounded
    assert data.train_src.shape[1] == 7  # "der hund nummer <n> läuft schnell ."
    assert data.test_src is None
    again = load("translation_de_en", isolated / "translation_de_en" / "de-en", download=False)
    assert torch.equal(again.valid_src, data.valid_src) and again.src_vocab == data.src_vocab
    limited = load("translation_de_en", isolated, download=False, limit=5)
    assert limited.train_src.shape[0] == 5 and limited.valid_src.shape[0] == 3


def test_trans_de_en_without_dictionary_lines_raises(isolated):
    (isolated / "translation_de_en").mkdir()
    (isolated / "translation_de_en" / "de-en").write_text("# only a header\n")
    with pytest.raises(DataError, match="German :: English"):
        load("translation_de_en", isolated, download=False)


# --------------------------------------------------------------------------- real data (skipped when absent)


def _real_folder(name: str) -> Path | None:
    root = os.environ.get("NTLR_DATA_DIR")
    folder = Path(root) / name if root else None
    return folder if folder is not None and folder.is_dir() else None


def test_real_mnist_with_checksums():
    folder = _real_folder("mnist")
    if folder is None or not (folder / "SHA256SUMS").is_file():
        pytest.skip("real MNIST with SHA256SUMS not in NTLR_DATA_DIR")
    data = load("mnist", download=False)
    assert data.train_inputs.shape == (60000, 1, 28, 28) and data.test_inputs.shape == (10000, 1, 28, 28)
    assert len(data.meta["checksums_verified"]) == 4
    # The published class counts of the MNIST training and test sets.
    assert data.train_targets.bincount().tolist() == [
        5923,
        6742,
        5958,
        6131,
        5842,
        5421,
        5918,
        6265,
        5851,
        5949,
    ]
    assert data.test_targets.bincount().tolist() == [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]
    assert data.mean[0] == pytest.approx(0.1307, abs=1e-3) and data.std[0] == pytest.approx(0.3081, abs=1e-3)


def test_real_fashion_mnist_from_debian():
    folder = Path("/usr/share/datasets/fashion-mnist")
    if not (folder / "train-images-idx3-ubyte.gz").is_file():
        pytest.skip("Debian package dataset-fashion-mnist not installed")
    data = load("fashion_mnist", folder, download=False)
    assert data.train_inputs.shape == (60000, 1, 28, 28) and data.test_inputs.shape == (10000, 1, 28, 28)
    assert data.train_targets.bincount().tolist() == [6000] * 10
    assert data.test_targets.bincount().tolist() == [1000] * 10


def test_real_digits():
    pytest.importorskip("sklearn")
    data = load("digits")
    assert data.train_inputs.shape == (1438, 1, 8, 8) and data.test_inputs.shape == (359, 1, 8, 8)
    assert int(data.train_inputs.max()) == 255 and data.num_classes == 10
    assert set(data.test_targets.tolist()) == set(range(10))
    assert torch.equal(load("digits").test_inputs, data.test_inputs)


def test_real_trans_de_en_pairs():
    path = Path("/usr/share/trans/de-en")
    if not path.is_file():
        pytest.skip("Debian package trans-de-en not installed")
    data = load("translation_de_en", path, download=False)
    n_train, n_valid = data.train_src.shape[0], data.valid_src.shape[0]
    assert n_train > 10_000 and n_valid == round(0.05 * (n_train + n_valid))
    assert data.train_src.shape[1] <= 30 and data.train_tgt.shape[1] <= 32
    assert len(data.src_vocab) > 1000 and len(data.tgt_vocab) > 1000
    assert (data.train_tgt[:, 0] == BOS).all() and ((data.train_tgt == EOS).sum(1) == 1).all()


@pytest.mark.slow
def test_real_cifar10_jpeg_tarball(tmp_path, monkeypatch):
    folder = _real_folder("cifar10")
    if folder is None or not (folder / "cifar10-jpg.tar.gz").is_file():
        pytest.skip("cifar10-jpg.tar.gz not in NTLR_DATA_DIR")
    monkeypatch.setenv("NTLR_CACHE_DIR", str(tmp_path))
    started = time.perf_counter()
    data = load("cifar10", download=False)
    decode_s = time.perf_counter() - started
    started = time.perf_counter()
    again = load("cifar10", download=False)
    reload_s = time.perf_counter() - started
    print(f"cifar10 JPEG tarball: decode {decode_s:.1f} s, cached reload {reload_s:.2f} s")
    assert data.train_inputs.shape == (50000, 3, 32, 32) and data.test_inputs.shape == (10000, 3, 32, 32)
    assert data.train_targets.bincount().tolist() == [5000] * 10
    assert again.meta["format"] == "image-tree (decoded cache)" and reload_s < decode_s
    assert torch.equal(again.test_inputs, data.test_inputs)


def test_lstsq_optimum_is_the_same_in_every_call_and_below_any_other_fit():
    """torch.linalg.lstsq on CPU differs in its last bits from call to call (with the allocator's state):
    the optimum the excess loss is measured from must not, or a rerun of a bit-identical run differs."""
    from ntlr_bench.data.synthetic import load_lstsq_data

    optima = set()
    for i in range(20):
        _scatter = [torch.empty(7 * i + 1, dtype=torch.float64) for _ in range(3)]  # move the allocator
        optima.add(load_lstsq_data(None, None).optimum_loss)
        del _scatter
    assert len(optima) == 1
    data = load_lstsq_data(None, None)
    x, y = data.train_inputs.double(), data.train_targets.double()
    design = torch.cat([x, torch.ones(len(x), 1, dtype=torch.float64)], 1)
    fit = torch.linalg.lstsq(design, y.unsqueeze(1)).solution
    exact = float((design @ fit).squeeze(1).sub(y).square().mean())
    # The optimum is of the float64 data; the inputs are stored in float32, which moves it by ~2e-8.
    assert abs(data.optimum_loss - exact) <= 1e-7 * exact
    nudged = float((design @ (fit * 1.001)).squeeze(1).sub(y).square().mean())
    assert nudged > data.optimum_loss

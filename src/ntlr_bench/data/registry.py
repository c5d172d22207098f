"""The data sets ntlr-bench knows: what each is, where it is looked for, and how to get it."""

from __future__ import annotations

from functools import partial

from . import char_corpus, cifar, digits, ding, idx, imagenet, multi30k, synthetic
from .download import RemoteFile
from .locate import DatasetSpec

_MNIST_MIRRORS = ("https://ossci-datasets.s3.amazonaws.com/mnist/", "http://yann.lecun.com/exdb/mnist/")
_MNIST_MD5 = {
    "train-images-idx3-ubyte.gz": "f68b3c2dcbeaaa9fbdd348bbdeb94873",
    "train-labels-idx1-ubyte.gz": "d53e105ee54ea40749a09fcbcd1e9432",
    "t10k-images-idx3-ubyte.gz": "9fb629c4189551a2d022fa330f9573f3",
    "t10k-labels-idx1-ubyte.gz": "ec29112dd5afa0611ce80d1b7f02629c",
}
_FASHION_MIRRORS = (
    "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",
    "https://raw.githubusercontent.com/zalandoresearch/fashion-mnist/master/data/fashion/",
)
_FASHION_MD5 = {
    "train-images-idx3-ubyte.gz": "8d4fb7e6c68d591d4c3dfef9ec88bf0d",
    "train-labels-idx1-ubyte.gz": "25c81989df183df01b3e8a0aad5dffbe",
    "t10k-images-idx3-ubyte.gz": "bef4ecab320f06d8554ea6380940ec79",
    "t10k-labels-idx1-ubyte.gz": "bb300cfdad3c16e7a12a480ee83cd310",
}
_CIFAR_BASE = "https://www.cs.toronto.edu/~kriz/"


def _remote(md5s: dict[str, str], mirrors: tuple[str, ...]) -> tuple[RemoteFile, ...]:
    return tuple(RemoteFile(name, tuple(m + name for m in mirrors), md5=md5) for name, md5 in md5s.items())


def _idx_loader(name: str):
    return partial(idx.load_idx_dataset, name)


_IDX_FILES = ", ".join(_MNIST_MD5)

DATASETS: dict[str, DatasetSpec] = {
    spec.name: spec
    for spec in (
        DatasetSpec(
            name="digits",
            description="scikit-learn's 8×8 handwritten digits, 1438/359 train/test",
            loader=digits.load_digits_data,
            how_to_get="it ships with scikit-learn: pip install 'ntlr[bench]'",
        ),
        DatasetSpec(
            name="lstsq",
            description="synthetic least squares, 2048/512 train/test, 64 features, Hessian condition 1e3",
            loader=synthetic.load_lstsq_data,
            how_to_get="it is generated (seeded): nothing to get",
        ),
        DatasetSpec(
            name="mnist",
            description="MNIST handwritten digits, 28×28 grey, 60000/10000",
            loader=_idx_loader("mnist"),
            probe=idx.probe_idx_folder,
            dir_names=("mnist", "MNIST"),
            remote=_remote(_MNIST_MD5, _MNIST_MIRRORS),
            how_to_get=f"download {_IDX_FILES} from {_MNIST_MIRRORS[0]} into a folder mnist/",
        ),
        DatasetSpec(
            name="fashion_mnist",
            description="Fashion-MNIST clothing images, 28×28 grey, 60000/10000",
            loader=_idx_loader("fashion_mnist"),
            probe=idx.probe_idx_folder,
            dir_names=("fashion_mnist", "fashion-mnist"),
            system_paths=("/usr/share/datasets/fashion-mnist",),
            remote=_remote(_FASHION_MD5, _FASHION_MIRRORS),
            how_to_get="on Debian/Ubuntu: apt install dataset-fashion-mnist; or download "
            f"{_IDX_FILES} from {_FASHION_MIRRORS[0]} into a folder fashion_mnist/",
        ),
        DatasetSpec(
            name="cifar10",
            description="CIFAR-10, 32×32 colour, 10 classes, 50000/10000",
            loader=partial(cifar.load_cifar, cifar.CIFAR10),
            probe=cifar.probe(cifar.CIFAR10),
            dir_names=("cifar10", "cifar-10"),
            remote=(
                RemoteFile(
                    "cifar-10-python.tar.gz",
                    (_CIFAR_BASE + "cifar-10-python.tar.gz",),
                    md5="c58f30108f718f92721af3b95e74349a",
                ),
            ),
            how_to_get=f"download {_CIFAR_BASE}cifar-10-python.tar.gz into a folder cifar10/ (no need to "
            "extract), or put an image tree {train,test}/<class>/*.jpg there (as a folder or a .tar.gz)",
        ),
        DatasetSpec(
            name="cifar100",
            description="CIFAR-100, 32×32 colour, 100 fine classes, 50000/10000",
            loader=partial(cifar.load_cifar, cifar.CIFAR100),
            probe=cifar.probe(cifar.CIFAR100),
            dir_names=("cifar100", "cifar-100"),
            remote=(
                RemoteFile(
                    "cifar-100-python.tar.gz",
                    (_CIFAR_BASE + "cifar-100-python.tar.gz",),
                    md5="eb9058c3a382ffc7106e4002c42a8d85",
                ),
            ),
            how_to_get=f"download {_CIFAR_BASE}cifar-100-python.tar.gz into a folder cifar100/ (no need to "
            "extract), or put an image tree {train,test}/<class>/*.jpg there (as a folder or a .tar.gz)",
        ),
        DatasetSpec(
            name="imagenet",
            description="ImageNet-1k (ILSVRC2012) as train/<wnid>/*.JPEG and val/<wnid>/*.JPEG, streamed",
            loader=imagenet.load_imagenet,
            probe=imagenet.probe_imagenet,
            dir_names=("imagenet", "ILSVRC2012", "imagenet-1k"),
            how_to_get="register at https://image-net.org, download ILSVRC2012 train and val, extract to "
            "imagenet/train/<wnid>/ and imagenet/val/<wnid>/ (val images sorted into class folders)",
        ),
        DatasetSpec(
            name="translation_de_en",
            description="German→English example sentences from the Ding dictionary (Debian trans-de-en)",
            loader=ding.load_trans_de_en,
            probe=ding.probe_ding,
            dir_names=("translation_de_en", "trans-de-en"),
            system_paths=("/usr/share/trans/de-en",),
            how_to_get="on Debian/Ubuntu: apt install trans-de-en; elsewhere download the de-en dictionary "
            "from https://dict.tu-chemnitz.de (Ding) and save it as translation_de_en/de-en",
        ),
        DatasetSpec(
            name="ding_en_chars",
            description="the English example sentences of the Ding dictionary (Debian trans-de-en) as "
            "characters, 95/5 % train/valid by sentence",
            loader=char_corpus.load_ding_chars,
            probe=ding.probe_ding,
            dir_names=("ding_en_chars", "trans-de-en"),
            system_paths=("/usr/share/trans/de-en",),
            how_to_get="on Debian/Ubuntu: apt install trans-de-en; elsewhere download the de-en dictionary "
            "from https://dict.tu-chemnitz.de (Ding) and save it as ding_en_chars/de-en",
        ),
        DatasetSpec(
            name="multi30k",
            description="Multi30k task 1 German→English image captions, 29000/1014/1000",
            loader=multi30k.load_multi30k,
            probe=multi30k.probe_multi30k,
            dir_names=("multi30k", "Multi30k"),
            remote=multi30k.REMOTE,
            how_to_get="download train, val and test_2016_flickr .de/.en(.gz) from "
            "https://github.com/multi30k/dataset/tree/master/data/task1/raw into a folder multi30k/",
        ),
    )
}

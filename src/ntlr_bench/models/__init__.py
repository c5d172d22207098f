"""The paper's models: MLP (MNIST), Wide-ResNet (CIFAR), ResNet-50 (ImageNet), Seq2Seq Transformer; and a
character language model (beyond the paper)."""

from .char_transformer import CharTransformer
from .mlp import linear, mlp
from .resnet import ResNet, resnet50
from .transformer import Seq2SeqTransformer
from .utils import count_parameters
from .wide_resnet import WideResNet, wide_resnet

__all__ = [
    "CharTransformer",
    "ResNet",
    "Seq2SeqTransformer",
    "WideResNet",
    "count_parameters",
    "linear",
    "mlp",
    "resnet50",
    "wide_resnet",
]

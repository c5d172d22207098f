"""The paper's MNIST model, a multi-layer perceptron with one ReLU hidden layer (784-1000-10), and the
linear model of the convex workloads (multinomial logistic regression, least squares)."""

from __future__ import annotations

from torch import nn

from ._checks import check_positive_int


def mlp(in_features: int, num_classes: int, hidden: int = 1000) -> nn.Module:
    """Flatten, ``Linear(in_features, hidden)``, ReLU, ``Linear(hidden, num_classes)``.

    Uses PyTorch's default ``Linear`` initialisation, as the paper's reference setups ([12], [18]) do.
    """
    in_features = check_positive_int("in_features", in_features)
    num_classes = check_positive_int("num_classes", num_classes)
    hidden = check_positive_int("hidden", hidden)
    return nn.Sequential(
        nn.Flatten(),
        nn.Linear(in_features, hidden),
        nn.ReLU(inplace=True),
        nn.Linear(hidden, num_classes),
    )


def linear(in_features: int, out_features: int) -> nn.Module:
    """Flatten, ``Linear(in_features, out_features)``: a convex model under cross-entropy or squared loss."""
    in_features = check_positive_int("in_features", in_features)
    out_features = check_positive_int("out_features", out_features)
    return nn.Sequential(nn.Flatten(), nn.Linear(in_features, out_features))

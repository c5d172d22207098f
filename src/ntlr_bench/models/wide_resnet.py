"""Wide-ResNet (Zagoruyko & Komodakis, 2016): the paper's CIFAR-10/100 models.

WRN-d-k: a 3×3 stem conv of 16 channels, three stages of (d−4)/6 pre-activation basic blocks of widths
16k, 32k, 64k (strides 1, 2, 2), then BN-ReLU, global average pooling and a linear classifier.
"""

from __future__ import annotations

from torch import Tensor, nn

from ._checks import check_positive_int, check_probability

__all__ = ["WideBasicBlock", "WideResNet", "wide_resnet"]


def _conv3x3(in_channels: int, out_channels: int, stride: int = 1) -> nn.Conv2d:
    # No bias: every conv is followed (in the next block or the head) by a BatchNorm that absorbs it.
    return nn.Conv2d(in_channels, out_channels, kernel_size=3, stride=stride, padding=1, bias=False)


class WideBasicBlock(nn.Module):
    """BN-ReLU-conv3×3-BN-ReLU-(dropout)-conv3×3 with a residual connection.

    When the shape changes, the shortcut is a 1×1 conv on the pre-activated input (as in the authors'
    code), so the first BN-ReLU is shared by both branches.
    """

    def __init__(self, in_channels: int, out_channels: int, stride: int, dropout: float) -> None:
        super().__init__()
        self.bn1 = nn.BatchNorm2d(in_channels)
        self.conv1 = _conv3x3(in_channels, out_channels, stride)
        self.bn2 = nn.BatchNorm2d(out_channels)
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.conv2 = _conv3x3(out_channels, out_channels)
        self.shortcut: nn.Module | None = None
        if stride != 1 or in_channels != out_channels:
            self.shortcut = nn.Conv2d(in_channels, out_channels, kernel_size=1, stride=stride, bias=False)

    def forward(self, x: Tensor) -> Tensor:
        out = nn.functional.relu(self.bn1(x))
        residual = x if self.shortcut is None else self.shortcut(out)
        out = self.conv1(out)
        out = self.dropout(nn.functional.relu(self.bn2(out)))
        return self.conv2(out) + residual


class WideResNet(nn.Module):
    """WRN-``depth``-``widen_factor``; see the module docstring. Works on any input of at least 4×4."""

    def __init__(
        self,
        depth: int = 16,
        widen_factor: int = 4,
        num_classes: int = 10,
        in_channels: int = 3,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        depth = check_positive_int("depth", depth)
        if (depth - 4) % 6 != 0 or depth < 10:
            raise ValueError(f"depth must be 6n+4 with n >= 1 (10, 16, 22, 28, 40, ...), got {depth}")
        widen_factor = check_positive_int("widen_factor", widen_factor)
        num_classes = check_positive_int("num_classes", num_classes)
        in_channels = check_positive_int("in_channels", in_channels)
        dropout = check_probability("dropout", dropout)

        blocks_per_stage = (depth - 4) // 6
        widths = [16, 16 * widen_factor, 32 * widen_factor, 64 * widen_factor]
        self.depth, self.widen_factor = depth, widen_factor
        self.stem = _conv3x3(in_channels, widths[0])
        stages = []
        for stage, stride in enumerate((1, 2, 2)):
            layers = []
            for i in range(blocks_per_stage):
                block_in = widths[stage] if i == 0 else widths[stage + 1]
                layers.append(WideBasicBlock(block_in, widths[stage + 1], stride if i == 0 else 1, dropout))
            stages.append(nn.Sequential(*layers))
        self.stages = nn.Sequential(*stages)
        self.bn = nn.BatchNorm2d(widths[3])
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(widths[3], num_classes)
        self._init_weights()

    def _init_weights(self) -> None:
        # He initialisation (fan-out, as in the authors' MSR init), unit BN scale, zero biases.
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(module, nn.BatchNorm2d):
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)
            elif isinstance(module, nn.Linear):
                nn.init.zeros_(module.bias)

    def forward(self, x: Tensor) -> Tensor:
        out = self.stages(self.stem(x))
        out = nn.functional.relu(self.bn(out))
        return self.fc(self.pool(out).flatten(1))


def wide_resnet(
    depth: int = 16,
    widen_factor: int = 4,
    num_classes: int = 10,
    in_channels: int = 3,
    dropout: float = 0.0,
) -> nn.Module:
    """Build WRN-``depth``-``widen_factor`` (e.g. WRN-16-4: ~2.75M parameters for 10 classes)."""
    return WideResNet(depth, widen_factor, num_classes, in_channels, dropout)

"""ResNet-50 (He et al., 2016), the paper's ImageNet model, in the common "v1.5" form.

v1.5 puts the downsampling stride on the 3×3 conv of a bottleneck rather than on the first 1×1 conv,
which is what today's reference ImageNet numbers are reported with.
"""

from __future__ import annotations

from torch import Tensor, nn

from ._checks import check_positive_int

__all__ = ["Bottleneck", "ResNet", "resnet50"]


class Bottleneck(nn.Module):
    """1×1 reduce, 3×3 (strided), 1×1 expand (×4), each with BN; ReLU after the residual sum."""

    expansion = 4

    def __init__(self, in_channels: int, planes: int, stride: int, width_per_group: int) -> None:
        super().__init__()
        width = planes * width_per_group // 64
        out_channels = planes * self.expansion
        self.conv1 = nn.Conv2d(in_channels, width, kernel_size=1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.conv2 = nn.Conv2d(width, width, kernel_size=3, stride=stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(width)
        self.conv3 = nn.Conv2d(width, out_channels, kernel_size=1, bias=False)
        self.bn3 = nn.BatchNorm2d(out_channels)
        self.relu = nn.ReLU(inplace=True)
        self.downsample: nn.Module | None = None
        if stride != 1 or in_channels != out_channels:
            # Projection shortcut (option B of the paper): only where the shape changes.
            self.downsample = nn.Sequential(
                nn.Conv2d(in_channels, out_channels, kernel_size=1, stride=stride, bias=False),
                nn.BatchNorm2d(out_channels),
            )

    def forward(self, x: Tensor) -> Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.relu(out + identity)


class ResNet(nn.Module):
    """A bottleneck ResNet: 7×7/2 stem, 3×3/2 max-pool, four stages, global average pool, linear head."""

    def __init__(
        self,
        layers: tuple[int, int, int, int] = (3, 4, 6, 3),
        num_classes: int = 1000,
        width_per_group: int = 64,
        zero_init_residual: bool = False,
        in_channels: int = 3,
    ) -> None:
        super().__init__()
        num_classes = check_positive_int("num_classes", num_classes)
        width_per_group = check_positive_int("width_per_group", width_per_group)
        in_channels = check_positive_int("in_channels", in_channels)
        if len(layers) != 4:
            raise ValueError(f"layers must give the block count of 4 stages, got {layers!r}")
        for count in layers:
            check_positive_int("layers", count)

        self.stem = nn.Sequential(
            nn.Conv2d(in_channels, 64, kernel_size=7, stride=2, padding=3, bias=False),
            nn.BatchNorm2d(64),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(kernel_size=3, stride=2, padding=1),
        )
        stages = []
        channels = 64
        for stage, (planes, blocks) in enumerate(zip((64, 128, 256, 512), layers)):
            stride = 1 if stage == 0 else 2
            stage_blocks = []
            for i in range(blocks):
                stage_blocks.append(Bottleneck(channels, planes, stride if i == 0 else 1, width_per_group))
                channels = planes * Bottleneck.expansion
            stages.append(nn.Sequential(*stage_blocks))
        self.stages = nn.Sequential(*stages)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(channels, num_classes)
        self._init_weights(zero_init_residual)

    def _init_weights(self, zero_init_residual: bool) -> None:
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(module, nn.BatchNorm2d):
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)
        if zero_init_residual:
            # Goyal et al. (2017): each block starts as the identity, which helps large-batch training.
            for module in self.modules():
                if isinstance(module, Bottleneck):
                    nn.init.zeros_(module.bn3.weight)

    def forward(self, x: Tensor) -> Tensor:
        out = self.stages(self.stem(x))
        return self.fc(self.pool(out).flatten(1))


def resnet50(
    num_classes: int = 1000, width_per_group: int = 64, zero_init_residual: bool = False
) -> nn.Module:
    """ResNet-50 v1.5: bottleneck stages [3, 4, 6, 3]; 25,557,032 parameters for 1000 classes."""
    return ResNet((3, 4, 6, 3), num_classes, width_per_group, zero_init_residual)

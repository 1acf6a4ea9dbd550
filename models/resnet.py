"""Our own ResNet-34/50 (torchvision-compatible layout) with operator placements.

``stage`` numbering follows the papers: stage 2 is ``layer1`` (56×56 at 224
input), stage 3 is ``layer2`` (28×28), stage 4 ``layer3``, stage 5 ``layer4``.
An operator placement replaces the 3×3 convolutions of one stage.
"""
from __future__ import annotations

from typing import Callable

import torch
from torch import nn

from xvdeploy.models.registry import register
from xvdeploy.ops.acmix import ACmix
from xvdeploy.ops.xvolution import XVolution
from xvdeploy.ops.xvolution_sa import XVolutionSA

#: ``make_conv3x3(in_channels, out_channels, stride) -> nn.Module``
Conv3x3Factory = Callable[[int, int, int], nn.Module]


def plain_conv3x3(cin: int, cout: int, stride: int) -> nn.Module:
    return nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False)


OPERATORS: dict[str, Conv3x3Factory] = {
    "conv": plain_conv3x3,
    "xv": lambda cin, cout, stride: XVolution(cin, cout, 3, 3, stride=stride),
    "xvsa": lambda cin, cout, stride: XVolutionSA(cin, cout, 3, heads=4, stride=stride),
    "acmix": lambda cin, cout, stride: ACmix(cin, cout, kernel_att=7, head=4, kernel_conv=3, stride=stride),
}


class BasicBlock(nn.Module):
    expansion = 1

    def __init__(self, cin: int, planes: int, stride: int, conv3x3: Conv3x3Factory) -> None:
        super().__init__()
        self.conv1 = conv3x3(cin, planes, stride)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = conv3x3(planes, planes, 1)
        self.bn2 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = _downsample(cin, planes, stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        return self.relu(self.bn2(self.conv2(out)) + identity)


class Bottleneck(nn.Module):
    expansion = 4

    def __init__(self, cin: int, planes: int, stride: int, conv3x3: Conv3x3Factory) -> None:
        super().__init__()
        width = planes
        self.conv1 = nn.Conv2d(cin, width, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.conv2 = conv3x3(width, width, stride)
        self.bn2 = nn.BatchNorm2d(width)
        self.conv3 = nn.Conv2d(width, planes * 4, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(planes * 4)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = _downsample(cin, planes * 4, stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        return self.relu(self.bn3(self.conv3(out)) + identity)


def _downsample(cin: int, cout: int, stride: int) -> nn.Module | None:
    if stride == 1 and cin == cout:
        return None
    return nn.Sequential(nn.Conv2d(cin, cout, 1, stride=stride, bias=False), nn.BatchNorm2d(cout))


class ResNet(nn.Module):
    """ResNet with a per-stage choice of 3×3 operator (``operators[i]`` for stage ``i + 2``)."""

    def __init__(self, block: type[nn.Module], layers: list[int], operators: list[str] | None = None,
                 num_classes: int = 1000, in_channels: int = 3) -> None:
        super().__init__()
        operators = operators or ["conv"] * 4
        self.conv1 = nn.Conv2d(in_channels, 64, 7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, stride=2, padding=1)
        cin = 64
        stages = []
        for i, (planes, blocks) in enumerate(zip((64, 128, 256, 512), layers)):
            conv3x3 = OPERATORS[operators[i]]
            stride = 1 if i == 0 else 2
            stage = []
            for j in range(blocks):
                stage.append(block(cin, planes, stride if j == 0 else 1, conv3x3))
                cin = planes * block.expansion
            stages.append(nn.Sequential(*stage))
        self.layer1, self.layer2, self.layer3, self.layer4 = stages
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(cin, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.fc(torch.flatten(self.avgpool(x), 1))


_DEPTHS = {"resnet34": (BasicBlock, [3, 4, 6, 3]), "resnet50": (Bottleneck, [3, 4, 6, 3])}
_IMAGENET = (3, 224, 224)


def _resnet(depth: str, placement: dict[int, str] | None = None, num_classes: int = 1000) -> ResNet:
    block, layers = _DEPTHS[depth]
    operators = [(placement or {}).get(stage, "conv") for stage in (2, 3, 4, 5)]
    return ResNet(block, layers, operators, num_classes=num_classes)


def _register_all() -> None:
    for depth in ("resnet34", "resnet50"):
        register(depth, _IMAGENET, f"{depth} (plain convolutions)", depth=depth)(_resnet)
        for stage in (3, 4, 5):
            register(f"xv_{depth}_s{stage}", _IMAGENET,
                     f"{depth} with X-volution replacing the 3×3 convs of stage {stage}",
                     depth=depth, placement={stage: "xv"})(_resnet)
    register("xvsa_resnet50_s5", _IMAGENET, "resnet50 with X-volution(SA) in stage 5",
             depth="resnet50", placement={5: "xvsa"})(_resnet)
    register("acmix_resnet50", _IMAGENET, "resnet50 with ACmix replacing every 3×3 conv",
             depth="resnet50", placement={s: "acmix" for s in (2, 3, 4, 5)})(_resnet)


_register_all()

"""``xv_digits``: a small X-volution network for scikit-learn's 8×8 digits.

Trained by ``models/train_digits.py`` (deterministic, < 1 minute on CPU);
its checkpoint ``xv_digits.safetensors`` ships with the package.
"""
from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from xvdeploy.models.registry import register
from xvdeploy.ops.xvolution import XVolution

CHECKPOINT = Path(__file__).with_name("xv_digits.safetensors")


class XVDigits(nn.Module):
    """stem conv → X-volution → X-volution (stride 2) → pool → linear."""

    def __init__(self, width: int = 16, num_classes: int = 10) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(1, width, 3, padding=1, bias=False), nn.BatchNorm2d(width), nn.ReLU())
        self.xv1 = XVolution(width, width, 3, 3)
        self.xv2 = XVolution(width, 2 * width, 3, 3, stride=2)
        self.relu = nn.ReLU()
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(2 * width, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)
        x = self.relu(self.xv1(x))
        x = self.relu(self.xv2(x))
        return self.fc(torch.flatten(self.pool(x), 1))


register("xv_digits", (1, 8, 8), "small X-volution net trained on scikit-learn's digits (checkpoint shipped)",
         checkpoint=CHECKPOINT)(XVDigits)

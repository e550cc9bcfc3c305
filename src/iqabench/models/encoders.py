"""Quality encoders: a CNN trunk that maps images to a feature map.

``small_cnn`` is sized for the 2-core CPU default (about 25 MFLOP per 64 px
image); ``resnet18`` / ``resnet50`` are torchvision's architectures with avgpool
and fc removed, so that CONTRIQUE's published ResNet-50 weights load as they are.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torchvision import models as tvm

ARCHS = ("small_cnn", "resnet18", "resnet50")


def _conv_bn(cin: int, cout: int, stride: int) -> list[nn.Module]:
    return [nn.Conv2d(cin, cout, 3, stride, 1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True)]


class SmallCNN(nn.Sequential):
    """Eight 3x3 conv-BN-ReLU layers in four stages, each halving the resolution."""

    def __init__(self, width: int = 16):
        layers, cin = [], 3
        for stage in range(4):
            cout = width * 2 ** stage
            layers += _conv_bn(cin, cout, 2) + _conv_bn(cout, cout, 1)
            cin = cout
        super().__init__(*layers)
        self.out_dim = cin


class ResNetTrunk(nn.Module):
    """torchvision ResNet up to layer4; parameter names match torchvision's state dict."""

    def __init__(self, arch: str):
        super().__init__()
        net = getattr(tvm, arch)(weights=None)
        self.out_dim = net.fc.in_features
        for name in ("conv1", "bn1", "relu", "maxpool", "layer1", "layer2", "layer3", "layer4"):
            self.add_module(name, getattr(net, name))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for module in self.children():
            x = module(x)
        return x


class Encoder(nn.Module):
    def __init__(self, arch: str = "small_cnn", width: int = 16):
        super().__init__()
        if arch not in ARCHS:
            raise ValueError(f"unknown encoder architecture {arch!r}; choose from {ARCHS}")
        self.arch, self.width = arch, width
        self.trunk = SmallCNN(width) if arch == "small_cnn" else ResNetTrunk(arch)
        self.out_dim = self.trunk.out_dim

    def feature_map(self, x: torch.Tensor) -> torch.Tensor:
        return self.trunk(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Global-average-pooled feature, B x out_dim."""
        return self.trunk(x).mean(dim=(2, 3))

    def config(self) -> dict:
        return {"arch": self.arch, "width": self.width}


class ProjectionHead(nn.Module):
    """CONTRIQUE's head: linear (no bias), BN, ReLU, linear, BN."""

    def __init__(self, in_dim: int, hidden_dim: int, out_dim: int):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(in_dim, hidden_dim, bias=False), nn.BatchNorm1d(hidden_dim),
                                 nn.ReLU(inplace=True), nn.Linear(hidden_dim, out_dim), nn.BatchNorm1d(out_dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


def grid_patches(feature_map: torch.Tensor, grid: int = 2) -> torch.Tensor:
    """Pool a B x C x h x w map into a grid x grid of patch vectors: (B * grid^2) x C, L2-normalised."""
    pooled = F.adaptive_avg_pool2d(feature_map, grid)
    return F.normalize(pooled.flatten(2).transpose(1, 2).reshape(-1, feature_map.shape[1]), dim=1)


@torch.no_grad()
def readout(encoder: Encoder, images: torch.Tensor) -> torch.Tensor:
    """CONTRIQUE's frozen readout: pooled features of the image and of its half-size copy, each L2-normalised."""
    half = F.interpolate(images, scale_factor=0.5, mode="bilinear", antialias=True, align_corners=False)
    return torch.cat([F.normalize(encoder(images), dim=1), F.normalize(encoder(half), dim=1)], dim=1)


def save(encoder: Encoder, path, **extra) -> None:
    from .. import io
    with io.atomic_path(path) as tmp:
        torch.save({"config": encoder.config(), "state_dict": encoder.state_dict(), **extra}, tmp)


def load(path, map_location="cpu") -> Encoder:
    blob = torch.load(path, map_location=map_location, weights_only=True)
    if not isinstance(blob, dict) or "config" not in blob or "state_dict" not in blob:
        raise ValueError(f"{path}: not an iqabench encoder file (expected keys 'config' and 'state_dict')")
    encoder = Encoder(**blob["config"])
    encoder.load_state_dict(blob["state_dict"])
    return encoder.eval()

"""Reference CNN zoo (random init) for spa's tests and benchmarks.

Every architecture is written in plain ``torch.nn`` (no torchvision) and follows
the block structure of the torchvision / paper reference implementation.  Each
model comes in two sizes:

* ``"tiny"``: reduced width / depth (every block *type* is still present, i.e.
  at least one down-sampling and one identity block), 32x32 or 64x64 input,
  < ~1M parameters, fast to export.
* ``"full"``: the real architecture at 224x224 with 1000 classes (parameter
  counts match torchvision exactly where torchvision has the model; exceptions:
  UNet has 3 output classes, simple_cnn "full" is a wider 64x64 variant).

Models are built deterministically (seed 0, global RNG state is left untouched)
and returned in ``eval()`` mode.  Normalisation layers get non-trivial affine
parameters and running statistics (see :func:`randomize_norms`) so that pruning
tests actually exercise BatchNorm bookkeeping.

Public API::

    ZOO: dict[str, ModelSpec]
    build(name, size="tiny") -> nn.Module
    example_input(name, size="tiny", batch=1) -> torch.Tensor
    export(name, path, *, size="tiny", dynamo=False, opset=17, dynamic_batch=True) -> Path
"""

from __future__ import annotations

import math
import os
import pathlib
import warnings
from dataclasses import dataclass
from typing import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from converters.torch_export import DYNAMO_MIN_OPSET, downconvert, quiet

__all__ = [
    "ZOO",
    "ModelSpec",
    "SIZES",
    "build",
    "example_input",
    "export",
    "count_params",
    "randomize_norms",
]

SIZES = ("tiny", "full")
SEED = 0


def _check_size(size: str) -> str:
    if size not in SIZES:
        raise ValueError(f"size must be one of {SIZES}, got {size!r}")
    return size


def _make_divisible(v: float, divisor: int, min_value: int | None = None) -> int:
    """torchvision's ``_make_divisible`` (channel rounding used by MobileNets)."""
    if min_value is None:
        min_value = divisor
    new_v = max(min_value, int(v + divisor / 2) // divisor * divisor)
    if new_v < 0.9 * v:
        new_v += divisor
    return new_v


def count_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


# ---------------------------------------------------------------------------
# Initialisation helpers
# ---------------------------------------------------------------------------

_NORM_TYPES = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d, nn.GroupNorm, nn.LayerNorm, nn.InstanceNorm2d)


def _init_weights(model: nn.Module) -> None:
    """Common init: conv kaiming-normal (fan_out, relu), zero-ish conv bias,
    default (uniform) Linear init with a random bias."""
    for m in model.modules():
        if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            if m.bias is not None:
                nn.init.normal_(m.bias, 0.0, 0.05)
        elif isinstance(m, nn.Linear):
            bound = 1.0 / math.sqrt(m.in_features)
            nn.init.uniform_(m.weight, -bound, bound)
            if m.bias is not None:
                nn.init.normal_(m.bias, 0.0, 0.05)


@torch.no_grad()
def randomize_norms(
    model: nn.Module,
    seed: int = SEED,
    calib_input: torch.Tensor | None = None,
) -> nn.Module:
    """Give every norm layer non-trivial affine params and running statistics.

    weight ~ U(0.5, 1.5), bias ~ N(0, 0.1), running_mean ~ N(0, 0.1),
    running_var ~ U(0.5, 1.5).  If ``calib_input`` is given, the BatchNorm running
    statistics are then *re-estimated* from one train-mode forward pass on that
    input (cumulative average), and finally perturbed per channel
    (mean += N(0, 0.1) * std, var *= U(0.7, 1.4)).  The calibration keeps
    activations well scaled through deep random networks (no explosion /
    vanishing), while the statistics remain channel-specific and far from the
    trivial 0 / 1 values.
    """
    g = torch.Generator().manual_seed(seed)

    def _u(shape, lo, hi):
        return torch.rand(shape, generator=g) * (hi - lo) + lo

    def _n(shape, std):
        return torch.randn(shape, generator=g) * std

    norms = [m for m in model.modules() if isinstance(m, _NORM_TYPES)]
    for m in norms:
        w = getattr(m, "weight", None)
        b = getattr(m, "bias", None)
        if isinstance(w, torch.Tensor):
            w.copy_(_u(w.shape, 0.5, 1.5))
        if isinstance(b, torch.Tensor):
            b.copy_(_n(b.shape, 0.1))
        rm = getattr(m, "running_mean", None)
        rv = getattr(m, "running_var", None)
        if isinstance(rm, torch.Tensor) and isinstance(rv, torch.Tensor):
            rm.copy_(_n(rm.shape, 0.1))
            rv.copy_(_u(rv.shape, 0.5, 1.5))

    bns = [m for m in norms if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.track_running_stats]
    if calib_input is not None and bns:
        was_training = model.training
        saved = {}
        for m in bns:
            saved[m] = m.momentum
            m.reset_running_stats()
            m.momentum = None  # cumulative moving average
        model.train()
        model(calib_input)
        model.train(was_training)
        for m in bns:
            m.momentum = saved[m]
            std = m.running_var.clamp_min(1e-5).sqrt()
            m.running_mean.add_(_n(m.running_mean.shape, 0.1) * std)
            m.running_var.mul_(_u(m.running_var.shape, 0.7, 1.4))
            m.num_batches_tracked.fill_(1)
    return model


# ---------------------------------------------------------------------------
# Small building blocks
# ---------------------------------------------------------------------------


class ConvBNAct(nn.Sequential):
    """Conv2d (no bias) -> BatchNorm2d -> optional activation."""

    def __init__(
        self,
        cin: int,
        cout: int,
        k: int = 3,
        stride: int = 1,
        groups: int = 1,
        act: Callable[[], nn.Module] | None = nn.ReLU,
        padding: int | None = None,
        bn_eps: float = 1e-5,
    ):
        if padding is None:
            padding = (k - 1) // 2
        layers: list[nn.Module] = [
            nn.Conv2d(cin, cout, k, stride, padding, groups=groups, bias=False),
            nn.BatchNorm2d(cout, eps=bn_eps),
        ]
        if act is not None:
            layers.append(act(inplace=True) if act in (nn.ReLU, nn.ReLU6, nn.SiLU, nn.Hardswish) else act())
        super().__init__(*layers)


class SqueezeExcitation(nn.Module):
    """torchvision.ops.SqueezeExcitation: avgpool -> fc1 -> act -> fc2 -> scale_act -> mul."""

    def __init__(
        self,
        channels: int,
        squeeze_channels: int,
        activation: Callable[..., nn.Module] = nn.ReLU,
        scale_activation: Callable[..., nn.Module] = nn.Sigmoid,
    ):
        super().__init__()
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc1 = nn.Conv2d(channels, squeeze_channels, 1)
        self.fc2 = nn.Conv2d(squeeze_channels, channels, 1)
        self.activation = activation()
        self.scale_activation = scale_activation()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = self.avgpool(x)
        s = self.activation(self.fc1(s))
        s = self.scale_activation(self.fc2(s))
        return s * x


# ---------------------------------------------------------------------------
# ResNet / ResNeXt
# ---------------------------------------------------------------------------


def _conv3x3(cin: int, cout: int, stride: int = 1, groups: int = 1) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, 3, stride, 1, groups=groups, bias=False)


def _conv1x1(cin: int, cout: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, 1, stride, bias=False)


class BasicBlock(nn.Module):
    expansion = 1

    def __init__(self, inplanes, planes, stride=1, downsample=None, groups=1, base_width=64):
        super().__init__()
        self.conv1 = _conv3x3(inplanes, planes, stride)
        self.bn1 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = _conv3x3(planes, planes)
        self.bn2 = nn.BatchNorm2d(planes)
        self.downsample = downsample

    def forward(self, x):
        identity = x
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        if self.downsample is not None:
            identity = self.downsample(x)
        return self.relu(out + identity)


class Bottleneck(nn.Module):
    expansion = 4

    def __init__(self, inplanes, planes, stride=1, downsample=None, groups=1, base_width=64):
        super().__init__()
        width = int(planes * (base_width / 64.0)) * groups
        self.conv1 = _conv1x1(inplanes, width)
        self.bn1 = nn.BatchNorm2d(width)
        self.conv2 = _conv3x3(width, width, stride, groups)
        self.bn2 = nn.BatchNorm2d(width)
        self.conv3 = _conv1x1(width, planes * self.expansion)
        self.bn3 = nn.BatchNorm2d(planes * self.expansion)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    def forward(self, x):
        identity = x
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        if self.downsample is not None:
            identity = self.downsample(x)
        return self.relu(out + identity)


class ResNet(nn.Module):
    """torchvision.models.ResNet layout (conv1/bn1/relu/maxpool/layer1-4/avgpool/fc)."""

    def __init__(
        self,
        block: type[BasicBlock] | type[Bottleneck],
        layers: Sequence[int],
        num_classes: int = 1000,
        groups: int = 1,
        width_per_group: int = 64,
        base_planes: int = 64,
    ):
        super().__init__()
        self.inplanes = base_planes
        self.groups = groups
        self.base_width = width_per_group
        self.conv1 = nn.Conv2d(3, self.inplanes, 7, 2, 3, bias=False)
        self.bn1 = nn.BatchNorm2d(self.inplanes)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, 2, 1)
        p = base_planes
        self.layer1 = self._make_layer(block, p, layers[0])
        self.layer2 = self._make_layer(block, 2 * p, layers[1], stride=2)
        self.layer3 = self._make_layer(block, 4 * p, layers[2], stride=2)
        self.layer4 = self._make_layer(block, 8 * p, layers[3], stride=2)
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.fc = nn.Linear(8 * p * block.expansion, num_classes)

    def _make_layer(self, block, planes, blocks, stride=1):
        downsample = None
        if stride != 1 or self.inplanes != planes * block.expansion:
            downsample = nn.Sequential(
                _conv1x1(self.inplanes, planes * block.expansion, stride),
                nn.BatchNorm2d(planes * block.expansion),
            )
        layers = [block(self.inplanes, planes, stride, downsample, self.groups, self.base_width)]
        self.inplanes = planes * block.expansion
        for _ in range(1, blocks):
            layers.append(block(self.inplanes, planes, groups=self.groups, base_width=self.base_width))
        return nn.Sequential(*layers)

    def forward(self, x):
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        x = torch.flatten(self.avgpool(x), 1)
        return self.fc(x)


def _resnet18(size: str) -> nn.Module:
    if size == "full":
        return ResNet(BasicBlock, [2, 2, 2, 2], 1000)
    # layer1: identity blocks; layer2: downsample block + identity block.
    return ResNet(BasicBlock, [1, 2, 1, 1], 10, base_planes=16)


def _resnet50(size: str) -> nn.Module:
    if size == "full":
        return ResNet(Bottleneck, [3, 4, 6, 3], 1000)
    return ResNet(Bottleneck, [1, 2, 1, 1], 10, base_planes=8)


def _resnext(size: str) -> nn.Module:
    if size == "full":  # ResNeXt-50 32x4d
        return ResNet(Bottleneck, [3, 4, 6, 3], 1000, groups=32, width_per_group=4)
    # group conv widths 16/32/64/128 with 4 groups (group width 4..32)
    return ResNet(Bottleneck, [1, 2, 1, 1], 10, groups=4, width_per_group=16, base_planes=8)


# ---------------------------------------------------------------------------
# MobileNetV2
# ---------------------------------------------------------------------------


class InvertedResidualV2(nn.Module):
    def __init__(self, inp: int, oup: int, stride: int, expand_ratio: int):
        super().__init__()
        self.stride = stride
        hidden = int(round(inp * expand_ratio))
        self.use_res_connect = stride == 1 and inp == oup
        layers: list[nn.Module] = []
        if expand_ratio != 1:
            layers.append(ConvBNAct(inp, hidden, 1, act=nn.ReLU6))
        layers += [
            ConvBNAct(hidden, hidden, 3, stride, groups=hidden, act=nn.ReLU6),
            nn.Conv2d(hidden, oup, 1, 1, 0, bias=False),
            nn.BatchNorm2d(oup),
        ]
        self.conv = nn.Sequential(*layers)
        self.out_channels = oup

    def forward(self, x):
        if self.use_res_connect:
            return x + self.conv(x)
        return self.conv(x)


class MobileNetV2(nn.Module):
    FULL_SETTING = [
        # t, c, n, s
        [1, 16, 1, 1],
        [6, 24, 2, 2],
        [6, 32, 3, 2],
        [6, 64, 4, 2],
        [6, 96, 3, 1],
        [6, 160, 3, 2],
        [6, 320, 1, 1],
    ]

    def __init__(
        self,
        num_classes: int = 1000,
        width_mult: float = 1.0,
        setting: Sequence[Sequence[int]] | None = None,
        last_channel: int = 1280,
        round_nearest: int = 8,
        dropout: float = 0.2,
    ):
        super().__init__()
        setting = setting or self.FULL_SETTING
        input_channel = _make_divisible(32 * width_mult, round_nearest)
        self.last_channel = _make_divisible(last_channel * max(1.0, width_mult), round_nearest)
        features: list[nn.Module] = [ConvBNAct(3, input_channel, 3, 2, act=nn.ReLU6)]
        for t, c, n, s in setting:
            out = _make_divisible(c * width_mult, round_nearest)
            for i in range(n):
                features.append(InvertedResidualV2(input_channel, out, s if i == 0 else 1, t))
                input_channel = out
        features.append(ConvBNAct(input_channel, self.last_channel, 1, act=nn.ReLU6))
        self.features = nn.Sequential(*features)
        self.classifier = nn.Sequential(nn.Dropout(dropout), nn.Linear(self.last_channel, num_classes))

    def forward(self, x):
        x = self.features(x)
        x = F.adaptive_avg_pool2d(x, (1, 1))
        x = torch.flatten(x, 1)
        return self.classifier(x)


def _mobilenet_v2(size: str) -> nn.Module:
    if size == "full":
        return MobileNetV2(1000)
    # every stage kept (t=1 block, stride-2 expand blocks, stride-1 residual blocks,
    # stride-1 width-changing block) but at most 2 blocks per stage and width 0.25.
    setting = [[t, c, min(n, 2), s] for t, c, n, s in MobileNetV2.FULL_SETTING]
    return MobileNetV2(10, width_mult=0.25, setting=setting, last_channel=256)


# ---------------------------------------------------------------------------
# MobileNetV3
# ---------------------------------------------------------------------------


@dataclass(frozen=True)
class _V3Conf:
    input_c: int
    kernel: int
    expanded_c: int
    out_c: int
    use_se: bool
    activation: str  # "RE" | "HS"
    stride: int

    def scaled(self, width_mult: float) -> "_V3Conf":
        f = lambda c: _make_divisible(c * width_mult, 8)  # noqa: E731
        return _V3Conf(f(self.input_c), self.kernel, f(self.expanded_c), f(self.out_c), self.use_se, self.activation, self.stride)


class InvertedResidualV3(nn.Module):
    def __init__(self, cnf: _V3Conf):
        super().__init__()
        self.use_res_connect = cnf.stride == 1 and cnf.input_c == cnf.out_c
        act = nn.Hardswish if cnf.activation == "HS" else nn.ReLU
        layers: list[nn.Module] = []
        if cnf.expanded_c != cnf.input_c:
            layers.append(ConvBNAct(cnf.input_c, cnf.expanded_c, 1, act=act, bn_eps=0.001))
        layers.append(
            ConvBNAct(cnf.expanded_c, cnf.expanded_c, cnf.kernel, cnf.stride, groups=cnf.expanded_c, act=act, bn_eps=0.001)
        )
        if cnf.use_se:
            squeeze = _make_divisible(cnf.expanded_c // 4, 8)
            layers.append(SqueezeExcitation(cnf.expanded_c, squeeze, nn.ReLU, nn.Hardsigmoid))
        layers.append(ConvBNAct(cnf.expanded_c, cnf.out_c, 1, act=None, bn_eps=0.001))
        self.block = nn.Sequential(*layers)
        self.out_channels = cnf.out_c

    def forward(self, x):
        out = self.block(x)
        if self.use_res_connect:
            out = out + x
        return out


_V3_LARGE = [
    _V3Conf(16, 3, 16, 16, False, "RE", 1),
    _V3Conf(16, 3, 64, 24, False, "RE", 2),
    _V3Conf(24, 3, 72, 24, False, "RE", 1),
    _V3Conf(24, 5, 72, 40, True, "RE", 2),
    _V3Conf(40, 5, 120, 40, True, "RE", 1),
    _V3Conf(40, 5, 120, 40, True, "RE", 1),
    _V3Conf(40, 3, 240, 80, False, "HS", 2),
    _V3Conf(80, 3, 200, 80, False, "HS", 1),
    _V3Conf(80, 3, 184, 80, False, "HS", 1),
    _V3Conf(80, 3, 184, 80, False, "HS", 1),
    _V3Conf(80, 3, 480, 112, True, "HS", 1),
    _V3Conf(112, 3, 672, 112, True, "HS", 1),
    _V3Conf(112, 5, 672, 160, True, "HS", 2),
    _V3Conf(160, 5, 960, 160, True, "HS", 1),
    _V3Conf(160, 5, 960, 160, True, "HS", 1),
]

_V3_SMALL = [
    _V3Conf(16, 3, 16, 16, True, "RE", 2),
    _V3Conf(16, 3, 72, 24, False, "RE", 2),
    _V3Conf(24, 3, 88, 24, False, "RE", 1),
    _V3Conf(24, 5, 96, 40, True, "HS", 2),
    _V3Conf(40, 5, 240, 40, True, "HS", 1),
    _V3Conf(40, 5, 240, 40, True, "HS", 1),
    _V3Conf(40, 5, 120, 48, True, "HS", 1),
    _V3Conf(48, 5, 144, 48, True, "HS", 1),
    _V3Conf(48, 5, 288, 96, True, "HS", 2),
    _V3Conf(96, 5, 576, 96, True, "HS", 1),
    _V3Conf(96, 5, 576, 96, True, "HS", 1),
]


class MobileNetV3(nn.Module):
    def __init__(
        self,
        setting: Sequence[_V3Conf],
        last_channel: int,
        num_classes: int = 1000,
        width_mult: float = 1.0,
        dropout: float = 0.2,
    ):
        super().__init__()
        setting = [c.scaled(width_mult) for c in setting]
        first = setting[0].input_c
        layers: list[nn.Module] = [ConvBNAct(3, first, 3, 2, act=nn.Hardswish, bn_eps=0.001)]
        layers += [InvertedResidualV3(c) for c in setting]
        lastconv_in = setting[-1].out_c
        lastconv_out = 6 * lastconv_in
        layers.append(ConvBNAct(lastconv_in, lastconv_out, 1, act=nn.Hardswish, bn_eps=0.001))
        self.features = nn.Sequential(*layers)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Sequential(
            nn.Linear(lastconv_out, last_channel),
            nn.Hardswish(inplace=True),
            nn.Dropout(p=dropout, inplace=True),
            nn.Linear(last_channel, num_classes),
        )

    def forward(self, x):
        x = self.features(x)
        x = torch.flatten(self.avgpool(x), 1)
        return self.classifier(x)


def _mobilenet_v3(size: str, variant: str | None = None) -> nn.Module:
    if size == "full":
        if (variant or "large") == "large":
            return MobileNetV3(_V3_LARGE, 1280, 1000)
        return MobileNetV3(_V3_SMALL, 1024, 1000)
    # MobileNetV3-Small layout at width 0.5 (covers: SE block without expansion,
    # ReLU/Hardswish blocks, with/without SE, stride 2, residual, width change).
    return MobileNetV3(_V3_SMALL, 128, 10, width_mult=0.5)


# ---------------------------------------------------------------------------
# EfficientNet-B0
# ---------------------------------------------------------------------------


class MBConv(nn.Module):
    def __init__(self, expand_ratio: float, kernel: int, stride: int, cin: int, cout: int, se_ratio: float = 0.25):
        super().__init__()
        self.use_res_connect = stride == 1 and cin == cout
        expanded = _make_divisible(cin * expand_ratio, 8)
        layers: list[nn.Module] = []
        if expanded != cin:
            layers.append(ConvBNAct(cin, expanded, 1, act=nn.SiLU))
        layers.append(ConvBNAct(expanded, expanded, kernel, stride, groups=expanded, act=nn.SiLU))
        squeeze = max(1, int(cin * se_ratio))
        layers.append(SqueezeExcitation(expanded, squeeze, nn.SiLU, nn.Sigmoid))
        layers.append(ConvBNAct(expanded, cout, 1, act=None))
        self.block = nn.Sequential(*layers)
        # stochastic depth is the identity in eval() and therefore omitted.
        self.out_channels = cout

    def forward(self, x):
        out = self.block(x)
        if self.use_res_connect:
            out = out + x
        return out


class EfficientNet(nn.Module):
    B0_SETTING = [
        # expand, kernel, stride, in, out, layers
        (1, 3, 1, 32, 16, 1),
        (6, 3, 2, 16, 24, 2),
        (6, 5, 2, 24, 40, 2),
        (6, 3, 2, 40, 80, 3),
        (6, 5, 1, 80, 112, 3),
        (6, 5, 2, 112, 192, 4),
        (6, 3, 1, 192, 320, 1),
    ]

    def __init__(self, setting=None, num_classes: int = 1000, width_mult: float = 1.0, dropout: float = 0.2,
                 last_channel: int | None = None):
        super().__init__()
        setting = setting or self.B0_SETTING
        adj = lambda c: _make_divisible(c * width_mult, 8)  # noqa: E731
        first = adj(setting[0][3])
        layers: list[nn.Module] = [ConvBNAct(3, first, 3, 2, act=nn.SiLU)]
        for e, k, s, cin, cout, n in setting:
            stage: list[nn.Module] = []
            cin, cout = adj(cin), adj(cout)
            for i in range(n):
                stage.append(MBConv(e, k, s if i == 0 else 1, cin if i == 0 else cout, cout))
            layers.append(nn.Sequential(*stage))
        lastconv_in = adj(setting[-1][4])
        lastconv_out = last_channel or 4 * lastconv_in
        layers.append(ConvBNAct(lastconv_in, lastconv_out, 1, act=nn.SiLU))
        self.features = nn.Sequential(*layers)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Sequential(nn.Dropout(p=dropout, inplace=True), nn.Linear(lastconv_out, num_classes))

    def forward(self, x):
        x = self.features(x)
        x = torch.flatten(self.avgpool(x), 1)
        return self.classifier(x)


def _efficientnet(size: str) -> nn.Module:
    if size == "full":
        return EfficientNet(num_classes=1000)
    setting = [(e, k, s, i, o, min(n, 2)) for e, k, s, i, o, n in EfficientNet.B0_SETTING]
    return EfficientNet(setting, num_classes=10, width_mult=0.25, last_channel=256)


# ---------------------------------------------------------------------------
# DenseNet-121
# ---------------------------------------------------------------------------


class _DenseLayer(nn.Module):
    def __init__(self, num_input_features: int, growth_rate: int, bn_size: int):
        super().__init__()
        self.norm1 = nn.BatchNorm2d(num_input_features)
        self.relu1 = nn.ReLU(inplace=True)
        self.conv1 = nn.Conv2d(num_input_features, bn_size * growth_rate, 1, 1, bias=False)
        self.norm2 = nn.BatchNorm2d(bn_size * growth_rate)
        self.relu2 = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(bn_size * growth_rate, growth_rate, 3, 1, 1, bias=False)

    def forward(self, inputs: list[torch.Tensor]) -> torch.Tensor:
        x = torch.cat(inputs, 1)
        x = self.conv1(self.relu1(self.norm1(x)))
        return self.conv2(self.relu2(self.norm2(x)))


class _DenseBlock(nn.ModuleDict):
    def __init__(self, num_layers: int, num_input_features: int, bn_size: int, growth_rate: int):
        super().__init__()
        for i in range(num_layers):
            self.add_module(f"denselayer{i + 1}", _DenseLayer(num_input_features + i * growth_rate, growth_rate, bn_size))

    def forward(self, init_features: torch.Tensor) -> torch.Tensor:
        features = [init_features]
        for layer in self.values():
            features.append(layer(features))
        return torch.cat(features, 1)


class _Transition(nn.Sequential):
    def __init__(self, cin: int, cout: int):
        super().__init__()
        self.norm = nn.BatchNorm2d(cin)
        self.relu = nn.ReLU(inplace=True)
        self.conv = nn.Conv2d(cin, cout, 1, 1, bias=False)
        self.pool = nn.AvgPool2d(2, 2)


class DenseNet(nn.Module):
    def __init__(self, growth_rate=32, block_config=(6, 12, 24, 16), num_init_features=64, bn_size=4, num_classes=1000):
        super().__init__()
        self.features = nn.Sequential()
        self.features.add_module("conv0", nn.Conv2d(3, num_init_features, 7, 2, 3, bias=False))
        self.features.add_module("norm0", nn.BatchNorm2d(num_init_features))
        self.features.add_module("relu0", nn.ReLU(inplace=True))
        self.features.add_module("pool0", nn.MaxPool2d(3, 2, 1))
        nf = num_init_features
        for i, n in enumerate(block_config):
            self.features.add_module(f"denseblock{i + 1}", _DenseBlock(n, nf, bn_size, growth_rate))
            nf += n * growth_rate
            if i != len(block_config) - 1:
                self.features.add_module(f"transition{i + 1}", _Transition(nf, nf // 2))
                nf //= 2
        self.features.add_module("norm5", nn.BatchNorm2d(nf))
        self.classifier = nn.Linear(nf, num_classes)

    def forward(self, x):
        x = F.relu(self.features(x), inplace=True)
        x = torch.flatten(F.adaptive_avg_pool2d(x, (1, 1)), 1)
        return self.classifier(x)


def _densenet(size: str) -> nn.Module:
    if size == "full":
        return DenseNet()
    return DenseNet(growth_rate=8, block_config=(2, 2, 2, 2), num_init_features=16, bn_size=4, num_classes=10)


# ---------------------------------------------------------------------------
# GoogLeNet (Inception v1)
# ---------------------------------------------------------------------------


class BasicConv2d(nn.Module):
    def __init__(self, cin: int, cout: int, **kwargs):
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, bias=False, **kwargs)
        self.bn = nn.BatchNorm2d(cout, eps=0.001)

    def forward(self, x):
        return F.relu(self.bn(self.conv(x)), inplace=True)


class Inception(nn.Module):
    def __init__(self, cin, ch1x1, ch3x3red, ch3x3, ch5x5red, ch5x5, pool_proj, k5: int = 3):
        super().__init__()
        self.branch1 = BasicConv2d(cin, ch1x1, kernel_size=1)
        self.branch2 = nn.Sequential(
            BasicConv2d(cin, ch3x3red, kernel_size=1), BasicConv2d(ch3x3red, ch3x3, kernel_size=3, padding=1)
        )
        # torchvision uses a 3x3 conv in the "5x5" branch (kept for param parity).
        self.branch3 = nn.Sequential(
            BasicConv2d(cin, ch5x5red, kernel_size=1), BasicConv2d(ch5x5red, ch5x5, kernel_size=k5, padding=k5 // 2)
        )
        self.branch4 = nn.Sequential(
            nn.MaxPool2d(kernel_size=3, stride=1, padding=1, ceil_mode=True), BasicConv2d(cin, pool_proj, kernel_size=1)
        )

    def forward(self, x):
        return torch.cat([self.branch1(x), self.branch2(x), self.branch3(x), self.branch4(x)], 1)


class GoogLeNet(nn.Module):
    # (ch1x1, ch3x3red, ch3x3, ch5x5red, ch5x5, pool_proj) ; "M" = max-pool
    FULL_CFG = [
        ("inception3a", (64, 96, 128, 16, 32, 32)),
        ("inception3b", (128, 128, 192, 32, 96, 64)),
        ("maxpool3", 3),
        ("inception4a", (192, 96, 208, 16, 48, 64)),
        ("inception4b", (160, 112, 224, 24, 64, 64)),
        ("inception4c", (128, 128, 256, 24, 64, 64)),
        ("inception4d", (112, 144, 288, 32, 64, 64)),
        ("inception4e", (256, 160, 320, 32, 128, 128)),
        ("maxpool4", 2),
        ("inception5a", (256, 160, 320, 32, 128, 128)),
        ("inception5b", (384, 192, 384, 48, 128, 128)),
    ]

    def __init__(self, cfg=None, num_classes=1000, width_div: int = 1, dropout: float = 0.2, k5: int = 3):
        super().__init__()
        cfg = cfg or self.FULL_CFG
        d = lambda c: max(2, c // width_div)  # noqa: E731
        self.conv1 = BasicConv2d(3, d(64), kernel_size=7, stride=2, padding=3)
        self.maxpool1 = nn.MaxPool2d(3, stride=2, ceil_mode=True)
        self.conv2 = BasicConv2d(d(64), d(64), kernel_size=1)
        self.conv3 = BasicConv2d(d(64), d(192), kernel_size=3, padding=1)
        self.maxpool2 = nn.MaxPool2d(3, stride=2, ceil_mode=True)
        c = d(192)
        self.body = nn.Sequential()
        for name, spec in cfg:
            if name.startswith("maxpool"):
                self.body.add_module(name, nn.MaxPool2d(spec, stride=2, ceil_mode=True))
            else:
                chans = tuple(d(v) for v in spec)
                self.body.add_module(name, Inception(c, *chans, k5=k5))
                c = chans[0] + chans[2] + chans[4] + chans[5]
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.dropout = nn.Dropout(dropout)
        self.fc = nn.Linear(c, num_classes)

    def forward(self, x):
        x = self.maxpool1(self.conv1(x))
        x = self.maxpool2(self.conv3(self.conv2(x)))
        x = self.body(x)
        x = torch.flatten(self.avgpool(x), 1)
        return self.fc(self.dropout(x))


def _googlenet(size: str) -> nn.Module:
    if size == "full":
        return GoogLeNet()
    keep = {"inception3a", "inception3b", "maxpool3", "inception4a", "inception4b", "maxpool4", "inception5a"}
    cfg = [(n, s) for n, s in GoogLeNet.FULL_CFG if n in keep]
    return GoogLeNet(cfg, num_classes=10, width_div=4)


# ---------------------------------------------------------------------------
# SqueezeNet 1.1
# ---------------------------------------------------------------------------


class Fire(nn.Module):
    def __init__(self, inplanes: int, squeeze: int, e1: int, e3: int):
        super().__init__()
        self.squeeze = nn.Conv2d(inplanes, squeeze, 1)
        self.squeeze_activation = nn.ReLU(inplace=True)
        self.expand1x1 = nn.Conv2d(squeeze, e1, 1)
        self.expand1x1_activation = nn.ReLU(inplace=True)
        self.expand3x3 = nn.Conv2d(squeeze, e3, 3, padding=1)
        self.expand3x3_activation = nn.ReLU(inplace=True)

    def forward(self, x):
        x = self.squeeze_activation(self.squeeze(x))
        return torch.cat(
            [self.expand1x1_activation(self.expand1x1(x)), self.expand3x3_activation(self.expand3x3(x))], 1
        )


class SqueezeNet(nn.Module):
    """SqueezeNet 1.1 (no BatchNorm, conv biases, conv classifier)."""

    def __init__(self, num_classes=1000, width_div: int = 1, dropout: float = 0.5):
        super().__init__()
        d = lambda c: max(2, c // width_div)  # noqa: E731
        self.features = nn.Sequential(
            nn.Conv2d(3, d(64), 3, stride=2),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(3, 2, ceil_mode=True),
            Fire(d(64), d(16), d(64), d(64)),
            Fire(2 * d(64), d(16), d(64), d(64)),
            nn.MaxPool2d(3, 2, ceil_mode=True),
            Fire(2 * d(64), d(32), d(128), d(128)),
            Fire(2 * d(128), d(32), d(128), d(128)),
            nn.MaxPool2d(3, 2, ceil_mode=True),
            Fire(2 * d(128), d(48), d(192), d(192)),
            Fire(2 * d(192), d(48), d(192), d(192)),
            Fire(2 * d(192), d(64), d(256), d(256)),
            Fire(2 * d(256), d(64), d(256), d(256)),
        )
        final_conv = nn.Conv2d(2 * d(256), num_classes, 1)
        self.classifier = nn.Sequential(
            nn.Dropout(p=dropout), final_conv, nn.ReLU(inplace=True), nn.AdaptiveAvgPool2d((1, 1))
        )

    def forward(self, x):
        x = self.classifier(self.features(x))
        return torch.flatten(x, 1)


def _squeezenet(size: str) -> nn.Module:
    if size == "full":
        return SqueezeNet(1000)
    return SqueezeNet(10, width_div=4)


# ---------------------------------------------------------------------------
# RegNet (X / Y)
# ---------------------------------------------------------------------------


class BottleneckTransform(nn.Module):
    def __init__(self, w_in: int, w_out: int, stride: int, group_width: int, bottleneck_multiplier: float, se_ratio):
        super().__init__()
        w_b = int(round(w_out * bottleneck_multiplier))
        g = w_b // group_width
        self.a = ConvBNAct(w_in, w_b, 1)
        self.b = ConvBNAct(w_b, w_b, 3, stride, groups=g)
        if se_ratio:
            self.se = SqueezeExcitation(w_b, int(round(se_ratio * w_in)), nn.ReLU, nn.Sigmoid)
        self.c = ConvBNAct(w_b, w_out, 1, act=None)

    def forward(self, x):
        x = self.b(self.a(x))
        if hasattr(self, "se"):
            x = self.se(x)
        return self.c(x)


class ResBottleneckBlock(nn.Module):
    def __init__(self, w_in, w_out, stride, group_width=1, bottleneck_multiplier=1.0, se_ratio=None):
        super().__init__()
        self.proj = None
        if w_in != w_out or stride != 1:
            self.proj = ConvBNAct(w_in, w_out, 1, stride, act=None)
        self.f = BottleneckTransform(w_in, w_out, stride, group_width, bottleneck_multiplier, se_ratio)
        self.activation = nn.ReLU(inplace=True)

    def forward(self, x):
        sc = x if self.proj is None else self.proj(x)
        return self.activation(sc + self.f(x))


class RegNet(nn.Module):
    def __init__(self, widths, depths, group_width, se_ratio=None, stem_width=32, num_classes=1000,
                 bottleneck_multiplier: float = 1.0):
        super().__init__()
        self.stem = ConvBNAct(3, stem_width, 3, 2)
        w_in = stem_width
        stages = []
        for i, (w, d) in enumerate(zip(widths, depths)):
            blocks = [
                ResBottleneckBlock(w_in if j == 0 else w, w, 2 if j == 0 else 1, group_width, bottleneck_multiplier, se_ratio)
                for j in range(d)
            ]
            stages.append((f"block{i + 1}", nn.Sequential(*blocks)))
            w_in = w
        self.trunk_output = nn.Sequential()
        for n, s in stages:
            self.trunk_output.add_module(n, s)
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.fc = nn.Linear(w_in, num_classes)

    def forward(self, x):
        x = self.trunk_output(self.stem(x))
        return self.fc(torch.flatten(self.avgpool(x), 1))


# torchvision regnet_{x,y}_400mf stage widths/depths (as produced by BlockParams.from_init_params)
_REGNET_X_400MF = dict(widths=[32, 64, 160, 400], depths=[1, 2, 7, 12], group_width=16, se_ratio=None)
_REGNET_Y_400MF = dict(widths=[48, 104, 208, 440], depths=[1, 3, 6, 6], group_width=8, se_ratio=0.25)


def _regnet(size: str, variant: str | None = None) -> nn.Module:
    if size == "full":
        cfg = _REGNET_X_400MF if variant == "x" else _REGNET_Y_400MF
        return RegNet(**cfg, num_classes=1000)
    se = None if variant == "x" else 0.25
    # group width 8 -> groups 2/4/8/16 per stage; stage 2 has downsample+identity blocks
    return RegNet([16, 32, 64, 128], [1, 2, 1, 1], group_width=8, se_ratio=se, stem_width=16, num_classes=10)


# ---------------------------------------------------------------------------
# UNet
# ---------------------------------------------------------------------------


class DoubleConv(nn.Sequential):
    def __init__(self, cin: int, cout: int, mid: int | None = None):
        mid = mid or cout
        super().__init__(
            nn.Conv2d(cin, mid, 3, padding=1, bias=False),
            nn.BatchNorm2d(mid),
            nn.ReLU(inplace=True),
            nn.Conv2d(mid, cout, 3, padding=1, bias=False),
            nn.BatchNorm2d(cout),
            nn.ReLU(inplace=True),
        )


class UpTranspose(nn.Module):
    """ConvTranspose2d(k=2, s=2) up-sampling, concat skip, DoubleConv."""

    def __init__(self, cin: int, cskip: int, cout: int):
        super().__init__()
        self.up = nn.ConvTranspose2d(cin, cin // 2, 2, stride=2)
        self.conv = DoubleConv(cin // 2 + cskip, cout)

    def forward(self, x, skip):
        return self.conv(torch.cat([skip, self.up(x)], 1))


class UpBilinear(nn.Module):
    """nn.Upsample(bilinear) up-sampling, concat skip, DoubleConv (milesial-style)."""

    def __init__(self, cin: int, cskip: int, cout: int):
        super().__init__()
        self.up = nn.Upsample(scale_factor=2, mode="bilinear", align_corners=False)
        self.conv = DoubleConv(cin + cskip, cout, mid=(cin + cskip) // 2)

    def forward(self, x, skip):
        return self.conv(torch.cat([skip, self.up(x)], 1))


class UpNearest(nn.Module):
    """F.interpolate(nearest) up-sampling, 1x1 conv-bn-relu, concat skip, DoubleConv."""

    def __init__(self, cin: int, cskip: int, cout: int):
        super().__init__()
        self.reduce = ConvBNAct(cin, cin // 2, 1)
        self.conv = DoubleConv(cin // 2 + cskip, cout)

    def forward(self, x, skip):
        x = F.interpolate(x, scale_factor=2.0, mode="nearest")
        return self.conv(torch.cat([skip, self.reduce(x)], 1))


class UNet(nn.Module):
    def __init__(self, in_channels: int = 3, num_classes: int = 3, base: int = 64):
        super().__init__()
        c = base
        self.inc = DoubleConv(in_channels, c)
        self.down1 = nn.Sequential(nn.MaxPool2d(2), DoubleConv(c, 2 * c))
        self.down2 = nn.Sequential(nn.MaxPool2d(2), DoubleConv(2 * c, 4 * c))
        self.down3 = nn.Sequential(nn.MaxPool2d(2), DoubleConv(4 * c, 8 * c))
        self.down4 = nn.Sequential(nn.MaxPool2d(2), DoubleConv(8 * c, 16 * c))
        self.up1 = UpTranspose(16 * c, 8 * c, 8 * c)
        self.up2 = UpBilinear(8 * c, 4 * c, 4 * c)
        self.up3 = UpNearest(4 * c, 2 * c, 2 * c)
        self.up4 = UpTranspose(2 * c, c, c)
        self.outc = nn.Conv2d(c, num_classes, 1)

    def forward(self, x):
        x1 = self.inc(x)
        x2 = self.down1(x1)
        x3 = self.down2(x2)
        x4 = self.down3(x3)
        x5 = self.down4(x4)
        x = self.up1(x5, x4)
        x = self.up2(x, x3)
        x = self.up3(x, x2)
        x = self.up4(x, x1)
        return self.outc(x)


def _unet(size: str) -> nn.Module:
    if size == "full":
        return UNet(3, 3, base=64)
    return UNet(3, 3, base=8)


# ---------------------------------------------------------------------------
# ShuffleNetV2
# ---------------------------------------------------------------------------


def channel_shuffle(x: torch.Tensor, groups: int) -> torch.Tensor:
    b, c, h, w = x.size()
    cpg = c // groups
    x = x.view(b, groups, cpg, h, w)
    x = torch.transpose(x, 1, 2).contiguous()
    return x.view(b, -1, h, w)


class ShuffleInvertedResidual(nn.Module):
    def __init__(self, inp: int, oup: int, stride: int):
        super().__init__()
        self.stride = stride
        bf = oup // 2
        if stride > 1:
            self.branch1 = nn.Sequential(
                nn.Conv2d(inp, inp, 3, stride, 1, groups=inp, bias=False),
                nn.BatchNorm2d(inp),
                nn.Conv2d(inp, bf, 1, 1, 0, bias=False),
                nn.BatchNorm2d(bf),
                nn.ReLU(inplace=True),
            )
        else:
            self.branch1 = nn.Sequential()
        self.branch2 = nn.Sequential(
            nn.Conv2d(inp if stride > 1 else bf, bf, 1, 1, 0, bias=False),
            nn.BatchNorm2d(bf),
            nn.ReLU(inplace=True),
            nn.Conv2d(bf, bf, 3, stride, 1, groups=bf, bias=False),
            nn.BatchNorm2d(bf),
            nn.Conv2d(bf, bf, 1, 1, 0, bias=False),
            nn.BatchNorm2d(bf),
            nn.ReLU(inplace=True),
        )

    def forward(self, x):
        if self.stride == 1:
            x1, x2 = x.chunk(2, dim=1)
            out = torch.cat((x1, self.branch2(x2)), dim=1)
        else:
            out = torch.cat((self.branch1(x), self.branch2(x)), dim=1)
        return channel_shuffle(out, 2)


class ShuffleNetV2(nn.Module):
    def __init__(self, stages_repeats=(4, 8, 4), stages_out_channels=(24, 116, 232, 464, 1024), num_classes=1000):
        super().__init__()
        cin = stages_out_channels[0]
        self.conv1 = ConvBNAct(3, cin, 3, 2)
        self.maxpool = nn.MaxPool2d(3, 2, 1)
        for i, (reps, cout) in enumerate(zip(stages_repeats, stages_out_channels[1:4])):
            seq = [ShuffleInvertedResidual(cin, cout, 2)] + [ShuffleInvertedResidual(cout, cout, 1) for _ in range(reps - 1)]
            setattr(self, f"stage{i + 2}", nn.Sequential(*seq))
            cin = cout
        cout = stages_out_channels[-1]
        self.conv5 = ConvBNAct(cin, cout, 1)
        self.fc = nn.Linear(cout, num_classes)

    def forward(self, x):
        x = self.maxpool(self.conv1(x))
        x = self.stage4(self.stage3(self.stage2(x)))
        x = self.conv5(x)
        x = x.mean([2, 3])
        return self.fc(x)


def _shufflenet_v2(size: str) -> nn.Module:
    if size == "full":
        return ShuffleNetV2()
    return ShuffleNetV2((2, 2, 2), (8, 16, 32, 64, 256), num_classes=10)


# ---------------------------------------------------------------------------
# VGG-11-BN
# ---------------------------------------------------------------------------


class VGG(nn.Module):
    CFG_A = [64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"]

    def __init__(self, cfg=None, num_classes=1000, width_div=1, pool_hw=7, hidden=4096, dropout=0.5):
        super().__init__()
        cfg = cfg or self.CFG_A
        layers: list[nn.Module] = []
        c = 3
        for v in cfg:
            if v == "M":
                layers.append(nn.MaxPool2d(2, 2))
            else:
                v = v // width_div
                layers += [nn.Conv2d(c, v, 3, padding=1), nn.BatchNorm2d(v), nn.ReLU(inplace=True)]
                c = v
        self.features = nn.Sequential(*layers)
        self.avgpool = nn.AdaptiveAvgPool2d((pool_hw, pool_hw))
        self.classifier = nn.Sequential(
            nn.Linear(c * pool_hw * pool_hw, hidden),
            nn.ReLU(True),
            nn.Dropout(p=dropout),
            nn.Linear(hidden, hidden),
            nn.ReLU(True),
            nn.Dropout(p=dropout),
            nn.Linear(hidden, num_classes),
        )

    def forward(self, x):
        x = self.avgpool(self.features(x))
        x = torch.flatten(x, 1)
        return self.classifier(x)


def _vgg(size: str) -> nn.Module:
    if size == "full":
        return VGG()
    # 64x64 input -> 2x2x64 feature map flattened into the first Linear.
    return VGG(num_classes=10, width_div=8, pool_hw=2, hidden=128)


# ---------------------------------------------------------------------------
# Simple CNN (shipped sample)
# ---------------------------------------------------------------------------


class SimpleCNN(nn.Module):
    """conv-bn-relu x3 -> maxpool -> flatten -> Linear -> ReLU -> Dropout -> Linear."""

    def __init__(self, widths=(16, 32, 32), hidden=64, num_classes=10, in_hw=32, dropout=0.5):
        super().__init__()
        c1, c2, c3 = widths
        self.features = nn.Sequential(
            ConvBNAct(3, c1, 3, 1),
            ConvBNAct(c1, c2, 3, 2),
            ConvBNAct(c2, c3, 3, 2),
            nn.MaxPool2d(2),
        )
        hw = in_hw // 8
        self.classifier = nn.Sequential(
            nn.Flatten(1),
            nn.Linear(c3 * hw * hw, hidden),
            nn.ReLU(inplace=True),
            nn.Dropout(dropout),
            nn.Linear(hidden, num_classes),
        )

    def forward(self, x):
        return self.classifier(self.features(x))


def _simple_cnn(size: str) -> nn.Module:
    if size == "full":
        return SimpleCNN((32, 64, 128), hidden=256, num_classes=10, in_hw=64)
    return SimpleCNN((16, 32, 32), hidden=64, num_classes=10, in_hw=32)


# ---------------------------------------------------------------------------
# Registry
# ---------------------------------------------------------------------------


@dataclass(frozen=True)
class ModelSpec:
    name: str
    build: Callable[..., nn.Module]  # build(size="tiny"|"full") -> eval-mode module
    input_shape: Callable[[str], tuple[int, ...]]  # size -> (1, 3, H, W)
    description: str = ""


def _hw(tiny: int, full: int = 224) -> Callable[[str], tuple[int, ...]]:
    def shape(size: str = "tiny") -> tuple[int, ...]:
        _check_size(size)
        s = tiny if size == "tiny" else full
        return (1, 3, s, s)

    return shape


def _make_builder(name: str, factory: Callable[..., nn.Module], shape_fn) -> Callable[..., nn.Module]:
    def _build(size: str = "tiny", **kwargs) -> nn.Module:
        _check_size(size)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(SEED)
            model = factory(size, **kwargs)
            _init_weights(model)
            calib = _calibration_input(shape_fn(size))
            randomize_norms(model, seed=SEED, calib_input=calib)
        model.eval()
        return model

    _build.__name__ = f"build_{name}"
    _build.__doc__ = f"Build zoo model {name!r} (size 'tiny' or 'full'), eval mode, seed {SEED}."
    return _build


def _calibration_input(shape: tuple[int, ...]) -> torch.Tensor:
    g = torch.Generator().manual_seed(SEED + 1)
    n = 4 if shape[-1] <= 64 else 2
    return torch.randn((n,) + tuple(shape[1:]), generator=g)


_ENTRIES: list[tuple[str, Callable[..., nn.Module], Callable[[str], tuple[int, ...]], str]] = [
    ("resnet18", _resnet18, _hw(64), "ResNet-18 (BasicBlock, 1x1 conv+BN downsample shortcuts)"),
    ("resnet50", _resnet50, _hw(64), "ResNet-50 (Bottleneck)"),
    ("resnext", _resnext, _hw(64), "ResNeXt-50 32x4d (grouped 3x3 bottleneck)"),
    ("mobilenet_v2", _mobilenet_v2, _hw(64), "MobileNetV2 (inverted residual, depthwise, ReLU6)"),
    ("mobilenet_v3", _mobilenet_v3, _hw(64), "MobileNetV3 (tiny: Small layout @0.5, full: Large)"),
    ("efficientnet", _efficientnet, _hw(64), "EfficientNet-B0 (MBConv, SiLU, SE)"),
    ("densenet", _densenet, _hw(64), "DenseNet-121 (dense concat blocks, BN-ReLU-Conv, avgpool transitions)"),
    ("googlenet", _googlenet, _hw(64), "GoogLeNet / Inception v1 (no aux heads)"),
    ("squeezenet", _squeezenet, _hw(64), "SqueezeNet 1.1 (fire modules, conv classifier)"),
    ("regnet", _regnet, _hw(64), "RegNetY-400MF style (group conv, SE); variant='x' for RegNetX"),
    ("unet", _unet, _hw(64), "UNet (ConvTranspose / bilinear / nearest up-sampling, concat skips)"),
    ("shufflenet_v2", _shufflenet_v2, _hw(64), "ShuffleNetV2 x1.0 (chunk split, channel shuffle)"),
    ("vgg", _vgg, _hw(64), "VGG-11-BN (flatten CxHxW -> Linear classifier)"),
    ("simple_cnn", _simple_cnn, _hw(32, 64), "conv-bn-relu x3, maxpool, flatten, 2x Linear"),
]

ZOO: dict[str, ModelSpec] = {
    name: ModelSpec(name, _make_builder(name, fac, shp), shp, desc) for name, fac, shp, desc in _ENTRIES
}


def _spec(name: str) -> ModelSpec:
    try:
        return ZOO[name]
    except KeyError:
        raise KeyError(f"unknown zoo model {name!r}; available: {sorted(ZOO)}") from None


def build(name: str, size: str = "tiny") -> nn.Module:
    """Build zoo model ``name`` in eval mode with deterministic (seed 0) init."""
    return _spec(name).build(size)


def example_input(name: str, size: str = "tiny", batch: int = 1) -> torch.Tensor:
    """Deterministic N(0,1) input of the model's input shape with the given batch."""
    shape = _spec(name).input_shape(size)
    g = torch.Generator().manual_seed(1234)
    return torch.randn((batch,) + tuple(shape[1:]), generator=g)


def export(
    name: str,
    path: str | os.PathLike,
    *,
    size: str = "tiny",
    dynamo: bool = False,
    opset: int = 17,
    dynamic_batch: bool = True,
    model: nn.Module | None = None,
    keep_batchnorm: bool = False,
) -> pathlib.Path:
    """Export zoo model ``name`` to a single self-contained ONNX file at ``path``.

    ``dynamo=False`` uses the legacy TorchScript exporter (input "input", output
    "output", batch axis "N" when ``dynamic_batch``).  The legacy exporter folds
    eval-mode BatchNorm into the preceding Conv; pass ``keep_batchnorm=True``
    (legacy only) to keep explicit ``BatchNormalization`` nodes instead.

    ``dynamo=True`` uses the ``torch.export`` based exporter with a
    ``torch.export.Dim`` for the batch (example batch 2 so the dim is not
    specialised to 1).  That exporter natively emits opset >= 18; for a lower
    ``opset`` the optimised opset-18 model is converted with
    ``onnx.version_converter`` (if that conversion fails the opset-18 model is
    written and a warning is issued).

    ``model`` may be given to export an already built (e.g. modified) instance
    instead of a fresh ``build(name, size)``.  Returns the written path.
    """
    import onnx  # local import: building models must not require onnx

    path = pathlib.Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if model is None:
        model = build(name, size)
    model.eval()

    if not dynamo:
        x = example_input(name, size, batch=1)
        dynamic_axes = {"input": {0: "N"}, "output": {0: "N"}} if dynamic_batch else None
        extra = {}
        if keep_batchnorm:
            extra = dict(training=torch.onnx.TrainingMode.PRESERVE, do_constant_folding=False)
        with quiet(), torch.no_grad():
            torch.onnx.export(
                model,
                (x,),
                str(path),
                dynamo=False,
                input_names=["input"],
                output_names=["output"],
                dynamic_axes=dynamic_axes,
                opset_version=opset,
                **({"do_constant_folding": True} | extra),
            )
        return path

    if keep_batchnorm:
        raise ValueError("keep_batchnorm=True is only supported with the legacy exporter (dynamo=False)")
    x = example_input(name, size, batch=2 if dynamic_batch else 1)
    dynamic_shapes = ({0: torch.export.Dim("N", min=1, max=1024)},) if dynamic_batch else None
    with quiet(), torch.no_grad():
        prog = torch.onnx.export(
            model,
            (x,),
            None,
            dynamo=True,
            input_names=["input"],
            output_names=["output"],
            dynamic_shapes=dynamic_shapes,
            opset_version=max(opset, DYNAMO_MIN_OPSET),
            external_data=False,
            optimize=True,
            verbose=False,
        )
    proto = prog.model_proto
    if opset < DYNAMO_MIN_OPSET:
        try:
            proto = downconvert(proto, opset)
        except Exception as exc:  # pragma: no cover - depends on the op set used
            warnings.warn(
                f"{name}: could not convert dynamo export to opset {opset} ({exc}); keeping opset {DYNAMO_MIN_OPSET}",
                stacklevel=2,
            )
    onnx.save_model(proto, str(path))
    return path


if __name__ == "__main__":  # pragma: no cover - quick inventory
    for n, spec in ZOO.items():
        t = count_params(spec.build("tiny"))
        print(f"{n:15s} tiny={t:>10,d}  input={spec.input_shape('tiny')}")

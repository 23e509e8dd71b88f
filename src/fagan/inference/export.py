"""Exporting a generator to ONNX, and checking the export against PyTorch with ONNX Runtime.

The exported graph takes ``lr`` of shape ``(batch, C, height, width)`` and returns ``sr`` of
shape ``(batch, C, s*height, s*width)``, with batch, height and width dynamic. It is the plain
architecture of :mod:`fagan.models.generator` (not the CPU rewrites of
:mod:`fagan.models.fast`), traced at a small size so that self-attention is one
``scaled_dot_product_attention`` call, which the exporter writes as MatMul/Softmax: ONNX Runtime
then holds the ``N x N`` attention scores of a tile (1 GiB for a 128x128 low-resolution tile), so
keep tiles small when serving the ONNX model. The trace has no key pooling either (PyTorch
pools self-attention's keys above 4096 positions, see
:class:`fagan.models.attention.SelfAttention`), so on larger tiles ONNX attends to every
position; with tiles of at most 64x64 low-resolution pixels the two agree. The model name,
scale, configuration and release metadata are stored as the ONNX model's metadata.

The exporter is torch's TorchScript-based one (``dynamo=False``): it needs only the ``onnx`` extra,
exports in about a second and matched PyTorch to 3e-7; the newer ``torch.export``-based exporter
gave the same output but needs ``onnxscript`` and took 8 s for a tiny network.
"""

from __future__ import annotations

import dataclasses
import inspect
import json
import os
import warnings
from pathlib import Path

import torch
from torch import nn

from fagan import FaganError
from fagan.atomic import atomic_path

ONNX_EXTRA = "the 'onnx' extra: pip install 'fagan[onnx]' (onnx and onnxruntime)"
DEFAULT_OPSET = 17
# Low-resolution side of the tracing input: small enough for a single attention call.
TRACE_SIDE = 16


def _require(module: str) -> None:
    import importlib.util

    if importlib.util.find_spec(module) is None:
        raise FaganError(f"ONNX export needs {module}, which is not installed; install {ONNX_EXTRA}")


#: What the exported network expects, written into the ONNX model's metadata.
INPUT_SCALING = (
    "lr holds one volume's slices scaled to about [0, 1]: (x - low) / (high - low), low = the 0.5th "
    "percentile of all the volume's voxels, high = the 99.5th percentile of the voxels above low "
    "(fagan.data.normalize.fit_scaling); sr comes back in that scale: multiply by (high - low) and add "
    "low. fagan upscale also negates a MONOCHROME1 DICOM before the scaling (and back after), "
    "projects sr onto the images whose antialiased bicubic downsampling is lr "
    "(fagan.inference.consistency) and clips a magnitude image's output at 0 (one with no values "
    "below 0, or none below -10% of its 99.5th percentile: fagan.inference.upscale.is_magnitude)."
)


def export_onnx(
    generator: nn.Module,
    path: str | os.PathLike,
    metadata: dict[str, str] | None = None,
    opset: int = DEFAULT_OPSET,
) -> Path:
    """Write ``generator`` as an ONNX model with dynamic batch, height and width (atomically).

    The model's metadata says what its input must be (``input_scaling``): the network alone is
    not ``fagan upscale``, which scales each volume first and maps the result back after.
    """
    _require("onnx")
    import onnx

    path = Path(path)
    model = generator.to("cpu").float().eval()
    channels = model.config.in_channels  # type: ignore[union-attr]
    example = torch.rand(1, channels, TRACE_SIDE, TRACE_SIDE)
    axes = {0: "batch", 2: "height", 3: "width"}
    options: dict = {}
    if "dynamo" in inspect.signature(torch.onnx.export).parameters:
        options["dynamo"] = False
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path, suffix=".onnx") as tmp, warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the exporter's deprecation and tracer notes
        torch.onnx.export(
            model,
            (example,),
            tmp,
            input_names=["lr"],
            output_names=["sr"],
            dynamic_axes={"lr": axes, "sr": {0: "batch", 2: "s*height", 3: "s*width"}},
            opset_version=opset,
            **options,
        )
        proto = onnx.load(tmp)
        info = dict(metadata or {})
        info.update(
            input_scaling=INPUT_SCALING,
            scale=str(model.scale),  # type: ignore[union-attr]
            config=json.dumps(dataclasses.asdict(model.config)),  # type: ignore[union-attr]
            exported_by="fagan",
        )
        for key, value in info.items():
            entry = proto.metadata_props.add()
            entry.key, entry.value = key, value
        onnx.checker.check_model(proto)
        onnx.save(proto, tmp)
    return path


def onnx_max_difference(path: str | os.PathLike, generator: nn.Module, lr: torch.Tensor) -> float:
    """Largest absolute difference between ONNX Runtime (CPU) and PyTorch on ``lr``."""
    _require("onnxruntime")
    import onnxruntime

    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    (onnx_out,) = session.run(["sr"], {"lr": lr.numpy()})
    with torch.inference_mode():
        torch_out = generator.to("cpu").eval()(lr)
    return float((torch.from_numpy(onnx_out) - torch_out).abs().max())

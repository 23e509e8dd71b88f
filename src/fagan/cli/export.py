"""``fagan export``: a release generator as an ONNX model, checked against PyTorch."""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "export",
        help="export generator weights to ONNX (dynamic batch, height and width)",
        description="Writes the generator in --weights (default: the shipped weights for --scale) as an "
        "ONNX model taking 'lr' (batch, 1, h, w) to 'sr' (batch, 1, s*h, s*w), then checks it against "
        "PyTorch with ONNX Runtime. Needs the onnx extra: pip install 'fagan[onnx]'. The network "
        "expects each volume's intensities scaled to about [0, 1] by its 0.5th and 99.5th percentiles "
        "(the model's input_scaling metadata says exactly how) and returns that scale.",
    )
    p.add_argument(
        "--weights", help="generator weights (.safetensors); default: the shipped ones for --scale"
    )
    p.add_argument("--out", required=True, help="output .onnx file")
    p.add_argument("--scale", type=int, choices=(2, 4, 8), help="scale (default 4; must match --weights)")
    p.add_argument("--variant", default="psnr", choices=("psnr", "gan"), help="shipped weights variant")
    p.add_argument("--opset", type=int, default=17, help="ONNX opset (default 17)")
    p.add_argument("--overwrite", action="store_true", help="replace OUT if it exists")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from fagan.inference.export import export_onnx, onnx_max_difference
    from fagan.models.release import load_release, shipped_weights

    out = Path(args.out)
    if out.suffix != ".onnx":
        raise ValueError(f"--out must end in .onnx, not {out.name!r}")
    if out.exists() and not args.overwrite:
        raise FileExistsError(f"{out} exists; pass --overwrite to replace it")
    weights = Path(args.weights) if args.weights else shipped_weights(args.scale or 4, args.variant)
    generator, meta = load_release(weights, scale=args.scale)
    export_onnx(
        generator, out, metadata={"model": meta.get("model", ""), "weights": weights.name}, opset=args.opset
    )
    import torch

    torch.manual_seed(0)
    lr = torch.rand(2, generator.config.in_channels, 24, 20)
    difference = onnx_max_difference(out, generator, lr)
    print(
        f"wrote {out} ({meta.get('model')} x{generator.scale} from {weights.name}); "
        f"ONNX Runtime vs PyTorch on a 2x24x20 batch: max |difference| {difference:.2g}"
    )
    return 0

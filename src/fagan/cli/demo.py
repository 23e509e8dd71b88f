"""``fagan demo``: the main job - FA-GAN against bicubic on the embedded held-out MRI."""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "demo",
        help="upscale the embedded held-out MRI at x2 and x4 and compare with bicubic",
        description="On the held-out MRI that ships with fagan (not trained on), simulates "
        "low-resolution slices by antialiased bicubic downsampling, upscales "
        "them with the shipped weights, prints PSNR/SSIM of FA-GAN and bicubic per volume and scale, "
        "and writes the super-resolved volumes (NIfTI), figures, results.csv and index.html to --out.",
    )
    p.add_argument("--out", default="demo-out", help="output folder (default: demo-out)")
    p.add_argument(
        "--scales",
        type=int,
        nargs="+",
        choices=(2, 4, 8),
        help="default: 2 and 4, or with --variant gan the scales that have GAN weights",
    )
    p.add_argument(
        "--variant",
        default="psnr",
        choices=("psnr", "gan"),
        help="shipped weights: psnr (default, the closest to the measured signal) or gan (sharper texture)",
    )
    p.add_argument(
        "--self-ensemble",
        action="store_true",
        help="average each slice's 8 rotations and mirror images (more accurate, 8x slower)",
    )
    p.add_argument(
        "--no-consistency",
        action="store_true",
        help="skip the data-consistency projection of the outputs (on by default)",
    )
    p.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import time
    from pathlib import Path

    from fagan import FaganError
    from fagan.evaluation.demo import HEADER, format_summary, run_demo
    from fagan.inference import pick_device
    from fagan.models.release import shipped_scales

    start = time.perf_counter()
    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise ValueError(f"--out {out} exists and is not a folder")
    have = shipped_scales(args.variant)
    scales = args.scales or ([2, 4] if args.variant == "psnr" else have)
    missing = [s for s in scales if s not in have]
    if missing:
        raise FaganError(
            f"no shipped {args.variant} weights for x{', x'.join(map(str, missing))}; the {args.variant} "
            f"variant has x{', x'.join(map(str, have))}, so choose --scales among {' '.join(map(str, have))}"
            f"{' or another --variant' if args.variant != 'psnr' else ''} (to score weights you trained, "
            "use `fagan evaluate --weights W.safetensors`)"
        )
    print(HEADER)
    rows = run_demo(
        out,
        tuple(scales),
        device=str(pick_device(args.device)),
        variant=args.variant,
        self_ensemble=args.self_ensemble,
        consistency=not args.no_consistency,
    )
    print(format_summary(rows))
    seconds = time.perf_counter() - start
    print(f"wrote SR volumes, figures, results.csv and index.html to {out}/ in {seconds:.0f} s")
    return 0

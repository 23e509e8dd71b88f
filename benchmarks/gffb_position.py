"""Cost of the GFFB before vs after upsampling: time per slice and peak memory on this machine.

Usage:  python benchmarks/gffb_position.py [--size 256] [--batch 4] [--device cpu]

Each configuration runs in its own process so its peak resident memory (CPU) or peak allocated
memory (CUDA) is its own. The quality side of the comparison (a short training run of each) is
in docs/model-choices.md.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys


def measure(name: str, scale: int, position: str, size: int, batch: int, device: str) -> dict:
    import resource
    import time

    import torch

    from fagan.models import build_generator

    torch.manual_seed(0)
    model = build_generator(name, scale, gffb_position=position).to(device).eval()
    x = torch.rand(batch, 1, size // scale, size // scale, device=device)
    with torch.inference_mode():
        model(x)
        if device == "cuda":
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
        runs = 3
        start = time.perf_counter()
        for _ in range(runs):
            model(x)
        if device == "cuda":
            torch.cuda.synchronize()
        seconds = (time.perf_counter() - start) / (runs * batch)
    peak = (
        torch.cuda.max_memory_allocated() / 2**30
        if device == "cuda"
        else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    )
    return {"model": name, "scale": scale, "gffb": position, "ms_per_slice": 1000 * seconds, "peak_gib": peak}


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--size", type=int, default=256, help="output slice side")
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--one", nargs=3, metavar=("NAME", "SCALE", "POSITION"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        name, scale, position = args.one
        print(json.dumps(measure(name, int(scale), position, args.size, args.batch, args.device)))
        return
    header = f"{'model':<8} {'scale':>5} {'gffb':<18} {'ms/slice':>9} {'peak GiB':>9}"
    print(f"{header}   ({args.size}^2 output, {args.device})")
    for scale in (2, 4):
        for name, position in (
            ("srgan", "before_upsampling"),
            ("fagan", "before_upsampling"),
            ("fagan", "after_upsampling"),
        ):
            cmd = [
                sys.executable,
                __file__,
                "--one",
                name,
                str(scale),
                position,
                "--size",
                str(args.size),
                "--batch",
                str(args.batch),
                "--device",
                args.device,
            ]
            r = json.loads(subprocess.run(cmd, capture_output=True, text=True, check=True).stdout)
            label = position if name == "fagan" else "-"
            print(
                f"{r['model']:<8} {r['scale']:>5} {label:<18} {r['ms_per_slice']:>9.1f} {r['peak_gib']:>9.2f}"
            )


if __name__ == "__main__":
    main()

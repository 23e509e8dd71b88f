"""``fagan bench``: speed and memory of the model family beside SRGAN, bicubic and the machine."""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "bench",
        help="measure inference, a whole volume, a training step and attention memory on this machine",
        description="Every named generator at x2/x4/x8 beside SRGAN and bicubic (slices/s, peak memory, "
        "FLOPs, GFLOP/s against the machine's matmul GFLOP/s), a 256-slice volume at x4 with the "
        "shipped weights, one G+D training step of FA-GAN and SRGAN, and self-attention memory. "
        "Timings interleave the entries and keep each one's fastest round: compare ratios, not "
        "absolute times, on a shared machine. The results are in BENCHMARKS.md.",
    )
    p.add_argument("--quick", action="store_true", help="tiny sizes: checks the code path in seconds")
    p.add_argument("--json", action="store_true", help="print the results as JSON instead of tables")
    p.add_argument("--out", help="also write the JSON results to this file")
    p.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    p.add_argument(
        "--models",
        help="comma-separated generator names (default: all; with --quick: fagan,srgan)",
    )
    p.add_argument("--threads", type=int, help="torch CPU threads (default: torch's choice)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import os
    import sys

    # Idle OpenMP threads sleep instead of spinning: on CPUs shared with other work, spinning
    # threads stall every parallel region (see BENCHMARKS.md). Read when torch is first imported.
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

    import json
    from pathlib import Path

    import torch

    from fagan import benchmarks
    from fagan.inference import pick_device
    from fagan.models import GENERATORS

    settings = benchmarks.QUICK if args.quick else benchmarks.FULL
    if args.models:
        names = [n.strip() for n in args.models.split(",") if n.strip()]
    else:
        names = ["fagan", "srgan"] if args.quick else list(GENERATORS)
    unknown = [n for n in names if n not in GENERATORS]
    if unknown or not names:
        raise ValueError(f"unknown model(s) {', '.join(unknown) or '(none)'}; valid: {', '.join(GENERATORS)}")
    if args.threads is not None:
        if args.threads < 1:
            raise ValueError(f"--threads must be at least 1, not {args.threads}")
        torch.set_num_threads(args.threads)
    device = pick_device(args.device)

    def log(message: str) -> None:
        print(f"bench: {message}", file=sys.stderr, flush=True)

    results = benchmarks.run(settings, device, names, log=log)
    results["command"] = "fagan bench " + " ".join(sys.argv[2:]) if sys.argv[1:2] == ["bench"] else None
    results["machine"]["omp_wait_policy"] = os.environ.get("OMP_WAIT_POLICY")
    text = json.dumps(results, indent=2)
    if args.out:
        Path(args.out).write_text(text + "\n")
    print(text if args.json else benchmarks.format_report(results))
    return 0

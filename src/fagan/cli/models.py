"""``fagan models``: the model family as a table."""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "models",
        help="list every named generator with its switches, size and cost",
        description="Lists the model family: the paper's FA-GAN generator, its baselines (SRGAN, "
        "CA-SR-GAN, SA-SR-GAN) and ablations, each a configuration of one generator class, with the "
        "blocks it uses (LFFB, channel and self-attention, fusion), its parameter count and its "
        "GFLOPs for one output slice. Any of the names goes in a config's model.name.",
    )
    p.add_argument("--scale", type=int, default=4, choices=(2, 4, 8), help="scale for the FLOP count")
    p.add_argument("--size", type=int, default=256, help="output slice side for the FLOP count (pixels)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from fagan.models import GENERATORS
    from fagan.models.summary import summarise

    if args.size < 1:
        raise ValueError(f"--size must be a positive number of pixels, not {args.size}")
    if args.size % args.scale:
        raise ValueError(f"--size {args.size} is not divisible by --scale {args.scale}")
    header = ("name", "LFFB", "CA", "SA", "fusion", "params", f"GFLOPs ({args.size}^2 out, x{args.scale})")
    rows = []
    for name in GENERATORS:
        s = summarise(name, args.scale, args.size)
        yes = {True: "yes", False: "-"}
        rows.append(
            (
                name,
                yes[s.lffb],
                yes[s.channel_attention],
                yes[s.self_attention],
                s.fusion,
                f"{s.parameters / 1e6:.2f}M",
                f"{s.gflops:.1f}",
            )
        )
    widths = [max(len(str(r[i])) for r in (header, *rows)) for i in range(len(header))]
    for row in (header, tuple("-" * w for w in widths), *rows):
        print("  ".join(str(cell).ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip())
    return 0

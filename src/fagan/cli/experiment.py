"""``fagan experiment``: the paper's protocol in one command (train, evaluate, Tables 1-8, report).

Examples::

    fagan experiment --out results/run                   # the embedded sample data, 150 steps a run
    fagan experiment --data manifest.json --out exp --steps 20000 --batch-size 16 --device cuda
    fagan experiment --out exp --scales 4 --no-fid --model-set channels=32
"""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "experiment",
        help="train and evaluate bicubic, SRGAN, CA-/SA-SR-GAN, FA-GAN and the ablations; write Tables 1-8",
        description=(
            "Train every method of the paper's comparison (SRGAN, CA-SR-GAN, SA-SR-GAN, FA-GAN at each "
            "scale), the LFFB/CA/SA ablations, direct vs weighted fusion and the alpha/beta settings, with "
            "one shared recipe; evaluate them beside bicubic on the test split; write per_volume.csv, "
            "tables.md, one CSV per table, figures/ and report.html to --out. Re-running reuses finished "
            "runs and resumes interrupted ones."
        ),
    )
    p.add_argument(
        "--data", metavar="MANIFEST", help="manifest JSON from `fagan prepare` (default: sample data)"
    )
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--steps", type=int, default=150, help="training steps per run (default 150)")
    p.add_argument("--batch-size", type=int, default=4, help="patches per step (default 4)")
    p.add_argument("--lr", type=float, default=1e-4, help="Adam learning rate of every run (default 1e-4)")
    p.add_argument(
        "--patch-size",
        type=int,
        metavar="PX",
        help="HR training patch side at every scale, a multiple of each scale (default: 64 at x2 and x4, "
        "96 at x8); lower it for small slices",
    )
    p.add_argument("--scales", type=int, nargs="+", default=[2, 4, 8], metavar="S", help="default: 2 4 8")
    p.add_argument("--ablation-scale", type=int, default=4, help="scale of Tables 6-8 (default 4)")
    p.add_argument(
        "--recipe",
        choices=("psnr", "gan"),
        default="psnr",
        help="psnr: pixel loss only (default); gan: + adversarial after a warm-up (+ VGG with --vgg-weights)",
    )
    p.add_argument("--vgg-weights", metavar="PATH", help="torchvision VGG19 state dict (gan recipe)")
    p.add_argument(
        "--model-set",
        dest="model_options",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a generator option for every run, e.g. channels=32 (repeatable)",
    )
    fid = p.add_mutually_exclusive_group()
    fid.add_argument("--fid-weights", metavar="PATH", help="TorchScript FID Inception (default: fagan[fid])")
    fid.add_argument("--no-fid", action="store_true", help="skip FID (Table 5)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    p.set_defaults(func=run)


def _options(assignments: list[str]) -> dict:
    from fagan.training.config import parse_assignment

    return dict(parse_assignment(text, "--model-set", "channels=32") for text in assignments)


def run(args: argparse.Namespace) -> int:
    import shlex
    import sys
    import time

    from fagan.cli.train import setup_logging
    from fagan.evaluation.experiment import Settings, run_experiment

    if args.steps < 1 or args.batch_size < 1 or not args.lr > 0:
        raise ValueError("--steps and --batch-size must be at least 1 and --lr positive")
    if args.patch_size is not None:
        bad = [s for s in [*args.scales, args.ablation_scale] if args.patch_size < s or args.patch_size % s]
        if bad:
            raise ValueError(f"--patch-size {args.patch_size} is not a positive multiple of scale {bad[0]}")
    if args.recipe == "psnr" and args.vgg_weights:
        raise ValueError("--vgg-weights is for --recipe gan; the psnr recipe has no perceptual term")
    settings = Settings(
        steps=args.steps,
        batch_size=args.batch_size,
        lr=args.lr,
        recipe=args.recipe,
        data=args.data,
        seed=args.seed,
        vgg_weights=args.vgg_weights,
        model_options=_options(args.model_options),
        **({"patch_sizes": dict.fromkeys((2, 4, 8), args.patch_size)} if args.patch_size else {}),
    )
    command = "fagan " + " ".join(shlex.quote(a) for a in sys.argv[1:])
    restore_logging = setup_logging()
    start = time.perf_counter()
    try:
        result = run_experiment(
            args.out,
            settings,
            scales=tuple(args.scales),
            ablation_scale=args.ablation_scale,
            device=args.device,
            fid_weights=args.fid_weights,
            fid=not args.no_fid,
            command=command,
            log_fn=print,
        )
    finally:
        restore_logging()
    print()
    for table in result.tables:
        if table.name.startswith(("table", "paired")):
            print(table.markdown())
    minutes = (time.perf_counter() - start) / 60
    print(
        f"wrote tables.md, {len(result.tables)} CSVs, {len(result.figures)} figures and {result.report} "
        f"in {minutes:.1f} min"
    )
    return 0

"""``fagan train``: train a generator (and its discriminator), resume a run, or export its weights.

Examples::

    fagan train --config configs/fagan_x4.yaml --out runs/fagan_x4
    fagan train --config configs/fagan_x4_psnr.yaml --set schedule.steps=100 --set model.overrides.channels=32
    fagan train --resume runs/fagan_x4 --set schedule.steps=40000
    fagan train --export runs/fagan_x4 --out fagan_x4.safetensors
    fagan train --average a.safetensors b.safetensors --out soup.safetensors
    torchrun --nproc-per-node 4 -m fagan train --config configs/fagan_x4.yaml --out runs/ddp
"""

from __future__ import annotations

import argparse
from collections.abc import Callable


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "train",
        help="train a generator on a manifest (or the embedded sample data); resume or export a run",
        description=(
            "Train the named generator of a YAML config (configs/<name>_x<scale>[_psnr].yaml). Without "
            "--data, trains on the embedded sample data's train split and validates on its val split. "
            "Writes config.yaml, losses.jsonl, validation.jsonl, checkpoints/, loss_curves.png and "
            "release.safetensors into the run directory. Under torchrun, trains with DDP."
        ),
    )
    parser.add_argument(
        "--config", metavar="FILE", help="YAML training config (required unless --resume/--export)"
    )
    parser.add_argument(
        "--data", metavar="MANIFEST", help="manifest JSON from `fagan prepare` (sets data.manifest)"
    )
    parser.add_argument(
        "--out",
        metavar="RUN_DIR",
        help="run directory (default: runs/<config name>-<time>); with --export or --average, the "
        ".safetensors to write",
    )
    parser.add_argument(
        "--resume", metavar="RUN_DIR", help="continue the run in RUN_DIR from its newest intact checkpoint"
    )
    parser.add_argument(
        "--export", metavar="RUN_DIR", help="write RUN_DIR's (EMA) generator as release weights to --out"
    )
    parser.add_argument(
        "--average",
        nargs="+",
        metavar="W",
        help="write the mean of these release files' weights to --out (runs fine-tuned from one "
        "starting file; averaging unrelated runs gives a broken model)",
    )
    parser.add_argument(
        "--overwrite", action="store_true", help="with --export or --average: replace --out if it exists"
    )
    parser.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto", help="default: auto")
    parser.add_argument(
        "--vgg-weights",
        metavar="PATH",
        help="VGG19/VGG16 state dict for the perceptual loss (default: the torch cache, for vgg16 an "
        "installed fagan[perceptual], or a download)",
    )
    parser.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a config key (dotted path, YAML value), e.g. schedule.steps=100; repeatable",
    )
    parser.add_argument(
        "--tensorboard", action="store_true", help="also log to RUN_DIR/tensorboard (needs tensorboard)"
    )
    parser.set_defaults(func=run)


def setup_logging() -> Callable[[], None]:
    """fagan's messages on stderr (INFO on rank 0, warnings on other ranks), written through tqdm
    so the progress bar stays intact. Returns a function that restores the logger as it was (so a
    later command in the same process, as in tests, does not print INFO lines)."""
    import logging
    import os
    import sys

    from tqdm import tqdm

    class _TqdmHandler(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            tqdm.write(self.format(record), file=sys.stderr)

    logger = logging.getLogger("fagan")
    level, handlers = logger.level, list(logger.handlers)

    def restore() -> None:
        logger.setLevel(level)
        for handler in [h for h in logger.handlers if h not in handlers]:
            logger.removeHandler(handler)

    if not any(isinstance(h, _TqdmHandler) or type(h).__name__ == "_TqdmHandler" for h in logger.handlers):
        handler = _TqdmHandler()
        handler.setFormatter(logging.Formatter("%(levelname)s: %(message)s"))
        logger.addHandler(handler)
    logger.setLevel(logging.INFO if int(os.environ.get("RANK", "0")) == 0 else logging.WARNING)
    return restore


def run(args: argparse.Namespace) -> int:
    import dataclasses
    import os
    import time
    from pathlib import Path

    from fagan import FaganError

    if args.export:
        if args.config or args.resume or args.data or args.overrides or args.average:
            raise FaganError("--export takes only RUN_DIR, --out and --overwrite")
        if not args.out:
            raise FaganError("--export RUN_DIR needs --out W.safetensors")
        from fagan.training.trainer import export_release

        print(f"wrote {export_release(args.export, args.out, overwrite=args.overwrite)}")
        return 0
    if args.average:
        if args.config or args.resume or args.data or args.overrides:
            raise FaganError("--average takes only weights files, --out and --overwrite")
        if not args.out:
            raise FaganError("--average W1 W2 ... needs --out W.safetensors")
        from fagan.models.release import average_releases

        print(f"wrote {average_releases(args.average, args.out, overwrite=args.overwrite)}")
        return 0
    if args.overwrite:
        raise FaganError(
            "--overwrite applies to --export and --average only; a new run needs a new or empty --out"
        )

    from fagan.training.config import load_config

    # a relative manifest is taken from here, and stored absolute so that --resume works from anywhere
    overrides = [_absolute_manifest(o) for o in args.overrides]
    if args.data:
        overrides.append(f"data.manifest={Path(args.data).resolve()}")
    if args.resume:
        if args.config:
            raise FaganError(
                "--resume continues with the run's own config.yaml; drop --config (change keys with --set)"
            )
        if args.out and Path(args.out).resolve() != Path(args.resume).resolve():
            raise FaganError("--resume writes into its own RUN_DIR; drop --out")
        run_dir = Path(args.resume)
        config_path = run_dir / "config.yaml"
        if not config_path.is_file():
            raise FileNotFoundError(
                f"{config_path} not found; --resume needs the directory of a `fagan train` run"
            )
        config = load_config(config_path, overrides)
    else:
        if not args.config:
            raise FaganError("give --config FILE (e.g. configs/fagan_x4.yaml), or --resume RUN_DIR")
        config = load_config(args.config, overrides)
        if config.data.manifest is not None and not Path(config.data.manifest).is_absolute():
            data = dataclasses.replace(config.data, manifest=str(Path(config.data.manifest).resolve()))
            config = dataclasses.replace(config, data=data)  # a config file's relative manifest
        if args.out:
            run_dir = Path(args.out)
        elif int(os.environ.get("WORLD_SIZE", "1")) > 1:
            raise FaganError("under torchrun give --out RUN_DIR so that every process writes to the same run")
        else:
            run_dir = Path("runs") / f"{Path(args.config).stem}-{time.strftime('%Y%m%d-%H%M%S')}"

    from fagan.training.trainer import train

    restore_logging = setup_logging()
    try:
        release = train(
            config,
            run_dir,
            device=args.device,
            vgg_weights=args.vgg_weights,
            resume=bool(args.resume),
            tensorboard=args.tensorboard,
        )
    finally:
        restore_logging()
    if int(os.environ.get("RANK", "0")) == 0:
        print(f"wrote {release}")
    return 0


def _absolute_manifest(assignment: str) -> str:
    """``data.manifest=PATH`` with PATH made absolute; any other ``--set`` as it is."""
    key, sep, value = assignment.partition("=")
    if key.strip() != "data.manifest" or not sep or value.strip() in ("", "null", "~"):
        return assignment
    from pathlib import Path

    return f"{key}={Path(value.strip()).resolve()}"

"""``fagan evaluate``: score release weights beside bicubic on test volumes.

Examples::

    fagan evaluate                                   # shipped x2 and x4 weights, embedded test volumes
    fagan evaluate --weights runs/fa4/release.safetensors --scales 4 --data manifest.json
    fagan evaluate --weights a_x2.safetensors b_x4.safetensors --out eval --fid
"""

from __future__ import annotations

import argparse
from pathlib import Path


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "evaluate",
        help="PSNR/SSIM (and FID) of release weights beside bicubic, per volume and summarised",
        description=(
            "Simulate LR test volumes (antialiased bicubic), upscale them with each weights file and "
            "with bicubic, and write per_volume.csv, summary tables (tables.md and one CSV each) to --out. "
            "Without --weights, the shipped weights of each scale are used."
        ),
    )
    p.add_argument("--weights", nargs="+", metavar="W", help="release .safetensors files (any scales)")
    p.add_argument(
        "--data",
        metavar="MANIFEST",
        help="manifest JSON (its test split), a folder or a volume; default: the embedded test volumes",
    )
    p.add_argument(
        "--split",
        choices=("train", "val", "test"),
        help="split of a manifest, or of the embedded sample data (default test); a folder or a "
        "volume has no splits",
    )
    p.add_argument(
        "--subject",
        metavar="REGEX",
        help="with a folder as --data: name each volume's subject by this regular expression, as "
        "`fagan prepare --subject` does (default: prepare's rule); a manifest names its own",
    )
    p.add_argument(
        "--scales", type=int, nargs="+", default=None, metavar="S", help="scales to evaluate (2, 4, 8)"
    )
    p.add_argument("--axis", type=int, default=2, choices=(0, 1, 2), help="slice axis (default 2)")
    p.add_argument("--out", default="evaluate-out", help="output folder (default: evaluate-out)")
    p.add_argument("--overwrite", action="store_true", help="replace the evaluation an existing --out holds")
    fid = p.add_mutually_exclusive_group()
    fid.add_argument("--fid", action="store_true", help="also compute FID (needs the FID network)")
    fid.add_argument("--fid-weights", metavar="PATH", help="TorchScript FID Inception file (implies --fid)")
    p.add_argument("--figures", action="store_true", help="write a comparison figure per volume and scale")
    p.add_argument(
        "--no-consistency",
        action="store_true",
        help="skip the data-consistency projection of the networks' outputs (on by default)",
    )
    p.add_argument(
        "--self-ensemble",
        action="store_true",
        help="run the networks on each slice's 8 rotations and mirror images and average (8x slower)",
    )
    p.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from fagan.atomic import atomic_folder
    from fagan.evaluation.evaluate import (
        Method,
        evaluate,
        evaluation_volumes,
        fid_table,
        method_names,
        psnr_ssim_tables,
        write_rows,
    )
    from fagan.evaluation.tables import write_tables
    from fagan.inference import pick_device
    from fagan.metrics.fid import load_inception
    from fagan.models.release import load_release, read_metadata, shipped_weights
    from fagan.scales import check_scale

    out = Path(args.out)
    check_out(out, args.overwrite)
    device = pick_device(args.device)
    for s in args.scales or ():
        check_scale(s)
    if args.weights:
        files = [Path(w) for w in args.weights]
        scales_of = {f: int(read_metadata(f)["scale"]) for f in files}  # refuses a missing file
        wanted = set(args.scales) if args.scales else set(scales_of.values())
        missing = sorted(wanted - set(scales_of.values()))
        if missing:
            raise ValueError(
                f"no weights for x{', x'.join(map(str, missing))} among --weights "
                f"(they are x{', x'.join(str(scales_of[f]) for f in files)})"
            )
        files = [f for f in files if scales_of[f] in wanted]
    else:
        files = [shipped_weights(s) for s in (args.scales or [2, 4])]
    if args.split and args.data and Path(args.data).suffix.lower() != ".json":
        raise ValueError(
            f"--split chooses among a manifest's splits; {args.data} is not a manifest, and all of it "
            "would be scored (make one with `fagan prepare DIR --out M.json`)"
        )
    if args.subject is not None and (args.data is None or not Path(args.data).is_dir()):
        raise ValueError("--subject names subjects in a folder given as --data; a manifest names its own")
    volumes = evaluation_volumes(args.data, args.split or "test", args.subject)
    fid_network = load_inception(args.fid_weights, device) if (args.fid or args.fid_weights) else None

    loaded = [load_release(f, device=device) for f in files]
    # A model name may repeat across scales, not within one: clashing ones are named by their files.
    scales = [int(meta["scale"]) for _, meta in loaded]
    names = method_names(files, [meta["model"] for _, meta in loaded], scales)
    result_methods = [
        Method(name, scale, generator)
        for name, scale, (generator, _) in zip(names, scales, loaded, strict=True)
    ]
    _warn_trained_on(files, [meta for _, meta in loaded], volumes)
    print(f"evaluating {len(result_methods)} model(s) and bicubic on {len(volumes)} volume(s)")
    on_off = {True: "on", False: "off"}
    print(
        f"networks' outputs: consistency projection {on_off[not args.no_consistency]}, "
        f"self-ensemble {on_off[args.self_ensemble]}"
    )
    with atomic_folder(out) as folder:  # a failure leaves no half of an evaluation, nor a mix
        ev = evaluate(
            volumes,
            result_methods,
            axis=args.axis,
            device=device,
            fid_network=fid_network,
            figures_dir=folder / "figures" if args.figures else None,
            figure_volumes=[v.name for v in volumes] if args.figures else (),
            progress=print,
            self_ensemble=args.self_ensemble,
            consistency=not args.no_consistency,
        )
        main = psnr_ssim_tables(ev)
        tables = main + psnr_ssim_tables(ev, foreground=True)
        tables += [fid_table(ev, "fid")] if ev.fid else []
        write_rows(ev.rows, folder / "per_volume.csv")
        write_tables(tables, folder)
        _write_record(folder / "evaluation.json", args, files, [meta for _, meta in loaded], volumes)
    print()
    print(main[-1].markdown())
    if ev.fid:
        print(tables[-1].markdown())
    print(f"wrote per_volume.csv, evaluation.json, tables.md and {len(tables)} table CSVs to {out}/")
    return 0


def _write_record(path: Path, args: argparse.Namespace, files: list, metas: list, volumes: list) -> None:
    """What made these numbers: the weights (with their checksums), the test volumes, the
    settings and the versions, for a paper's methods section and to rerun it."""
    import json
    import platform
    import sys

    import torch

    from fagan import __version__

    record = {
        "command": ["fagan", *sys.argv[1:]],
        "fagan": __version__,
        "torch": torch.__version__,
        "python": platform.python_version(),
        "weights": [
            {
                "file": str(Path(f).resolve()),
                "model": m["model"],
                "scale": int(m["scale"]),
                "tensors_sha256": m.get("tensors_sha256"),
            }
            for f, m in zip(files, metas, strict=True)
        ],
        "data": str(Path(args.data).resolve()) if args.data else "fagan.data.sample",
        "split": args.split or "test",
        "volumes": [
            {
                "name": v.name,
                "subject": v.subject or v.name,
                "anatomy": v.anatomy,
                "path": str(Path(v.path).resolve()),
            }
            for v in volumes
        ],
        "axis": args.axis,
        "consistency": not args.no_consistency,
        "self_ensemble": args.self_ensemble,
        "fid": bool(args.fid or args.fid_weights),
        "device": args.device,
    }
    path.write_text(json.dumps(record, indent=1) + "\n", encoding="utf-8")


def _warn_trained_on(files: list, metas: list[dict[str, str]], volumes: list) -> None:
    """Say which weights were trained on which of the volumes they are to be scored on."""
    import sys

    from fagan.data.fingerprint import fingerprint
    from fagan.models.release import trained_fingerprints

    marks = [trained_fingerprints(meta) for meta in metas]
    if not any(marks):
        return
    prints = {v.name: fingerprint(v.path) for v in volumes}
    for file, mark in zip(files, marks, strict=True):
        seen = [name for name, p in prints.items() if p in mark]
        if seen:
            shown = ", ".join(seen[:3]) + (f" and {len(seen) - 3} more" if len(seen) > 3 else "")
            print(
                f"fagan: warning: {file} was trained on {len(seen)} of these {len(volumes)} volumes "
                f"({shown}); their scores are not held out",
                file=sys.stderr,
            )


#: What ``fagan evaluate`` writes into ``--out``: the files it may replace with ``--overwrite``.
WRITES = (
    "per_volume.csv",
    "evaluation.json",
    "tables.md",
    "table*_*.csv",
    "foreground_*.csv",
    "fid.csv",
    "figures",
)


def check_out(out: Path, overwrite: bool) -> None:
    """Refuse an ``--out`` that is a file, or a folder with files in it unless ``overwrite``, and
    even then one holding anything that is not an earlier evaluation's (it is replaced whole)."""
    if out.exists() and not out.is_dir():
        raise ValueError(f"--out {out} exists and is not a folder")
    cwd = Path.cwd().resolve()
    if out.resolve() == cwd or out.resolve() in cwd.parents:
        raise ValueError(f"--out {out} holds the current folder; give a folder of its own for the results")
    entries = sorted(out.iterdir()) if out.is_dir() else []
    if entries and not overwrite:
        raise FileExistsError(f"--out {out} is not empty; pass --overwrite to replace its evaluation")
    foreign = [e.name for e in entries if not any(e.match(pattern) for pattern in WRITES)]
    if foreign:
        raise FileExistsError(
            f"--out {out} holds files fagan evaluate does not write ({', '.join(foreign[:3])}); "
            "choose another folder"
        )

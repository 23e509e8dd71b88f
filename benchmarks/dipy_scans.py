"""The shipped weights on four real brain scans that no training, validation or choice ever saw.

    pip download --no-deps dipy==1.12.1 -d /tmp/dipy
    python benchmarks/dipy_scans.py --dipy /tmp/dipy/dipy-1.12.1-*.whl [--weights OTHER.safetensors ...]

The held-out sample volumes of ``fagan demo`` gated the x2 stage-3 runs (model card), so their
last hundredths of a dB are not an unbiased estimate. The dipy wheel (BSD-3) ships four small
scans of real people, read here straight from the wheel (or from an installed dipy, or a folder
holding the files): a coronal T1 slice (256x256), two b0 EPI volumes (128x128x10 and
58x58x24, 4x4x5 mm) and a noisy diffusion-weighted EPI volume (96x96x14). None of them is part
of the package's data, and the shipped weights never trained on them; their scores are
printed here and in the model card, and nothing is chosen on them.

Each scan goes through ``fagan evaluate``'s protocol (LR by antialiased bicubic downsampling
along axis 2, PSNR over the whole volume with the HR volume's value range, the consistency
projection on). Printed: each weights file's PSNR gain over bicubic in dB, per scan, and the
mean over the four.
"""

from __future__ import annotations

import argparse
import gzip
import importlib.util
import io
import sys
import tempfile
import zipfile
from pathlib import Path

import nibabel as nib
import numpy as np

from fagan.evaluation.evaluate import BICUBIC, EvalVolume, Method, evaluate
from fagan.models.release import load_release, shipped_weights

# file in dipy/data/files -> (name printed, what it is)
SCANS = {
    "t1_coronal_slice.npy": ("dipy_t1_coronal_slice", "brain T1"),
    "S0_10slices.nii.gz": ("dipy_S0_10slices", "brain EPI b0"),
    "aniso_vox.nii.gz": ("dipy_aniso_vox", "brain EPI b0"),
    "test_piesno.nii.gz": ("dipy_test_piesno", "brain EPI DWI"),
}


def _reader(source: str | None):
    """A function that returns the bytes of one dipy data file, from a wheel or a folder."""
    if source is None:
        spec = importlib.util.find_spec("dipy")
        if spec is None or spec.origin is None:
            sys.exit("error: dipy is not installed; give --dipy (a dipy wheel or its data/files folder)")
        source = str(Path(spec.origin).parent / "data" / "files")
    path = Path(source)
    if path.is_dir():
        return lambda name: (path / name).read_bytes()
    if zipfile.is_zipfile(path):
        wheel = zipfile.ZipFile(path)
        return lambda name: wheel.read(f"dipy/data/files/{name}")
    sys.exit(f"error: {source} is neither a dipy wheel nor a folder of dipy data files")


def write_scans(source: str | None, folder: Path) -> list[EvalVolume]:
    """Write the four scans as 3D float32 NIfTI files (a 2D slice as one slice) in ``folder``."""
    read = _reader(source)
    volumes = []
    for file, (name, anatomy) in SCANS.items():
        raw = read(file)
        if file.endswith(".npy"):
            data, affine = np.load(io.BytesIO(raw))[:, :, None], np.eye(4)
        else:
            image = nib.Nifti1Image.from_bytes(gzip.decompress(raw) if raw[:2] == b"\x1f\x8b" else raw)
            data, affine = np.asarray(image.dataobj), image.affine
            data = data.reshape(data.shape[:3])  # S0_10slices is 128x128x10x1
        path = folder / f"{name}.nii.gz"
        nib.save(nib.Nifti1Image(data.astype(np.float32), affine), path)
        volumes.append(EvalVolume(name, anatomy, path))
    return volumes


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--dipy", help="a dipy wheel, or a folder with its data files (default: installed dipy)"
    )
    parser.add_argument(
        "--weights", nargs="*", default=[], help="more release files to score beside the shipped ones"
    )
    parser.add_argument("--scales", nargs="+", type=int, default=[2, 4, 8])
    args = parser.parse_args()
    methods = [
        Method(f"shipped x{s}", s, load_release(shipped_weights(s, "psnr"), scale=s)[0]) for s in args.scales
    ]
    for file in args.weights:
        generator, meta = load_release(file)
        methods.append(Method(Path(file).stem, int(meta["scale"]), generator))
    methods.sort(key=lambda m: m.scale)
    with tempfile.TemporaryDirectory() as tmp:
        volumes = write_scans(args.dipy, Path(tmp))
        result = evaluate(volumes, methods, progress=lambda _: None)
    names = [v.name for v in volumes]
    print("gain over bicubic, dB (PSNR)")
    print(f"{'scale':<6}{'weights':<28}" + "".join(f"{n[5:]:>18}" for n in names) + f"{'mean':>8}")
    for method in methods:
        ours = result.values(method.name, method.scale, "psnr")
        base = result.values(BICUBIC, method.scale, "psnr")
        gains = [a - b for a, b in zip(ours, base, strict=True)]
        row = "".join(f"{g:>+18.2f}" for g in gains)
        print(f"x{method.scale:<5}{method.name:<28}{row}{np.mean(gains):>+8.2f}")


if __name__ == "__main__":
    main()

"""The trainer's validation score of release files, so files from different runs can be compared.

    python benchmarks/validation_score.py W.safetensors [W2.safetensors ...]

Runs :func:`fagan.training.trainer.validate`, the score every training run writes to its
``validation.jsonl``, on the embedded sample data's validation split (the FSL MNI152 2 mm
template) with the shipped weights' data settings (slices along all three axes, at most 32; LR
made by the degradation each file was trained for):
mean PSNR and SSIM on the normalised scale, and bicubic's. A weight average made by
``fagan train --average`` has no run of its own; this is how its validation figure is measured.
"""

from __future__ import annotations

import argparse

import torch

from fagan.data.sample import sample_volumes
from fagan.models.release import load_release, trained_degradation
from fagan.training.config import DataConfig
from fagan.training.data import validation_dataset
from fagan.training.distributed import Runtime
from fagan.training.trainer import validate


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("weights", nargs="+", help="release .safetensors files")
    args = parser.parse_args()
    val_paths = [volume.path for volume in sample_volumes("val")]
    for path in args.weights:
        generator, meta = load_release(path)
        data = DataConfig(axes=(0, 1, 2), degradation=trained_degradation(meta))
        dataset = validation_dataset(val_paths, data, generator.scale)
        if dataset is None:
            raise SystemExit("the sample data has no validation slices")
        scores, _ = validate(generator, dataset, Runtime(torch.device("cpu")))
        print(
            f"{path}: x{generator.scale} validation {scores['psnr']:.2f} dB / {scores['ssim']:.4f} "
            f"(bicubic {scores['bicubic_psnr']:.2f} / {scores['bicubic_ssim']:.4f}, "
            f"{scores['slices']} slices)"
        )


if __name__ == "__main__":
    main()

"""fp32 against bf16 autocast for one whole volume on a CUDA GPU, with the shipped weights.

    python benchmarks/cuda_precision.py VOLUME [--scales 2 4] [--batch-size 16]

For each scale, :func:`fagan.inference.upscale.upscale_volume` runs four times in turn (fp32, bf16,
fp32, bf16) and prints each run's wall time (after a CUDA synchronise) and the CUDA allocator's
peak; the first pair includes cuDNN's warm-up, so read the second. It then prints how far the
bf16 output is from the fp32 one: the largest difference as a fraction of the fp32 output's
range, and the PSNR between the two over that range. Needs a CUDA GPU; BENCHMARKS.md has the
figures ("On a GPU").
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from fagan.data.io import read_volume
from fagan.inference.upscale import upscale_volume
from fagan.models.release import load_release, shipped_weights


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("volume")
    parser.add_argument("--scales", type=int, nargs="+", default=[2, 4])
    parser.add_argument("--batch-size", type=int, default=16)
    args = parser.parse_args()
    if not torch.cuda.is_available():
        raise SystemExit("cuda_precision.py: no CUDA GPU here; bf16 inference is for CUDA only")
    volume = read_volume(args.volume)
    print("volume", args.volume, volume.array.shape, torch.cuda.get_device_name())
    for scale in args.scales:
        generator, _ = load_release(shipped_weights(scale), device="cuda")
        outputs: dict[str, np.ndarray] = {}
        for precision in ("fp32", "bf16", "fp32", "bf16"):
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
            start = time.perf_counter()
            out = upscale_volume(
                volume, generator, device="cuda", precision=precision, batch_size=args.batch_size
            )
            torch.cuda.synchronize()
            seconds = time.perf_counter() - start
            outputs[precision] = np.asarray(out.array, dtype=np.float64)
            peak = torch.cuda.max_memory_allocated() / 2**20
            print(f"x{scale} {precision}: {seconds:.2f} s, CUDA peak {peak:.0f} MiB")
        ref, low = outputs["fp32"], outputs["bf16"]
        span = float(ref.max() - ref.min())
        mse = float(((ref - low) ** 2).mean())
        psnr = 10 * np.log10(span**2 / max(mse, 1e-30))
        worst = np.abs(ref - low).max() / span
        print(f"x{scale} bf16 vs fp32: max |diff| / range {worst:.2e}, PSNR {psnr:.1f} dB")


if __name__ == "__main__":
    main()

"""FA-GAN's x2 time per slice against SRGAN's, with full self-attention and with pooled keys.

    python benchmarks/attention_keys.py [--threads 1] [--rounds 4]

Builds untrained networks (timing does not depend on the weights), rewrites them for inference
as ``fagan upscale`` does, and times one 128x128 low-resolution slice (256x256 output) per call,
interleaving the networks and keeping each one's fastest round.
"""

from __future__ import annotations

import argparse
import os
import time

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import torch  # noqa: E402

from fagan.models import build_generator  # noqa: E402
from fagan.models.attention import SelfAttention  # noqa: E402
from fagan.models.fast import optimize_for_inference  # noqa: E402


def fagan_with(max_keys: int | None, scale: int) -> torch.nn.Module:
    generator = build_generator("fagan", scale).eval()
    for module in generator.modules():
        if isinstance(module, SelfAttention):
            module.max_keys = max_keys
    return optimize_for_inference(generator)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--scale", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    x = torch.rand(1, 1, 256 // args.scale, 256 // args.scale)
    networks = {"srgan": optimize_for_inference(build_generator("srgan", args.scale).eval())}
    for max_keys in (None, 4096, 1024):
        networks[f"fagan, keys <= {max_keys or 'all'}"] = fagan_with(max_keys, args.scale)
    best = dict.fromkeys(networks, float("inf"))
    with torch.inference_mode():
        for _ in range(args.rounds):
            for name, network in networks.items():
                start = time.perf_counter()
                network(x)
                best[name] = min(best[name], time.perf_counter() - start)
    print(f"x{args.scale}, {args.threads} thread(s), 256x256 output, fastest of {args.rounds} rounds")
    for name, seconds in best.items():
        print(f"{name:<22} {1000 * seconds:7.0f} ms  {seconds / best['srgan']:.2f}x SRGAN")


if __name__ == "__main__":
    main()

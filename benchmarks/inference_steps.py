"""Each inference speed-up on its own: the figures behind BENCHMARKS.md's optimisation log.

Usage:  python benchmarks/inference_steps.py [--scale 4] [--batch 8] [--rounds 3] [--no-compile]
                                             [--threads N] [--clock wall|cpu]

FA-GAN and SRGAN (random weights: speed does not depend on them) at ``--scale`` with 256x256
outputs. Every group of variants is timed in interleaved rounds, keeping each variant's fastest
round, so the ratios inside a group hold even on a machine shared with other work. ``--clock cpu
--threads 1`` measures the process's CPU time on one thread instead of the wall time: the work
itself, which other processes on the machine barely change. The steps:

1. ``torch.no_grad`` against ``torch.inference_mode`` (the plain generator);
2. the inference rewrite of :mod:`fagan.models.fast` (batch norms folded, the output convolution
   as taps), then channels-last memory format on top of it;
3. merging each LFFB's parallel convolutions (the three first convolutions into one 7x7 one with
   zero-padded 3x3/5x5 kernels, likewise the three second ones, and the third ones as one
   grouped 7x7 convolution): identical output, 3 calls instead of 9 per block, 1.8x the FLOPs;
4. batch sizes 1, 4, 8 and 16; torch threads 1 and 2;
5. ``torch.compile`` (inductor) of the rewritten generator, with its compile time;
6. bf16 autocast on the CPU (speed and the largest output difference against fp32);
7. OpenMP's wait policy (PASSIVE: idle threads sleep; ACTIVE: they spin), each in a fresh
   process since it is read when torch loads.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from fagan.models import build_generator
from fagan.models.blocks import LocalFusionFeatureBlock
from fagan.models.fast import optimize_for_inference


class MergedLFFB(nn.Module):
    """An LFFB whose parallel convolutions run as one call per stage (same output)."""

    def __init__(self, block: LocalFusionFeatureBlock) -> None:
        super().__init__()
        k = max(block.kernel_sizes)

        def padded(convs: nn.ModuleList) -> tuple[torch.Tensor, torch.Tensor]:
            weights = []
            for conv in convs:
                p = (k - conv.kernel_size[0]) // 2
                weights.append(F.pad(conv.weight.detach(), (p, p, p, p)))
            return torch.cat(weights), torch.cat([conv.bias.detach() for conv in convs])

        self.w1, self.b1 = padded(block.first)
        self.w2, self.b2 = padded(block.second)
        self.w3, self.b3 = padded(block.third)
        self.groups = len(block.kernel_sizes)
        self.pad = k // 2
        self.fuse = block.fuse

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shared = F.relu(F.conv2d(x, self.w1, self.b1, padding=self.pad))
        paths = F.conv2d(shared, self.w2, self.b2, padding=self.pad)
        paths = F.conv2d(paths, self.w3, self.b3, padding=self.pad, groups=self.groups)
        return x + self.fuse(paths)


def merge_lffbs(model: nn.Module) -> nn.Module:
    for name, child in list(model.body.named_children()):
        if isinstance(child, LocalFusionFeatureBlock):
            model.body._modules[name] = MergedLFFB(child)
    return model


CLOCK: dict[str, Callable[[], float]] = {"wall": time.perf_counter, "cpu": time.process_time}
clock = CLOCK["wall"]


def best_of(tasks: dict[str, Callable[[], Any]], rounds: int, per: int) -> dict[str, float]:
    """Fastest round of each task in ms per slice (``per`` slices a call), after one warm-up."""
    for fn in tasks.values():
        fn()
    best = {name: float("inf") for name in tasks}
    for _ in range(rounds):
        for name, fn in tasks.items():
            start = clock()
            fn()
            best[name] = min(best[name], clock() - start)
    return {name: 1000 * s / per for name, s in best.items()}


def models(scale: int) -> dict[str, nn.Module]:
    out = {}
    for name in ("fagan", "srgan"):
        torch.manual_seed(0)
        model = build_generator(name, scale).eval()
        for m in model.modules():  # non-trivial statistics, so that folding is really checked
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.normal_(0, 0.1)
                m.running_var.uniform_(0.5, 2.0)
        out[name] = model
    return out


def run_steps(scale: int, batch: int, rounds: int, compile_too: bool) -> dict[str, Any]:
    nets = models(scale)
    side = 256 // scale
    x = torch.rand(batch, 1, side, side)
    x_cl = x.contiguous(memory_format=torch.channels_last)
    fast = {n: optimize_for_inference(m) for n, m in nets.items()}
    fast_cl = {n: optimize_for_inference(m).to(memory_format=torch.channels_last) for n, m in nets.items()}
    merged = merge_lffbs(optimize_for_inference(nets["fagan"]))
    results: dict[str, Any] = {"scale": scale, "batch": batch, "rounds": rounds}

    def no_grad(model: nn.Module, inp: torch.Tensor) -> Callable[[], Any]:
        def call() -> Any:
            with torch.no_grad():
                return model(inp)

        return call

    def inference(model: nn.Module, inp: torch.Tensor) -> Callable[[], Any]:
        def call() -> Any:
            with torch.inference_mode():
                return model(inp)

        return call

    with torch.inference_mode():
        ref = nets["fagan"](x)
        results["max_difference"] = {
            "fast": float((fast["fagan"](x) - ref).abs().max()),
            "fast_channels_last": float((fast_cl["fagan"](x_cl) - ref).abs().max()),
            "merged_lffb": float((merged(x) - ref).abs().max()),
            "srgan_fast": float((fast["srgan"](x) - nets["srgan"](x)).abs().max()),
        }
    tasks = {}
    for n in nets:
        tasks[f"{n} no_grad"] = no_grad(nets[n], x)
        tasks[f"{n} inference_mode"] = inference(nets[n], x)
        tasks[f"{n} fast"] = inference(fast[n], x)
        tasks[f"{n} fast+channels_last"] = inference(fast_cl[n], x_cl)
    tasks["fagan fast+merged_lffb"] = inference(merged, x)
    print("steps 1-3 ...", file=sys.stderr, flush=True)
    results["steps"] = best_of(tasks, rounds, batch)

    print("batch sizes ...", file=sys.stderr, flush=True)
    sizes = {}
    for n in nets:
        for b in (1, 4, 8, 16):
            inp = torch.rand(b, 1, side, side)
            sizes[f"{n} batch {b}"] = best_of({"t": inference(fast[n], inp)}, rounds, b)["t"]
    results["batch_sizes"] = sizes

    print("threads ...", file=sys.stderr, flush=True)
    threads = {}
    default = torch.get_num_threads()
    for t in sorted({1, 2, default}):
        torch.set_num_threads(t)
        for n in nets:
            threads[f"{n} threads {t}"] = best_of({"t": inference(fast[n], x)}, rounds, batch)["t"]
    torch.set_num_threads(default)
    results["threads"] = threads

    print("bf16 autocast ...", file=sys.stderr, flush=True)
    with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16):
        low = fast["fagan"](x).float()
    results["bf16_max_difference"] = float((low - ref).abs().max())

    def bf16(model: nn.Module) -> Callable[[], Any]:
        def call() -> Any:
            with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16):
                return model(x)

        return call

    results["bf16"] = best_of(
        {f"{n} fp32": inference(fast[n], x) for n in nets} | {f"{n} bf16": bf16(fast[n]) for n in nets},
        rounds,
        batch,
    )

    if compile_too:
        print("torch.compile ...", file=sys.stderr, flush=True)
        plain = optimize_for_inference(nets["fagan"], tap_sum=False)
        compiled = torch.compile(plain)
        start = time.perf_counter()
        with torch.inference_mode():
            out = compiled(x)
        results["compile_seconds"] = time.perf_counter() - start
        results["compile_max_difference"] = float((out - ref).abs().max())
        results["compile"] = best_of(
            {"fagan fast": inference(fast["fagan"], x), "fagan compiled": inference(compiled, x)},
            rounds,
            batch,
        )
    return results


def wait_policies(scale: int, batch: int, rounds: int) -> dict[str, float]:
    """ms/slice of the rewritten FA-GAN in fresh processes, one per OpenMP wait policy."""
    out = {}
    for policy in ("PASSIVE", "ACTIVE"):
        env = dict(os.environ, OMP_WAIT_POLICY=policy)
        cmd = [sys.executable, __file__, "--one-policy", "--scale", str(scale)]
        cmd += ["--batch", str(batch), "--rounds", str(rounds), "--clock", "wall"]
        proc = subprocess.run(cmd, env=env, capture_output=True, text=True, check=True)
        out[policy] = json.loads(proc.stdout)["ms_per_slice"]
    return out


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--scale", type=int, default=4, choices=(2, 4, 8))
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--no-compile", action="store_true", help="skip torch.compile (minutes on 2 cores)")
    parser.add_argument("--threads", type=int, help="torch threads (default: torch's choice)")
    parser.add_argument("--clock", default="wall", choices=tuple(CLOCK), help="wall time or process CPU time")
    parser.add_argument("--out", help="also write the JSON here")
    parser.add_argument("--one-policy", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    global clock
    clock = CLOCK[args.clock]
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.one_policy:
        fast = optimize_for_inference(build_generator("fagan", args.scale))
        x = torch.rand(args.batch, 1, 256 // args.scale, 256 // args.scale)
        with torch.inference_mode():
            ms = best_of({"t": lambda: fast(x)}, args.rounds, args.batch)["t"]
        print(json.dumps({"ms_per_slice": ms}))
        return
    load = os.getloadavg()
    results = run_steps(args.scale, args.batch, args.rounds, not args.no_compile)
    print("OpenMP wait policies ...", file=sys.stderr, flush=True)
    results["omp_wait_policy"] = wait_policies(args.scale, args.batch, args.rounds)
    results["loadavg"] = [load, os.getloadavg()]
    results["torch_threads"] = torch.get_num_threads()
    results["clock"] = args.clock
    results["omp_wait_policy_here"] = os.environ.get("OMP_WAIT_POLICY")
    text = json.dumps(results, indent=2)
    if args.out:
        with open(args.out, "w") as f:
            f.write(text + "\n")
    print(text)


if __name__ == "__main__":
    main()

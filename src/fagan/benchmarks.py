"""The performance benchmark behind ``fagan bench``: speed and memory beside peers and the machine.

One run measures, on one device and under the same load:

* inference of every named generator at x2/x4/x8 (``size x size`` outputs) beside bicubic
  interpolation: slices per second, peak memory, FLOPs per slice and the achieved GFLOP/s, through
  :func:`fagan.inference.upscale_batch` with the generator rewritten for inference, exactly as
  ``fagan upscale`` runs it;
* the machine's own fp32 matrix-product GFLOP/s, the ceiling the generators are compared to;
* a whole volume (``slices`` slices at x4) through :func:`fagan.inference.upscale_volume` with the
  shipped x4 weights;
* one large slice per scale through the tiled path, for peak memory at large slice sizes;
* one training step (generator then discriminator update, L1 pixel + adversarial loss) of FA-GAN
  and SRGAN, through :func:`fagan.training.trainer.train_step`;
* the self-attention block's peak memory at growing numbers of positions.

Timings interleave the measured things round by round and keep each one's fastest round, so a
machine shared with other work slows every entry of a round alike and the ratios between entries
stay meaningful even when absolute times do not.

Peak memory is what the measured call adds on top of what the process held before it: on CUDA
from the allocator's peak counter; on a Linux CPU the kernel's resident-set high-water mark
(``VmHWM``), reset through ``/proc/self/clear_refs`` just before the call, minus the resident set at
that moment (after ``malloc_trim`` has returned free heap pages). Elsewhere it is not measured.
"""

from __future__ import annotations

import ctypes
import dataclasses
import os
import platform
import time
from collections.abc import Callable, Iterable
from typing import Any

import torch

DEFAULT_SCALES: tuple[int, ...] = (2, 4, 8)


@dataclasses.dataclass(frozen=True)
class Settings:
    """Sizes of one benchmark run: the full one of the issue, or a tiny ``--quick`` one."""

    size: int = 256
    scales: tuple[int, ...] = DEFAULT_SCALES
    batch: int = 4
    rounds: int = 3
    matmul_size: int = 2048
    volume_slices: int = 256
    volume_size: int = 256
    volume_scale: int = 4
    train_batch: int = 16
    train_patch: int = 96
    train_rounds: int = 3
    large_size: int = 1024
    attention_sides: tuple[int, ...] = (128, 256, 512)
    attention_channels: int = 64

    @property
    def full_size(self) -> bool:
        """Whether the sizes are the issue's, so that its targets can be judged."""
        return self.size >= 256 and self.volume_slices >= 256 and self.volume_size >= 256


FULL = Settings()
QUICK = Settings(
    size=32,
    batch=2,
    rounds=1,
    matmul_size=256,
    volume_slices=4,
    volume_size=32,
    train_batch=2,
    train_patch=32,
    train_rounds=1,
    large_size=64,
    attention_sides=(8, 16, 32),
    attention_channels=16,
)


# --- Machine ------------------------------------------------------------------------------------


def cpu_model() -> str:
    """The CPU's model name (``/proc/cpuinfo`` on Linux, else what ``platform`` knows)."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine_info(device: torch.device) -> dict[str, Any]:
    """What ran the benchmark: CPU, threads, device, library versions and the load average."""
    info: dict[str, Any] = {
        "cpu": cpu_model(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "mkldnn": torch.backends.mkldnn.is_available(),
        "device": str(device),
        "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else cpu_model(),
        "python": platform.python_version(),
    }
    try:
        info["loadavg"] = [round(x, 2) for x in os.getloadavg()]
    except OSError:
        info["loadavg"] = None
    return info


# --- Measuring ------------------------------------------------------------------------------------


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _status_kib(field: str) -> int | None:
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


def _release_free_heap() -> None:
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


def _reset_high_water_mark() -> bool:
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        return False
    return True


def peak_memory(fn: Callable[[], Any], device: torch.device) -> tuple[Any, int | None]:
    """Run ``fn`` and return its result and the peak memory in bytes it added (None: unknown).

    See the module docstring for what is measured on each device.
    """
    if device.type == "cuda":
        _sync(device)
        base = torch.cuda.memory_allocated(device)
        torch.cuda.reset_peak_memory_stats(device)
        out = fn()
        _sync(device)
        return out, torch.cuda.max_memory_allocated(device) - base
    _release_free_heap()
    base = _status_kib("VmRSS")
    if base is None or not _reset_high_water_mark():
        return fn(), None
    out = fn()
    peak = _status_kib("VmHWM")
    return out, None if peak is None else max(peak - base, 0) * 1024


def process_peak_bytes() -> int | None:
    """The process's resident-set high-water mark (since start or the last reset), CPU only."""
    kib = _status_kib("VmHWM")
    return None if kib is None else kib * 1024


def _timed(fn: Callable[[], Any], device: torch.device) -> float:
    _sync(device)
    start = time.perf_counter()
    fn()
    _sync(device)
    return time.perf_counter() - start


def interleaved_best(
    tasks: dict[str, Callable[[], Any]], rounds: int, device: torch.device
) -> dict[str, float]:
    """Fastest wall time (s) of each task over ``rounds`` rounds; every round runs every task once."""
    best = {name: float("inf") for name in tasks}
    for _ in range(rounds):
        for name, fn in tasks.items():
            best[name] = min(best[name], _timed(fn, device))
    return best


def matmul_gflops(device: torch.device, n: int) -> Callable[[], Any]:
    """A task multiplying two ``n x n`` fp32 matrices (``2 n^3`` FLOPs)."""
    a = torch.randn(n, n, device=device)
    b = torch.randn(n, n, device=device)
    return lambda: a @ b


# --- The measurements --------------------------------------------------------------------------------


def inference(
    names: Iterable[str], settings: Settings, device: torch.device, log: Callable[[str], None]
) -> tuple[list[dict[str, Any]], float]:
    """Per (model, scale): ms and slices per second, peak memory, GFLOPs per slice, GFLOP/s.

    Returns the rows and the machine's matmul GFLOP/s measured in the same rounds.
    """
    import torch.nn.functional as F

    from fagan.inference import upscale_batch
    from fagan.models import build_generator
    from fagan.models.fast import optimize_for_inference
    from fagan.models.summary import count_flops

    names = list(names)
    tasks: dict[str, Callable[[], Any]] = {}
    rows: dict[str, dict[str, Any]] = {}
    for scale in settings.scales:
        side = settings.size // scale
        lr = torch.rand(settings.batch, 1, side, side, device=device)
        for name in names:
            torch.manual_seed(0)
            model = build_generator(name, scale).eval()
            flops = count_flops(model, (1, 1, side, side))
            fast = optimize_for_inference(model, device)
            key = f"{name} x{scale}"
            tasks[key] = lambda fast=fast, lr=lr: upscale_batch(fast, lr)
            rows[key] = {"model": name, "scale": scale, "gflops_per_slice": flops / 1e9, "precision": "fp32"}
            if device.type == "cuda" and name in ("fagan", "srgan"):
                key = f"{name} x{scale} bf16"
                tasks[key] = lambda fast=fast, lr=lr: upscale_batch(fast, lr, precision="bf16")
                rows[key] = {
                    "model": name,
                    "scale": scale,
                    "gflops_per_slice": flops / 1e9,
                    "precision": "bf16",
                }
        key = f"bicubic x{scale}"
        tasks[key] = lambda lr=lr, scale=scale: F.interpolate(
            lr, scale_factor=scale, mode="bicubic", align_corners=False
        )
        rows[key] = {"model": "bicubic", "scale": scale, "gflops_per_slice": None, "precision": "fp32"}
    # The first (warm-up) call of each also measures its peak memory.
    for key, fn in tasks.items():
        log(f"warm-up and peak memory: {key}")
        rows[key]["peak_mib"] = _mib(peak_memory(fn, device)[1])
    tasks["matmul"] = matmul_gflops(device, settings.matmul_size)
    log(f"timing {len(tasks)} entries, {settings.rounds} interleaved rounds")
    best = interleaved_best(tasks, settings.rounds, device)
    machine = 2 * settings.matmul_size**3 / best.pop("matmul") / 1e9
    out = []
    for key, row in rows.items():
        seconds = best[key] / settings.batch
        row.update(ms_per_slice=1000 * seconds, slices_per_s=1 / seconds)
        flops = row["gflops_per_slice"]
        row["gflops_per_s"] = None if flops is None else flops / seconds
        row["fraction_of_matmul"] = None if flops is None else flops / seconds / machine
        out.append(row)
    return out, machine


def whole_volume(settings: Settings, device: torch.device) -> dict[str, Any]:
    """A ``slices``-slice volume of ``volume_size``^2 outputs at ``volume_scale`` through
    :func:`upscale_volume` with the shipped weights: wall time and peak memory."""
    import numpy as np

    from fagan.data.io import Volume
    from fagan.inference import upscale_volume
    from fagan.models.release import load_release, shipped_weights

    scale = settings.volume_scale
    side = settings.volume_size // scale
    generator, meta = load_release(shipped_weights(scale), scale=scale, device=device)
    rng = np.random.default_rng(0)
    array = (rng.random((side, side, settings.volume_slices)) * 1000).astype(np.float32)
    volume = Volume(array, np.eye(4), {})
    start = time.perf_counter()
    result, peak = peak_memory(lambda: upscale_volume(volume, generator, device=device), device)
    seconds = time.perf_counter() - start
    return {
        "model": meta.get("model", "fagan"),
        "weights": shipped_weights(scale).name,
        "scale": scale,
        "slices": settings.volume_slices,
        "output": list(result.array.shape),
        "seconds": seconds,
        "ms_per_slice": 1000 * seconds / settings.volume_slices,
        "peak_mib": _mib(peak),
        "process_peak_mib": _mib(process_peak_bytes()) if device.type == "cpu" else None,
    }


def large_slices(settings: Settings, device: torch.device) -> list[dict[str, Any]]:
    """One ``large_size``^2 output slice of the default FA-GAN per scale through the default tiling
    of :func:`fagan.inference.upscale_batch`: wall time and peak memory."""
    from fagan.inference import upscale_batch
    from fagan.inference.upscale import default_tile
    from fagan.models import build_generator
    from fagan.models.fast import optimize_for_inference

    rows = []
    for scale in settings.scales:
        torch.manual_seed(0)
        fast = optimize_for_inference(build_generator("fagan", scale), device)
        side = settings.large_size // scale
        lr = torch.rand(1, 1, side, side, device=device)
        start = time.perf_counter()
        _, peak = peak_memory(lambda fast=fast, lr=lr: upscale_batch(fast, lr), device)
        rows.append(
            {
                "model": "fagan",
                "scale": scale,
                "output": settings.large_size,
                "tile": default_tile(scale),
                "seconds": time.perf_counter() - start,
                "peak_mib": _mib(peak),
            }
        )
    return rows


def training_steps(
    names: Iterable[str], settings: Settings, device: torch.device, scale: int = 4
) -> list[dict[str, Any]]:
    """One G + D step (Adam, L1 pixel + adversarial loss) per model, interleaved, fastest round."""
    from fagan.losses import GeneratorLoss, PixelLoss
    from fagan.models import build_discriminator, build_generator
    from fagan.training.distributed import Runtime
    from fagan.training.trainer import Networks, train_step

    runtime = Runtime(device)
    loss = GeneratorLoss(PixelLoss("l1"), perceptual_weight=0.0, adversarial_weight=1e-3)
    hr = torch.rand(settings.train_batch, 1, settings.train_patch, settings.train_patch, device=device)
    lr = hr[:, :, ::scale, ::scale].contiguous()
    tasks: dict[str, Callable[[], Any]] = {}
    for name in names:
        torch.manual_seed(0)
        g = build_generator(name, scale).to(device).train()
        d = build_discriminator().to(device).train()
        nets = Networks(
            generator=g,
            g=g,
            opt_g=torch.optim.Adam(g.parameters(), lr=1e-4),
            discriminator=d,
            d=d,
            opt_d=torch.optim.Adam(d.parameters(), lr=1e-4),
        )
        tasks[name] = lambda nets=nets: train_step(lr, hr, nets, loss, runtime, warmup=False)
    for fn in tasks.values():  # warm-up
        fn()
    best = interleaved_best(tasks, settings.train_rounds, device)
    return [
        {
            "model": name,
            "scale": scale,
            "batch": settings.train_batch,
            "patch": settings.train_patch,
            "ms_per_step": 1000 * seconds,
            "steps_per_s": 1 / seconds,
        }
        for name, seconds in best.items()
    ]


def attention_memory(settings: Settings, device: torch.device) -> list[dict[str, Any]]:
    """Peak memory of :class:`SelfAttention` over ``side x side`` positions, one map."""
    from fagan.models.attention import SelfAttention

    block = SelfAttention(settings.attention_channels).to(device).eval()
    rows = []
    for side in settings.attention_sides:
        x = torch.rand(1, settings.attention_channels, side, side, device=device)
        start = time.perf_counter()
        with torch.inference_mode():
            _, peak = peak_memory(lambda x=x: block(x), device)
        seconds = time.perf_counter() - start
        rows.append(
            {
                "positions": side * side,
                "side": side,
                "channels": settings.attention_channels,
                "peak_mib": _mib(peak),
                "input_mib": x.numel() * 4 / 2**20,
                "seconds": seconds,
            }
        )
    return rows


def _mib(n: int | None) -> float | None:
    return None if n is None else n / 2**20


# --- The whole run and its report -----------------------------------------------------------------


def run(
    settings: Settings = FULL,
    device: torch.device | str = "cpu",
    names: Iterable[str] | None = None,
    log: Callable[[str], None] = lambda message: None,
) -> dict[str, Any]:
    """Every measurement of the benchmark; a JSON-ready dict."""
    from fagan.models import GENERATORS

    device = torch.device(device)
    names = list(names) if names is not None else list(GENERATORS)
    results: dict[str, Any] = {"machine": machine_info(device), "settings": dataclasses.asdict(settings)}
    start = time.perf_counter()
    log("inference")
    results["inference"], results["matmul_gflops_per_s"] = inference(names, settings, device, log)
    log("whole volume")
    results["volume"] = whole_volume(settings, device)
    log("large slices")
    results["large_slices"] = large_slices(settings, device)
    log("training steps")
    results["training"] = training_steps([n for n in ("fagan", "srgan") if n in names], settings, device)
    log("self-attention memory")
    results["attention"] = attention_memory(settings, device)
    results["targets"] = targets(results, settings.full_size)
    results["seconds"] = time.perf_counter() - start
    results["machine"]["loadavg_end"] = machine_info(device)["loadavg"]
    return results


def targets(results: dict[str, Any], judged: bool = True) -> dict[str, Any]:
    """The issue's targets, each with the measured figure and whether it is met (None when the
    run's sizes are not the issue's, e.g. ``--quick``)."""
    rows = {(r["model"], r["scale"]): r for r in results["inference"] if r.get("precision", "fp32") == "fp32"}

    def verdict(ok: bool) -> bool | None:
        return ok if judged else None

    out: dict[str, Any] = {}
    for scale in sorted({r["scale"] for r in results["inference"]}):
        if ("fagan", scale) in rows and ("srgan", scale) in rows:
            ratio = rows["fagan", scale]["ms_per_slice"] / rows["srgan", scale]["ms_per_slice"]
            out[f"fagan_vs_srgan_x{scale}"] = {"ratio": ratio, "target": "<= 2", "met": verdict(ratio <= 2)}
    volume = results["volume"]
    out["volume_seconds"] = {
        "seconds": volume["seconds"],
        "target": "< 180 s for 256 slices of 256^2 at x4",
        "met": verdict(volume["seconds"] < 180),
    }
    # Whole-process peak of the volume run, and the largest peak any measured call added.
    peaks = [r["peak_mib"] for r in (*results["inference"], *results["large_slices"])]
    peaks = [p for p in peaks if p is not None]
    if volume.get("process_peak_mib") is not None:
        peaks.append(volume["process_peak_mib"])
    if peaks:
        out["peak_memory_mib"] = {"max": max(peaks), "target": "< 4096", "met": verdict(max(peaks) < 4096)}
    if ("fagan", 4) in rows and rows["fagan", 4]["fraction_of_matmul"] is not None:
        fraction = rows["fagan", 4]["fraction_of_matmul"]
        out["fagan_x4_fraction_of_matmul"] = {
            "fraction": fraction,
            "target": ">= 0.5",
            "met": verdict(fraction >= 0.5),
        }
    return out


def _fmt(value: Any, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def format_report(results: dict[str, Any]) -> str:
    """The results as plain-text tables."""
    m = results["machine"]
    s = results["settings"]
    lines = [
        f"device: {m['device_name']} ({m['device']}), {m['cpu_count']} CPUs, "
        f"{m['torch_threads']} torch threads, torch {m['torch']}; "
        f"load average {m['loadavg']} -> {m.get('loadavg_end')}",
        f"machine fp32 matmul ({s['matmul_size']}^2): {results['matmul_gflops_per_s']:.1f} GFLOP/s",
        "",
        f"inference, {s['size']}x{s['size']} outputs, batch {s['batch']}, fastest of {s['rounds']} rounds:",
    ]
    header = (
        "model",
        "scale",
        "ms/slice",
        "slices/s",
        "x srgan",
        "peak MiB",
        "GFLOP/slice",
        "GFLOP/s",
        "of matmul",
    )
    rows = []
    srgan = {
        r["scale"]: r["ms_per_slice"]
        for r in results["inference"]
        if r["model"] == "srgan" and r.get("precision", "fp32") == "fp32"
    }
    for r in results["inference"]:
        ratio = r["ms_per_slice"] / srgan[r["scale"]] if r["scale"] in srgan else None
        precision = r.get("precision", "fp32")
        rows.append(
            (
                r["model"] if precision == "fp32" else f"{r['model']} ({precision})",
                f"x{r['scale']}",
                _fmt(r["ms_per_slice"], ".1f"),
                _fmt(r["slices_per_s"], ".2f"),
                _fmt(ratio, ".2f"),
                _fmt(r["peak_mib"], ".0f"),
                _fmt(r["gflops_per_slice"], ".2f"),
                _fmt(r["gflops_per_s"], ".1f"),
                _fmt(r["fraction_of_matmul"], ".0%"),
            )
        )
    lines += _table(header, rows)
    v = results["volume"]
    lines += [
        "",
        f"whole volume: {v['slices']} slices -> {'x'.join(map(str, v['output']))} at x{v['scale']} "
        f"({v['weights']}): {v['seconds']:.1f} s ({v['ms_per_slice']:.1f} ms/slice), "
        f"peak +{_fmt(v['peak_mib'], '.0f')} MiB (process {_fmt(v['process_peak_mib'], '.0f')} MiB)",
        "",
        f"training step (G + D, batch {s['train_batch']}, {s['train_patch']}^2 HR patches, x4, "
        "L1 + adversarial):",
    ]
    lines += _table(
        ("model", "ms/step", "steps/s"),
        [
            (r["model"], _fmt(r["ms_per_step"], ".0f"), _fmt(r["steps_per_s"], ".2f"))
            for r in results["training"]
        ],
    )
    lines += ["", "one large slice, default FA-GAN, default tile (low-resolution pixels):"]
    lines += _table(
        ("scale", "output", "tile", "s", "peak MiB"),
        [
            (
                f"x{r['scale']}",
                f"{r['output']}^2",
                str(r["tile"]),
                f"{r['seconds']:.1f}",
                _fmt(r["peak_mib"], ".0f"),
            )
            for r in results["large_slices"]
        ],
    )
    lines += ["", f"self-attention peak memory ({s['attention_channels']} channels, batch 1):"]
    lines += _table(
        ("positions", "peak MiB", "per 1k positions", "input MiB", "s"),
        [
            (
                f"{r['side']}^2 = {r['positions']}",
                _fmt(r["peak_mib"], ".1f"),
                _fmt(None if r["peak_mib"] is None else 1024 * r["peak_mib"] / r["positions"], ".3f"),
                f"{r['input_mib']:.1f}",
                f"{r['seconds']:.1f}",
            )
            for r in results["attention"]
        ],
    )
    lines += ["", "targets:"]
    for name, t in results["targets"].items():
        figure = {k: v for k, v in t.items() if k not in ("target", "met")}
        shown = ", ".join(f"{k} {_fmt(v, '.3g')}" for k, v in figure.items())
        met = {True: "met", False: "NOT met", None: "not judged at these sizes"}[t["met"]]
        lines.append(f"  {name}: {shown} (target {t['target']}): {met}")
    lines.append(f"\n({results['seconds']:.0f} s in all)")
    return "\n".join(lines)


def _table(header: tuple[str, ...], rows: list[tuple[str, ...]]) -> list[str]:
    widths = [max(len(str(r[i])) for r in (header, *rows)) for i in range(len(header))]
    return [
        "  ".join(
            str(cell).rjust(w) if i else str(cell).ljust(w)
            for i, (cell, w) in enumerate(zip(row, widths, strict=True))
        )
        for row in (header, tuple("-" * w for w in widths), *rows)
    ]

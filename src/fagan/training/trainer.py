"""The training loop: optional pixel-loss warm-up, then alternating generator / discriminator
updates, with an EMA generator, validation, checkpoints and a release file.

One step (:func:`train_step`): the generator makes ``SR = G(LR)`` and is updated on the weighted
pixel, perceptual and adversarial losses (the pixel loss alone during warm-up, as SRResNet
before SRGAN); then the discriminator is updated on ``HR`` against the detached ``SR``. Adam
(lr 1e-4, betas (0.9, 0.999), SRGAN's) for both, with optional step decay. A step whose losses
are NaN or infinite is skipped (no update) and logged; ``schedule.max_bad_steps`` in a row stop
the run, keeping the last checkpoint.

Outputs in the run directory: ``config.yaml`` (the resolved configuration), ``losses.jsonl``
(every term of every step), ``validation.jsonl`` (PSNR/SSIM of the EMA generator and of bicubic
on full validation slices), ``checkpoints/`` (the last ``keep_checkpoints``), ``train.log``,
``loss_curves.png`` and ``release.safetensors`` (the EMA generator) at the end, and
``tensorboard/`` when asked for.

On a GPU the generator, VGG and discriminator run under bf16 autocast in channels-last memory
format, with pinned memory and loader workers; on CPU everything is float32. With
``deterministic: true`` (or on CPU, where the kernels used are deterministic), a resumed run
ends with exactly the weights of an uninterrupted one.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import logging
import os
import random
import shutil
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from fagan import FaganError
from fagan.data import SliceDataset, upsample_bicubic
from fagan.losses import GeneratorLoss, PerceptualLoss, PixelLoss, discriminator_loss
from fagan.metrics import psnr, ssim
from fagan.models import build_discriminator, build_generator, generator_config
from fagan.models.config import GeneratorConfig
from fagan.models.generator import Generator, grow_blocks, grow_upsampling
from fagan.models.release import RUN_RELEASE, load_release, save_release
from fagan.training import checkpoint, logs
from fagan.training.config import TrainConfig, load_config, save_config
from fagan.training.data import (
    DATA_RECORD,
    SampleStream,
    check_same_data,
    data_record,
    default_workers,
    save_data_record,
    split_volumes,
    training_dataset,
    training_loader,
    validation_dataset,
)
from fagan.training.distributed import Runtime, mean_across_ranks, start, stop
from fagan.training.ema import EMA

log = logging.getLogger(__name__)

#: Environment variable: when set, every rank writes ``RUN_DIR/debug/rank{r}.json`` with hashes of
#: its final weights and its first batch (used by the multi-process test).
DEBUG_HASH_ENV = "FAGAN_DEBUG_RANK_HASH"
#: Validation PSNR/SSIM are computed on the normalised intensity scale with this data range.
DATA_RANGE = 1.0


@dataclass
class Networks:
    """The networks and optimisers of a run. ``g`` / ``d`` are what the step calls (DDP wrappers
    when distributed), ``generator`` / ``discriminator`` the modules themselves."""

    generator: Generator
    g: nn.Module
    opt_g: torch.optim.Optimizer
    discriminator: nn.Module | None = None
    d: nn.Module | None = None
    opt_d: torch.optim.Optimizer | None = None
    ema: EMA | None = None

    @property
    def inference(self) -> Generator:
        """The generator to validate and release: the EMA copy when there is one."""
        return self.ema.model if self.ema is not None else self.generator  # type: ignore[return-value]


def train_step(
    lr: torch.Tensor,
    hr: torch.Tensor,
    nets: Networks,
    loss_fn: GeneratorLoss,
    runtime: Runtime,
    warmup: bool,
) -> tuple[dict[str, float], bool]:
    """One generator update, then one discriminator update on the detached fake.

    ``lr``: ``(B, 1, h, w)``, ``hr``: ``(B, 1, s*h, s*w)`` on the device. Returns every loss term
    (averaged over ranks) and whether the step was applied (False: a term was NaN/Inf and both
    updates were skipped).
    """
    adversarial = loss_fn.adversarial and not warmup and nets.d is not None
    autocast = torch.autocast("cuda", dtype=torch.bfloat16) if runtime.cuda else contextlib.nullcontext()

    # Generator: pixel (+ perceptual + adversarial) loss; D is frozen and called unwrapped, so
    # its DDP reducer never sees this backward pass.
    nets.opt_g.zero_grad(set_to_none=True)
    with autocast:
        sr = nets.g(lr)
    fake_logits = None
    if adversarial:
        assert nets.discriminator is not None
        nets.discriminator.requires_grad_(False)
        with autocast:
            fake_logits = nets.discriminator(sr).float()
    g_loss, terms = loss_fn(sr.float(), hr, fake_logits, warmup=warmup)
    g_loss.backward()

    # Discriminator: real against the detached fake, in one forward pass.
    if adversarial:
        assert nets.discriminator is not None and nets.d is not None and nets.opt_d is not None
        nets.discriminator.requires_grad_(True)
        nets.opt_d.zero_grad(set_to_none=True)
        with autocast:
            logits = nets.d(torch.cat([hr, sr.detach().to(hr.dtype)])).float()
        real_logits, fake_logits = logits.split(hr.shape[0])
        d_loss, d_terms = discriminator_loss(real_logits, fake_logits)
        d_loss.backward()
        terms.update(d_total=d_loss.detach(), **d_terms)

    names = list(terms)
    values = mean_across_ranks(torch.stack([terms[n].float() for n in names]), runtime).tolist()
    result = dict(zip(names, values, strict=True))
    ok = all(np.isfinite(values))
    if ok:
        nets.opt_g.step()
        if adversarial:
            assert nets.opt_d is not None
            nets.opt_d.step()
    return result, ok


@torch.no_grad()
def validate(
    generator: nn.Module, dataset: SliceDataset, runtime: Runtime
) -> tuple[dict[str, float], torch.Tensor]:
    """Mean PSNR/SSIM of ``generator`` and of bicubic upsampling on full slices (data range 1 on
    the normalised scale), and the first slice's (bicubic | SR | HR) image ``(1, H, 3W + 4)``."""
    was_training = generator.training
    generator.eval()
    scores: dict[str, list[float]] = {"psnr": [], "ssim": [], "bicubic_psnr": [], "bicubic_ssim": []}
    triplet = torch.zeros(1, 1, 1)
    for i in range(len(dataset)):
        pair = dataset[i]
        lr, hr = pair.lr[None].to(runtime.device), pair.hr[None].to(runtime.device)
        with torch.autocast("cuda", dtype=torch.bfloat16) if runtime.cuda else contextlib.nullcontext():
            sr = generator(lr.contiguous(memory_format=torch.channels_last) if runtime.cuda else lr)
        sr = sr.float().contiguous()
        bicubic = upsample_bicubic(lr, dataset.scale)
        scores["psnr"].append(float(psnr(sr, hr, DATA_RANGE)[0]))
        scores["ssim"].append(float(ssim(sr, hr, DATA_RANGE)[0]))
        scores["bicubic_psnr"].append(float(psnr(bicubic, hr, DATA_RANGE)[0]))
        scores["bicubic_ssim"].append(float(ssim(bicubic, hr, DATA_RANGE)[0]))
        if i == 0:
            triplet = logs.image_triplet(bicubic[0].cpu(), sr[0].cpu(), hr[0].cpu())
    generator.train(was_training)
    return {k: float(np.mean(v)) for k, v in scores.items()} | {"slices": len(dataset)}, triplet


def lr_at(base: float, step: int, milestones: tuple[int, ...], gamma: float) -> float:
    """Step decay: ``base * gamma ** (number of milestones <= step)``."""
    return base * gamma ** sum(step >= m for m in milestones)


def state_hash(module: nn.Module) -> str:
    """SHA-256 over a module's state dict (keys and exact tensor bytes)."""
    digest = hashlib.sha256()
    for key, value in sorted(module.state_dict().items()):
        digest.update(key.encode())
        digest.update(value.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()


def _differences(mine: GeneratorConfig, theirs: GeneratorConfig) -> list[tuple[str, Any, Any]]:
    """``(field, mine, theirs)`` for each generator setting in which two configurations differ."""
    a, b = dataclasses.asdict(mine), dataclasses.asdict(theirs)
    return [(k, a[k], b[k]) for k in a if a[k] != b[k]]


def _init_generator(generator: Generator, path: str) -> None:
    """Start ``generator`` from the weights of a release file of the same architecture.

    The file may be for a smaller scale: its upsampling stages are then extended by copies of
    its last one (:func:`fagan.models.generator.grow_upsampling`). It may hold fewer LFFBs: the
    stack is then deepened by blocks that start as the identity
    (:func:`fagan.models.generator.grow_blocks`).
    """
    source, meta = load_release(path)
    if source.scale > generator.scale:
        raise FaganError(
            f"model.init_weights {path} holds x{source.scale} weights, more than this run's "
            f"x{generator.scale}; start from weights of x{generator.scale} or a smaller scale"
        )
    differ = _differences(generator.config, source.config)
    blocks = generator.config.lffb_blocks
    deeper = [d for d in differ if d[0] == "lffb_blocks" and generator.config.lffb and d[2] < blocks]
    differ = [d for d in differ if d not in deeper]
    if differ:
        have = ", ".join(f"{k}={theirs}" for k, _, theirs in differ)
        want = ", ".join(f"{k}={mine}" for k, mine, _ in differ)
        raise FaganError(
            f"model.init_weights {path} holds a different generator ({have} where this run has {want}); "
            "set model.overrides to match"
        )
    stages = len(generator.upsample)
    state = grow_upsampling(source.state_dict(), stages)
    if deeper:
        state = grow_blocks(state, blocks, generator.state_dict())
        log.info("LFFBs deepened from %d to %d; the new ones start as the identity", deeper[0][2], blocks)
    generator.load_state_dict(state)
    log.info(
        "generator initialised from %s (%s x%d, %s steps)",
        path,
        meta.get("model"),
        source.scale,
        meta.get("steps", "?"),
    )


def _build(config: TrainConfig, runtime: Runtime, *, init: bool = True) -> Networks:
    """Networks, EMA and optimisers on the device (DDP-wrapped when distributed).

    ``init=False`` leaves ``model.init_weights`` unread (a resumed run's checkpoint holds the weights).
    """
    m, o = config.model, config.optim
    generator = build_generator(m.name, m.scale, **m.overrides)
    if m.init_weights and init:
        _init_generator(generator, m.init_weights)
    discriminator = build_discriminator(**m.discriminator) if config.adversarial else None
    fmt = torch.channels_last if runtime.cuda else torch.contiguous_format
    generator.to(runtime.device, memory_format=fmt)
    if discriminator is not None:
        discriminator.to(runtime.device, memory_format=fmt)
    ema = EMA(generator, config.schedule.ema_decay) if config.schedule.ema_decay > 0 else None
    fused = True if runtime.cuda else None
    opt_g = torch.optim.Adam(generator.parameters(), lr=o.lr, betas=o.betas, fused=fused)
    opt_d = (
        torch.optim.Adam(discriminator.parameters(), lr=o.d_lr, betas=o.betas, fused=fused)
        if discriminator is not None
        else None
    )
    g: nn.Module = generator
    d: nn.Module | None = discriminator
    if runtime.distributed:
        ids = [runtime.local_rank] if runtime.cuda else None
        g = DistributedDataParallel(generator, device_ids=ids)
        if discriminator is not None:
            d = DistributedDataParallel(discriminator, device_ids=ids)
    return Networks(generator, g, opt_g, discriminator, d, opt_d, ema)


def _loss_fn(
    config: TrainConfig, vgg_weights: str | os.PathLike | None, device: torch.device
) -> GeneratorLoss:
    lo = config.loss
    perceptual = None
    if config.perceptual:
        perceptual = PerceptualLoss.pretrained(
            lo.perceptual_network, lo.perceptual_layer, vgg_weights, lo.perceptual_scale
        )
        if device.type == "cuda":
            perceptual.to(memory_format=torch.channels_last)
    loss = GeneratorLoss(
        PixelLoss(lo.pixel), lo.pixel_weight, perceptual, lo.perceptual_weight, lo.adversarial_weight
    )
    return loss.to(device)


def _payload(
    config: TrainConfig, nets: Networks, step: int, samples: int, stream: SampleStream
) -> dict[str, Any]:
    epoch, position = stream.position(samples)
    return {
        "format": "fagan-train-checkpoint",
        "version": 1,
        "step": step,
        "samples_seen": samples,
        "epoch": epoch,
        "position": position,
        "generator": nets.generator.state_dict(),
        "discriminator": nets.discriminator.state_dict() if nets.discriminator is not None else None,
        "ema": nets.ema.state_dict() if nets.ema is not None else None,
        "opt_g": nets.opt_g.state_dict(),
        "opt_d": nets.opt_d.state_dict() if nets.opt_d is not None else None,
        "scaler": None,  # bf16 autocast needs no gradient scaler
        "rng": checkpoint.rng_state(),
        "config": config.to_dict(),
    }


def _restore(nets: Networks, payload: dict[str, Any], runtime: Runtime, seed: int) -> None:
    nets.generator.load_state_dict(payload["generator"])
    nets.opt_g.load_state_dict(payload["opt_g"])
    if nets.discriminator is not None:
        if payload["discriminator"] is None:
            raise FaganError(
                "the checkpoint has no discriminator (a PSNR run); keep loss.adversarial_weight=0"
            )
        nets.discriminator.load_state_dict(payload["discriminator"])
        assert nets.opt_d is not None
        nets.opt_d.load_state_dict(payload["opt_d"])
    if nets.ema is not None:
        nets.ema.load_state_dict(payload["ema"] if payload["ema"] is not None else payload["generator"])
    checkpoint.set_rng_state(payload["rng"])  # rank 0's; other ranks get their own stream below
    if runtime.rank:
        torch.manual_seed(seed + runtime.rank + payload["step"])


def _check_resume(config: TrainConfig, payload: dict[str, Any], run_dir: Path) -> None:
    """Refuse to resume ``run_dir``'s checkpoint ``payload`` with another architecture or with
    fewer steps than it has already taken; FaganError naming the keys."""
    saved = payload.get("config") or {}
    model = saved.get("model") or {}
    name, scale = model.get("name", config.model.name), model.get("scale", config.model.scale)
    differ: list[tuple[str, Any, Any]] = []
    if name != config.model.name:
        differ.append(("model.name", config.model.name, name))
    if scale != config.model.scale:
        differ.append(("model.scale", config.model.scale, scale))
    if name == config.model.name:
        mine = generator_config(config.model.name, **config.model.overrides)
        theirs = generator_config(name, **(model.get("overrides") or {}))
        differ += [(f"model.overrides.{k}", new, old) for k, new, old in _differences(mine, theirs)]
    if payload.get("discriminator") is not None and config.adversarial:
        mine_d, theirs_d = config.model.discriminator, model.get("discriminator") or {}
        differ += [
            (f"model.discriminator.{k}", mine_d.get(k, "default"), theirs_d.get(k, "default"))
            for k in sorted(set(mine_d) | set(theirs_d))
            if mine_d.get(k) != theirs_d.get(k)
        ]
    if differ:
        shown = ", ".join(f"{key} is {new} but the run has {old}" for key, new, old in differ)
        raise FaganError(
            f"--resume cannot change the architecture of {run_dir} ({shown}); drop those --set "
            "overrides, or train a new run (model.init_weights can start it from this one's release)"
        )
    step = int(payload["step"])
    if config.schedule.steps < step:
        raise FaganError(
            f"config key schedule.steps: {config.schedule.steps} is below the {step} steps {run_dir} has "
            f"already taken; resume with schedule.steps of at least {step} (a run cannot go back)"
        )
    changed = _changed_keys(saved, config.to_dict())
    if changed:  # allowed, but the run's config.yaml is rewritten: say what it no longer says
        log.info("resuming %s with changed settings: %s", run_dir, "; ".join(changed))


def _changed_keys(old: Any, new: Any, prefix: str = "") -> list[str]:
    """``key: old -> new`` for every leaf of two nested config dicts that differs."""
    if isinstance(old, dict) and isinstance(new, dict):
        keys = sorted(set(old) | set(new))
        return [c for k in keys for c in _changed_keys(old.get(k), new.get(k), f"{prefix}{k}.")]
    if isinstance(old, (list, tuple)) and isinstance(new, (list, tuple)):
        old, new = list(old), list(new)
    return [] if old == new else [f"{prefix.rstrip('.')}: {old} -> {new}"]


class _Batches:
    """Endless (lr, hr) batches moved to the device (non-blocking from pinned memory on GPU)."""

    def __init__(self, loader: torch.utils.data.DataLoader, runtime: Runtime) -> None:
        self.iterator: Iterator | None = iter(loader)
        self.runtime = runtime

    def next(self) -> tuple[torch.Tensor, torch.Tensor]:
        if self.iterator is None:
            raise RuntimeError("the batches were closed")
        pair = next(self.iterator)
        fmt = torch.channels_last if self.runtime.cuda else torch.contiguous_format
        lr = pair.lr.to(self.runtime.device, non_blocking=True).contiguous(memory_format=fmt)
        hr = pair.hr.to(self.runtime.device, non_blocking=True).contiguous(memory_format=fmt)
        return lr, hr

    def close(self) -> None:
        """Drop this reference to the loader's iterator, normally its last, which shuts the worker
        processes down. Left to the garbage collector they outlived the run until the interpreter
        exited: frames of the run sit in reference cycles that only a full collection frees. (A
        traceback raised from inside the iterator still holds it until that traceback goes.)"""
        self.iterator = None


#: Files a run writes into its folder while starting, before it is a run that can be resumed.
_STARTUP_FILES = (logs.TRAIN_LOG,)


def _is_run(run_dir: Path) -> bool:
    """Whether ``run_dir`` holds a (possibly unfinished) training run."""
    started = (run_dir / "config.yaml").is_file() and (run_dir / logs.TRAIN_LOG).is_file()
    return bool(checkpoint.list_checkpoints(run_dir)) or (run_dir / logs.LOSSES).exists() or started


def _prepare_run_dir(run_dir: Path, resume: bool) -> bool:
    """Check ``run_dir`` for a new run (or for resuming one) and create it; returns whether it was
    created by this call. A new run refuses a folder that holds a run or any other files."""
    if resume:
        if not run_dir.is_dir():
            raise FileNotFoundError(f"run directory not found: {run_dir}")
        return False
    if run_dir.exists() and not run_dir.is_dir():
        raise FileExistsError(f"{run_dir} is a file, not a folder; choose another --out")
    if run_dir.is_dir():
        if _is_run(run_dir):
            raise FileExistsError(
                f"{run_dir} already holds a training run; continue it with --resume {run_dir} "
                "or choose another --out"
            )
        others = sorted(p.name for p in run_dir.iterdir() if p.name not in _STARTUP_FILES)
        if others:
            shown = ", ".join(others[:3]) + (", ..." if len(others) > 3 else "")
            raise FileExistsError(
                f"{run_dir} is not empty ({shown}) and holds no training run; "
                "choose a new or empty folder for --out"
            )
        return False
    run_dir.mkdir(parents=True)
    return True


def _remove_startup(run_dir: Path, created: bool, before: set[str]) -> None:
    """Undo what a run that failed before its first step left in ``run_dir``: the folder itself if
    this run created it, else the entries it added."""
    if created:
        shutil.rmtree(run_dir, ignore_errors=True)
        return
    for entry in run_dir.iterdir() if run_dir.is_dir() else ():
        if entry.name not in before:
            if entry.is_dir() and not entry.is_symlink():
                shutil.rmtree(entry, ignore_errors=True)
            else:
                entry.unlink(missing_ok=True)


@dataclass
class _Progress:
    """What the caller of :func:`_train` needs to know when it fails: whether a step was taken,
    and the writers to close."""

    started: bool = False
    writers: list[Any] = dataclasses.field(default_factory=list)


def train(
    config: TrainConfig,
    run_dir: str | os.PathLike,
    *,
    device: str = "auto",
    vgg_weights: str | os.PathLike | None = None,
    resume: bool = False,
    tensorboard: bool = False,
) -> Path:
    """Train per ``config`` into ``run_dir`` (or continue it when ``resume``); returns the release
    file's path. Under torchrun this runs in every process, with DDP."""
    runtime = start(device)
    run_dir = Path(run_dir)
    handler: logging.Handler | None = None
    progress = _Progress()
    created, before, failed = False, set(), False
    try:
        if runtime.is_main:
            before = {p.name for p in run_dir.iterdir()} if run_dir.is_dir() else set()
            created = _prepare_run_dir(run_dir, resume)
            handler = logging.FileHandler(run_dir / logs.TRAIN_LOG, encoding="utf-8")
            handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
            logging.getLogger("fagan").addHandler(handler)
            if logging.getLogger("fagan").getEffectiveLevel() > logging.INFO:
                logging.getLogger("fagan").setLevel(logging.INFO)
        return _train(config, run_dir, runtime, vgg_weights, resume, tensorboard, progress)
    except Exception:
        failed = True
        raise
    finally:
        for writer in progress.writers:
            writer.close()
        if handler is not None:
            logging.getLogger("fagan").removeHandler(handler)
            handler.close()
        # A new run that failed its checks (bad data, config or weights) leaves nothing behind.
        if failed and handler is not None and not resume and not progress.started:
            _remove_startup(run_dir, created, before)
        stop(runtime)


def _train(
    config: TrainConfig,
    run_dir: Path,
    runtime: Runtime,
    vgg_weights: str | os.PathLike | None,
    resume: bool,
    tensorboard: bool,
    progress: _Progress,
) -> Path:
    from tqdm import tqdm

    s = config.schedule
    random.seed(config.seed)
    np.random.seed(config.seed)
    torch.manual_seed(config.seed)
    if config.deterministic:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.use_deterministic_algorithms(True)
    elif runtime.cuda:
        torch.backends.cudnn.benchmark = True
    if runtime.cuda:
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True

    # Everything that can fail for a user's reason fails here, before the first step.
    writer = logs.tensorboard_writer(run_dir / "tensorboard") if tensorboard and runtime.is_main else None
    if writer is not None:
        progress.writers.append(writer)
    payload: dict[str, Any] | None = None
    if resume and checkpoint.finished_checkpoints(run_dir):
        payload, path = checkpoint.load_latest(run_dir)  # on CPU: RNG states must stay there
        _check_resume(config, payload, run_dir)
    loss_fn = _loss_fn(config, vgg_weights, runtime.device)
    nets = _build(config, runtime, init=payload is None)
    torch.manual_seed(
        config.seed + runtime.rank
    )  # the networks are built alike; from here on each rank differs
    train_paths, val_paths, source = split_volumes(config.data.manifest)
    record = data_record(train_paths, val_paths, source)
    if resume:
        check_same_data(run_dir, record)
    dataset = training_dataset(train_paths, config.data, config.model.scale, config.seed + runtime.rank)
    val_set = validation_dataset(val_paths, config.data, config.model.scale) if runtime.is_main else None
    if runtime.is_main and val_set is None:
        log.warning("no validation data (%s has no val split); validation is skipped", source)

    step, samples, bad = 0, 0, 0
    if resume and payload is None:
        # Stopped (killed) before its first checkpoint, or while saving it: nothing to restore, so
        # the run starts over; the seeds above make that the same run.
        log.warning("%s holds no finished checkpoint yet; starting the run again from step 0", run_dir)
        if runtime.is_main:
            logs.truncate_after(run_dir / logs.LOSSES, 0)
            logs.truncate_after(run_dir / logs.VALIDATION, 0)
    elif payload is not None:
        _restore(nets, payload, runtime, config.seed)
        step, samples = int(payload["step"]), int(payload["samples_seen"])
        if runtime.is_main:
            log.info("resuming from %s (step %d)", path, step)
            logs.truncate_after(run_dir / logs.LOSSES, step)
            logs.truncate_after(run_dir / logs.VALIDATION, step)
    if runtime.is_main:
        save_config(config, run_dir / "config.yaml")
        save_data_record(run_dir, record)

    batch = config.data.batch_size
    # balance=volumes draws every file equally often (a 4D file's volumes are one file's)
    groups = [dataset.files[e.volume] for e in dataset.entries] if config.data.balance == "volumes" else None
    stream = SampleStream(
        len(dataset), config.seed, runtime.rank, runtime.world_size, start=samples, groups=groups
    )
    workers = (
        config.data.num_workers if config.data.num_workers is not None else default_workers(runtime.cuda)
    )
    loss_log = logs.JsonLines(run_dir / logs.LOSSES) if runtime.is_main else None
    val_log = logs.JsonLines(run_dir / logs.VALIDATION) if runtime.is_main else None
    debug = os.environ.get(DEBUG_HASH_ENV) == "1"
    first_batch_hash = ""
    log.info(
        "training %s x%d for %d steps (%d warm-up) on %s, %d process(es), batch %d, data %s",
        config.model.name,
        config.model.scale,
        s.steps,
        s.warmup_steps,
        runtime.device,
        runtime.world_size,
        batch,
        source,
    )
    bar = tqdm(total=s.steps, initial=step, unit="step", disable=not runtime.is_main, dynamic_ncols=True)
    # Starts the loader's workers; nothing that can fail stands between this and the try that
    # closes it.
    batches = _Batches(training_loader(dataset, stream, batch, workers, pin_memory=runtime.cuda), runtime)
    started = time.perf_counter()
    progress.started = True
    try:
        while step < s.steps:
            lr, hr = batches.next()
            if debug and not first_batch_hash:
                first_batch_hash = hashlib.sha256(hr.cpu().numpy().tobytes()).hexdigest()
            rates = (
                lr_at(config.optim.lr, step, config.optim.lr_milestones, config.optim.lr_gamma),
                lr_at(config.optim.d_lr, step, config.optim.lr_milestones, config.optim.lr_gamma),
            )
            for group in nets.opt_g.param_groups:
                group["lr"] = rates[0]
            for group in nets.opt_d.param_groups if nets.opt_d is not None else []:
                group["lr"] = rates[1]
            warmup = step < s.warmup_steps
            terms, ok = train_step(lr, hr, nets, loss_fn, runtime, warmup)
            if ok and nets.ema is not None:
                nets.ema.update(nets.generator, step)
            step += 1
            samples += batch
            bad = 0 if ok else bad + 1
            if loss_log is not None:
                phase = "warmup" if warmup else ("gan" if config.adversarial else "pixel")
                elapsed = round(time.perf_counter() - started, 3)
                loss_log.write(
                    {
                        "step": step,
                        "phase": phase,
                        "lr": rates[0],
                        **terms,
                        "skipped": not ok,
                        "time": elapsed,
                    }
                )
            if not ok:
                shown = ", ".join(f"{k}={v:.4g}" for k, v in terms.items())
                log.warning("step %d: non-finite loss (%s); step skipped (%d in a row)", step, shown, bad)
                if bad >= s.max_bad_steps:
                    kept = checkpoint.list_checkpoints(run_dir)
                    raise FaganError(
                        f"{bad} steps in a row had NaN or infinite losses (last at step {step}); training "
                        f"stopped. Last good checkpoint: {kept[-1] if kept else 'none yet'}. "
                        "Lower optim.lr or check the data, then --resume"
                    )
            bar.update(1)
            if runtime.is_main and (step % s.log_every == 0 or step == s.steps):
                bar.set_postfix(
                    {k: f"{v:.4g}" for k, v in terms.items() if k in ("g_total", "pixel", "d_total")}
                )
                if writer is not None:
                    for name, value in terms.items():
                        writer.add_scalar(f"loss/{name}", value, step)
                    writer.add_scalar("lr", rates[0], step)
            if runtime.is_main and val_set is not None and (step % s.validate_every == 0 or step == s.steps):
                scores, triplet = validate(nets.inference, val_set, runtime)
                assert val_log is not None
                val_log.write({"step": step, **scores})
                log.info(
                    "step %d validation on %d slices: PSNR %.2f dB, SSIM %.4f (bicubic %.2f dB, %.4f)",
                    step,
                    scores["slices"],
                    scores["psnr"],
                    scores["ssim"],
                    scores["bicubic_psnr"],
                    scores["bicubic_ssim"],
                )
                if writer is not None:
                    for name, value in scores.items():
                        writer.add_scalar(f"val/{name}", value, step)
                    writer.add_image("val/bicubic_sr_hr", triplet, step, dataformats="CHW")
            if runtime.is_main and (step % s.checkpoint_every == 0 or step == s.steps):
                path = checkpoint.save_checkpoint(
                    run_dir, step, _payload(config, nets, step, samples, stream), s.keep_checkpoints
                )
                log.info("saved %s", path)
    finally:
        bar.close()
        batches.close()
        for jsonl in (loss_log, val_log):
            if jsonl is not None:
                jsonl.close()

    release = run_dir / RUN_RELEASE
    if runtime.is_main:
        # "config" is reserved for the GeneratorConfig, which save_release writes itself.
        metadata = {
            "steps": step,
            "data": source,
            "train_config": config.to_dict(),
            "ema": nets.ema is not None,
            "trained_on": record["train_fingerprints"],
        }
        save_release(release, nets.inference, config.model.name, metadata=metadata)
        logs.plot_loss_curves(run_dir)
        log.info("wrote %s and %s", release, run_dir / logs.CURVES)
    if debug:
        (run_dir / "debug").mkdir(parents=True, exist_ok=True)
        record = {
            "rank": runtime.rank,
            "generator": state_hash(nets.generator),
            "discriminator": state_hash(nets.discriminator) if nets.discriminator is not None else None,
            "first_batch": first_batch_hash,
        }
        (run_dir / "debug" / f"rank{runtime.rank}.json").write_text(json.dumps(record))
    return release


def export_release(
    run_dir: str | os.PathLike, out: str | os.PathLike, ema: bool = True, overwrite: bool = False
) -> Path:
    """Write the generator of ``run_dir``'s newest intact checkpoint as a release file (atomically).

    The EMA weights when ``ema`` and the run kept them, else the trained generator's. An existing
    ``out`` is replaced only with ``overwrite``, and never when it is the run's config or a checkpoint.
    """
    run_dir, out = Path(run_dir), Path(out)
    config_path = run_dir / "config.yaml"
    if not config_path.is_file():
        raise FileNotFoundError(f"{config_path} not found; give the directory of a `fagan train` run")
    if out.is_dir():
        raise FileExistsError(f"{out} is a folder; give the .safetensors file to write")
    target = out.resolve()
    if target == config_path.resolve() or target.parent == (run_dir / checkpoint.FOLDER).resolve():
        raise FileExistsError(f"{out} belongs to the run itself; write the release elsewhere")
    if out.exists() and not overwrite:
        raise FileExistsError(f"{out} exists; pass --overwrite to replace it")
    config = load_config(config_path)
    payload, path = checkpoint.load_latest(run_dir)
    generator = build_generator(config.model.name, config.model.scale, **config.model.overrides)
    use_ema = ema and payload.get("ema") is not None
    generator.load_state_dict(payload["ema"] if use_ema else payload["generator"])
    metadata = {
        "steps": payload["step"],
        "data": config.data.manifest or "fagan.data.sample",
        "train_config": config.to_dict(),  # "config" is the release's GeneratorConfig
        "ema": use_ema,
        "checkpoint": path.name,
    }
    record = run_dir / DATA_RECORD
    if record.is_file():  # absent in runs older than the record, or when it is unreadable
        with contextlib.suppress(ValueError, UnicodeDecodeError):
            trained_on = json.loads(record.read_text(encoding="utf-8")).get("train_fingerprints")
            if trained_on is not None:
                metadata["trained_on"] = trained_on
    return save_release(out, generator, config.model.name, metadata=metadata)


__all__ = [
    "DEBUG_HASH_ENV",
    "Networks",
    "export_release",
    "lr_at",
    "train",
    "train_step",
    "validate",
]

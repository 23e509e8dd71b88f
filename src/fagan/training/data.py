"""Training and validation data: which volumes, the per-rank sample stream, the loader."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator, Sequence
from pathlib import Path

import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from fagan import FaganError
from fagan.atomic import atomic_path
from fagan.data import SliceDataset, SlicePair, Volume
from fagan.data.datasets import NoSlicesError
from fagan.data.fingerprint import fingerprint
from fagan.data.manifest import Manifest, scan_volumes
from fagan.data.sample import FILES, sample_volumes
from fagan.metrics.image import SSIM_WINDOW
from fagan.training.config import DataConfig

SAMPLE_SOURCE = "fagan.data.sample"


def split_volumes(manifest: str | None) -> tuple[list[Path], list[Path], str]:
    """``(train, val, source)``: the embedded sample data's splits when ``manifest`` is None, a
    manifest JSON's train and val splits, or (a folder or one volume) everything for training
    and no validation."""
    if manifest is None:
        train = [v.path for v in sample_volumes("train")]
        return train, [v.path for v in sample_volumes("val")], SAMPLE_SOURCE
    source = Path(manifest)
    if source.is_file() and source.name.lower().endswith(".json"):
        loaded = Manifest.load(source)
        train, val = loaded.paths("train"), loaded.paths("val")
    elif source.is_dir():
        train, val = scan_volumes(source), []
    elif source.exists():
        train, val = [source], []
    else:
        raise FileNotFoundError(f"training data not found: {source}")
    if not train:
        raise FaganError(
            f"{source} has no training volumes; make a manifest with `fagan prepare DIR --out M.json`"
        )
    return train, val, str(source)


#: A run's record of the volumes it trains and validates on (written when it starts).
DATA_RECORD = "data.json"


def data_record(train: Sequence[Path], val: Sequence[Path], source: str) -> dict[str, object]:
    """Which volumes a run uses: ``source`` and each split's paths, relative to the folder the
    source names them from (the manifest's, the data folder, or the sample data's), so that a
    project moved as a whole still matches its record."""
    if source == SAMPLE_SOURCE:
        base = FILES
    else:
        base = Path(source) if Path(source).is_dir() else Path(source).parent
    base = base.resolve()

    def names(paths: Sequence[Path]) -> list[str]:
        return sorted(os.path.relpath(Path(p).resolve(), base) for p in paths)

    return {
        "source": source,
        "train": names(train),
        "val": names(val),
        # what a release of the run is marked as trained on (fagan evaluate warns on a match)
        "train_fingerprints": sorted({fingerprint(p) for p in train}),
    }


def check_same_data(run_dir: Path, record: dict[str, object], hint: str = "") -> None:
    """Refuse to go on with ``run_dir`` (resume it, or reuse its result) when the volumes that its
    data source now gives differ from those it was trained on: re-running ``fagan prepare`` can
    move a subject from training to test, and a run that went on would then be scored on a
    subject it trained on. ``hint`` says what to do instead (default: start a new run). A run
    without a record (older than the record) is not checked."""
    path = run_dir / DATA_RECORD
    if not path.is_file():
        return
    try:
        saved = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise FaganError(f"{path} is damaged ({exc}); delete it to go on without the check") from None
    changes = []
    for split in ("train", "val"):
        now, then = set(record[split]), set(saved.get(split, []))  # type: ignore[call-overload]
        if now - then:
            changes.append(f"{len(now - then)} {split} volume(s) added, e.g. {sorted(now - then)[0]}")
        if then - now:
            changes.append(f"{len(then - now)} {split} volume(s) gone, e.g. {sorted(then - now)[0]}")
    if changes:
        hint = hint or "start a new run (model.init_weights can start it from this run's exported weights)"
        raise FaganError(
            f"{run_dir} was trained on other data than {record['source']} gives now "
            f"({'; '.join(changes)}); {hint}"
        )


def save_data_record(run_dir: Path, record: dict[str, object]) -> None:
    """Write ``record`` into ``run_dir`` (see :func:`check_same_data`), unless it is there."""
    path = run_dir / DATA_RECORD
    text = json.dumps(record, indent=1) + "\n"
    if path.is_file() and path.read_text(encoding="utf-8") == text:
        return
    with atomic_path(path) as tmp:
        Path(tmp).write_text(text, encoding="utf-8")


def training_dataset(paths: list[Path], config: DataConfig, scale: int, seed: int) -> SliceDataset:
    """Random augmented HR patches of ``config.patch_size`` with their LR inputs."""
    return SliceDataset(
        paths,
        scale,
        axes=config.axes,
        patch_size=config.patch_size,
        augment=config.augment,
        seed=seed,
        degradation=config.degradation,
        min_foreground=config.min_foreground,
        zoom_range=config.zoom_range,
        zoom_method=config.zoom_method,
        noise_range=config.noise_range,
        contrast_prob=config.contrast_prob,
        contrast_knots=config.contrast_knots,
        gain_range=config.gain_range,
        offset_range=config.offset_range,
    )


def validation_dataset(paths: list[Path], config: DataConfig, scale: int) -> SliceDataset | None:
    """At most ``config.val_slices`` full slices at least SSIM's window wide, evenly spaced over the
    volume files; None if none."""
    if not paths or config.val_slices == 0:
        return None
    if len(paths) > config.val_slices:  # one slice from each of val_slices files, evenly spaced
        last, k = len(paths) - 1, config.val_slices
        paths = [paths[round(i * last / max(k - 1, 1))] for i in range(k)]
    try:
        return SliceDataset(
            paths,
            scale,
            axes=config.axes,
            degradation=config.degradation,
            min_foreground=config.min_foreground,
            max_slices_per_volume=config.val_slices // len(paths),
            min_side=SSIM_WINDOW,  # validation scores SSIM: thin cuts of a 10-slice volume cannot be scored
        )
    except NoSlicesError:
        names = [
            str(p.meta.get("path", "an in-memory volume") if isinstance(p, Volume) else p) for p in paths
        ]
        shown = ", ".join(names[:3]) + (", ..." if len(names) > 3 else "")
        raise FaganError(
            f"the val split ({len(paths)} volume(s): {shown}) has no slice usable for validation, "
            f"which needs sides of at least {max(scale, SSIM_WINDOW)} pixels and "
            f"{config.min_foreground:.0%} foreground; put larger volumes in the val split, lower "
            "data.min_foreground, or set data.val_slices=0 to train without validation"
        ) from None


class SampleStream(Sampler):
    """An endless stream of ``(epoch, index)`` for one rank, starting at sample ``start``.

    Epoch ``e`` is a permutation of the dataset drawn from ``seed + e`` (the same on every rank,
    as in ``DistributedSampler``); rank ``r`` of ``w`` takes every ``w``-th entry from ``r``, so the
    ranks see disjoint slices, and the remainder is dropped so all ranks have equal epochs.
    The stream depends only on its arguments, so a resumed run continues it exactly.

    With ``groups`` (a group per slice: the trainer gives the volume file it came from) an epoch
    is instead ``size`` draws, with replacement, in which every group is equally likely and a
    group's slices equally likely among themselves: a 10-slice scan is then seen as often as a
    600-slice template.
    """

    def __init__(
        self,
        size: int,
        seed: int,
        rank: int = 0,
        world_size: int = 1,
        start: int = 0,
        groups: Sequence[int] | None = None,
    ) -> None:
        if size < world_size:
            raise FaganError(f"{size} training slices cannot be shared among {world_size} processes")
        self.size, self.seed, self.rank, self.world_size, self.start = size, seed, rank, world_size, start
        self.per_rank = size // world_size
        self.weights: torch.Tensor | None = None
        if groups is not None:
            if len(groups) != size:
                raise FaganError(f"groups has {len(groups)} entries for {size} training slices")
            group = torch.as_tensor(list(groups))
            counts = torch.bincount(group).double()
            self.weights = 1.0 / (counts[group] * torch.count_nonzero(counts))

    def _order(self, epoch: int) -> torch.Tensor:
        generator = torch.Generator().manual_seed(self.seed + epoch)
        if self.weights is None:
            return torch.randperm(self.size, generator=generator)
        return torch.multinomial(self.weights, self.size, replacement=True, generator=generator)

    def position(self, sample: int) -> tuple[int, int]:
        """``(epoch, position within the epoch)`` of this rank's ``sample``-th sample."""
        return divmod(sample, self.per_rank)

    def __iter__(self) -> Iterator[tuple[int, int]]:
        sample, cached = self.start, (-1, torch.empty(0, dtype=torch.int64))
        while True:
            epoch, pos = self.position(sample)
            if cached[0] != epoch:
                cached = (epoch, self._order(epoch))
            yield epoch, int(cached[1][self.rank + pos * self.world_size])
            sample += 1


class EpochIndexed(Dataset):
    """``dataset[(epoch, index)]``: the patch of ``index`` as drawn in ``epoch``.

    Works inside DataLoader workers, whose copies of the dataset are set to each item's epoch,
    so the workers of the one endless iterator serve every epoch without being restarted.
    """

    def __init__(self, dataset: SliceDataset) -> None:
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, key: tuple[int, int]) -> SlicePair:
        epoch, index = key
        if self.dataset.epoch != epoch:
            self.dataset.set_epoch(epoch)
        return self.dataset[index]


def training_loader(
    dataset: SliceDataset, stream: SampleStream, batch_size: int, num_workers: int, pin_memory: bool
) -> DataLoader:
    """Batches of ``SlicePair`` (``lr (B, 1, h, w)``, ``hr (B, 1, s*h, s*w)``) from the stream.

    The stream is endless, so a run iterates the loader once and its workers live as long as that
    iterator: ``persistent_workers`` would add nothing. It is left off on purpose: together with
    ``pin_memory`` (on whenever training runs on CUDA) it makes every worker wait out PyTorch's
    5 s join timeout if the workers are still there at interpreter exit (pytorch/pytorch#81794),
    as they were when ``fagan train`` on CUDA took over 10 s to exit (RELIABILITY.md).
    """
    return DataLoader(
        EpochIndexed(dataset),
        batch_size=batch_size,
        sampler=stream,
        num_workers=num_workers,
        pin_memory=pin_memory,
        prefetch_factor=4 if num_workers > 0 else None,
        generator=torch.Generator().manual_seed(0),  # keeps the global RNG untouched
    )


def default_workers(cuda: bool) -> int:
    """0 on CPU (the data are in memory and cheap to cut); up to 8 on a GPU machine."""
    if not cuda:
        return 0
    return max(1, min(8, (os.cpu_count() or 2) - 1))


__all__ = [
    "DATA_RECORD",
    "SAMPLE_SOURCE",
    "EpochIndexed",
    "SampleStream",
    "check_same_data",
    "data_record",
    "default_workers",
    "save_data_record",
    "split_volumes",
    "training_dataset",
    "training_loader",
    "validation_dataset",
]

"""Slice datasets: fagan.data.datasets."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from fagan import FaganError
from fagan.data import datasets
from fagan.data.datasets import (
    CONTRAST_KNOTS,
    NoSlicesError,
    SliceDataset,
    SlicePair,
    even_knots,
    tissue_knots,
)
from fagan.data.degrade import degrade
from fagan.data.io import Volume, write_nifti


def _volume(shape=(20, 26, 6), empty_slices=(0, 5), seed=0) -> Volume:
    """A bright block on a zero background; the listed z-slices are empty."""
    rng = np.random.default_rng(seed)
    array = np.zeros(shape, np.float32)
    x, y = shape[0], shape[1]
    block = (slice(x // 6, x - x // 6), slice(y // 6, y - y // 6))
    array[block] = rng.uniform(100, 300, array[block].shape)
    array[..., list(empty_slices)] = 0
    return Volume(array, np.eye(4), {"path": f"synthetic-{seed}"})


def test_full_slices_skip_background_and_crop_to_the_scale():
    dataset = SliceDataset([_volume(), _volume(seed=1)], scale=4)
    assert len(dataset) == 2 * 4  # slices 1..4 of each volume
    assert [(e.volume, e.index) for e in dataset.entries] == [(v, k) for v in (0, 1) for k in (1, 2, 3, 4)]
    pair = dataset[0]
    assert isinstance(pair, SlicePair)
    assert pair.hr.shape == (1, 20, 24) and pair.lr.shape == (1, 5, 6)
    assert (pair.volume, pair.slice) == (0, 1)
    assert pair.hr.dtype == torch.float32
    assert torch.equal(pair.lr, degrade(pair.hr[None], 4)[0])
    assert max(float(dataset[i].hr.max()) for i in range(len(dataset))) > 1.0  # no clipping
    assert torch.equal(dataset[3].hr, SliceDataset([_volume(), _volume(seed=1)], scale=4)[3].hr)


def test_min_foreground_zero_keeps_every_slice():
    assert len(SliceDataset([_volume()], scale=2, min_foreground=0.0)) == 6


def test_scaling_is_kept_to_map_back_to_input_units():
    volume = _volume()
    dataset = SliceDataset([volume], scale=2)
    pair = dataset[0]
    restored = dataset.scalings[0].invert(pair.hr[0])
    np.testing.assert_allclose(restored.numpy(), volume.array[:20, :26, 1], rtol=1e-5, atol=1e-3)


def test_slices_smaller_than_the_patch_are_refused_with_both_sizes():
    volume = Volume(np.random.default_rng(0).random((64, 48, 20), dtype=np.float32), np.eye(4), {})
    with pytest.raises(NoSlicesError, match="sides of 96 pixels; the largest is 64x48"):
        SliceDataset([volume], 8, patch_size=96)
    assert len(SliceDataset([volume], 8, patch_size=48)) == 20


def test_patches_are_deterministic_per_seed_epoch_and_index():
    def make(seed=0):
        return SliceDataset([_volume()], scale=2, patch_size=8, augment=True, seed=seed)

    a, b = make(), make()
    for i in range(len(a)):
        assert torch.equal(a[i].hr, b[i].hr) and torch.equal(a[i].lr, b[i].lr)
    pair = a[1]
    assert pair.hr.shape == (1, 8, 8) and pair.lr.shape == (1, 4, 4)
    assert pair.hr.min() >= 0.0 and pair.hr.max() <= 1.0  # clipped for training
    assert torch.equal(pair.lr, degrade(pair.hr[None], 2)[0])
    first_epoch = torch.stack([a[i].hr for i in range(len(a))])
    a.set_epoch(1)
    second_epoch = torch.stack([a[i].hr for i in range(len(a))])
    assert not torch.equal(first_epoch, second_epoch)
    b.set_epoch(1)
    assert torch.equal(second_epoch, torch.stack([b[i].hr for i in range(len(b))]))
    other_seed = torch.stack([make(seed=5)[i].hr for i in range(len(a))])
    assert not torch.equal(first_epoch, other_seed)


def test_patches_avoid_background(monkeypatch):
    array = np.zeros((64, 64, 8), np.float32)
    array[40:56, 8:24] = 1.0 + np.random.default_rng(0).random((16, 16, 8))  # small object in a corner

    def foreground_rate() -> float:
        dataset = SliceDataset([Volume(array, np.eye(4), {})], scale=4, patch_size=16, min_foreground=0.05)
        hits = []
        for epoch in range(4):
            dataset.set_epoch(epoch)
            hits += [float((dataset[i].hr > 0.05).float().mean()) >= 0.05 for i in range(len(dataset))]
        return float(np.mean(hits))

    with_retries = foreground_rate()
    monkeypatch.setattr(datasets, "PATCH_RETRIES", 1)
    without_retries = foreground_rate()
    assert with_retries == 1.0 > 0.5 > without_retries


def test_augmentation_only_flips_and_rotates():
    array = np.zeros((8, 8, 1), np.float32)
    array[..., 0] = np.arange(64).reshape(8, 8) + 1
    plain = SliceDataset([Volume(array, np.eye(4), {})], scale=2, patch_size=8)
    augmented = SliceDataset([Volume(array, np.eye(4), {})], scale=2, patch_size=8, augment=True)
    base = plain[0].hr[0]
    variants = [
        torch.rot90(v, k) for v in (base, base.flip(0), base.flip(1), base.flip(0).flip(1)) for k in range(4)
    ]
    seen = set()
    for epoch in range(12):
        augmented.set_epoch(epoch)
        hr = augmented[0].hr[0]
        matches = [i for i, v in enumerate(variants) if torch.equal(hr, v)]
        assert matches
        seen.add(tuple(hr.flatten().tolist()))
    assert len(seen) > 1


def test_kspace_degradation_and_several_axes():
    dataset = SliceDataset(
        [_volume((16, 24, 8), empty_slices=())], scale=2, axes=(0, 2), degradation="kspace"
    )
    axes = {e.axis for e in dataset.entries}
    assert axes == {0, 2}
    for i in (0, len(dataset) - 1):
        pair = dataset[i]
        assert torch.allclose(pair.lr, degrade(pair.hr[None], 2, "kspace")[0])


def test_max_slices_per_volume_keeps_evenly_spaced_slices():
    dataset = SliceDataset([_volume((8, 8, 20), empty_slices=())], scale=2, max_slices_per_volume=3)
    assert [e.index for e in dataset.entries] == [0, 10, 19]


def test_each_volume_of_a_4d_file_is_a_volume_of_its_own(tmp_path):
    """A cine or diffusion series: its volumes are normalised one by one (the dim one is not
    trained on as nearly black), a constant one (a dummy scan) is left out, and the slice limit
    and the balance count the file."""
    bright, dim = _volume((8, 8, 20), empty_slices=(), seed=1), _volume((8, 8, 20), empty_slices=(), seed=2)
    series = np.stack([bright.array, np.full((8, 8, 20), 7.0, np.float32), dim.array * 0.1], axis=-1)
    write_nifti(tmp_path / "cine.nii.gz", series, np.eye(4))
    write_nifti(tmp_path / "t1.nii.gz", bright.array, np.eye(4))
    dataset = SliceDataset([tmp_path / "cine.nii.gz", tmp_path / "t1.nii.gz"], scale=2)
    assert dataset.files == [0, 0, 1]
    assert dataset.names[:2] == [f"{tmp_path / 'cine.nii.gz'} (volume {t})" for t in (0, 2)]
    alone = SliceDataset([Volume(dim.array * 0.1, np.eye(4), {})], scale=2)
    torch.testing.assert_close(dataset.volumes[1], alone.volumes[0])  # its own fit, not the series'
    limited = SliceDataset([tmp_path / "cine.nii.gz"], scale=2, max_slices_per_volume=4)
    assert len(limited.entries) == 4 and {e.volume for e in limited.entries} == {0, 1}
    series[0, 0, 0, 1] = 0.0  # all 7 but one voxel: it cannot be normalised, and is named
    write_nifti(tmp_path / "cine.nii.gz", series, np.eye(4), overwrite=True)
    with pytest.raises(FaganError, match=r"cine.nii.gz \(volume 1\): the image is constant"):
        SliceDataset([tmp_path / "cine.nii.gz"], scale=2)


def test_reads_paths_and_batches_with_a_dataloader(tmp_path):
    paths = []
    for seed in range(2):
        path = tmp_path / f"v{seed}.nii.gz"
        volume = _volume(seed=seed)
        write_nifti(path, volume.array, volume.affine)
        paths.append(path)
    dataset = SliceDataset(paths, scale=2, patch_size=8, augment=True)
    batch = next(iter(DataLoader(dataset, batch_size=4, shuffle=False)))
    assert isinstance(batch, SlicePair)
    assert batch.lr.shape == (4, 1, 4, 4) and batch.hr.shape == (4, 1, 8, 8)
    assert batch.volume.tolist() == [0, 0, 0, 0]
    assert dataset.names[1].endswith("v1.nii.gz")


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"scale": 3}, "2, 4, 8"),
        ({"scale": 2, "degradation": "blur"}, "bicubic, kspace"),
        ({"scale": 4, "patch_size": 10}, "multiple of scale"),
        ({"scale": 2, "augment": True}, "augment needs patch_size"),
        ({"scale": 2, "axes": (3,)}, "axes"),
        ({"scale": 2, "patch_size": 64}, "no slice"),
        ({"scale": 2, "min_foreground": 1.5}, "min_foreground"),
    ],
)
def test_bad_arguments_raise_fagan_error(kwargs, message):
    with pytest.raises(FaganError, match=message):
        SliceDataset([_volume()], **kwargs)


def test_index_out_of_range():
    dataset = SliceDataset([_volume()], scale=2)
    with pytest.raises(IndexError):
        dataset[len(dataset)]
    assert torch.equal(dataset[-1].hr, dataset[len(dataset) - 1].hr)


def test_zoom_range_resizes_slices_deterministically() -> None:
    from fagan.data.io import Volume

    rng = np.random.default_rng(0)
    array = rng.random((64, 64, 4)).astype(np.float32) + 0.5
    volume = Volume(array, np.eye(4), {})
    zoomed = SliceDataset([volume], 2, patch_size=16, zoom_range=(0.5, 0.5), seed=3)
    plain = SliceDataset([volume], 2, patch_size=16, seed=3)
    a, b = zoomed[0], zoomed[0]
    assert torch.equal(a.hr, b.hr) and a.hr.shape == (1, 16, 16)
    assert not torch.equal(a.hr, plain[0].hr)
    with pytest.raises(FaganError, match="zoom_range"):
        SliceDataset([volume], 2, zoom_range=(0.5, 1.0))
    with pytest.raises(FaganError, match="0 < lo <= hi"):
        SliceDataset([volume], 2, patch_size=16, zoom_range=(1.0, 0.5))


def test_kspace_zoom_acquires_a_coarser_matrix_with_gibbs_ringing() -> None:
    # A bright square on black: the k-space shrink rings next to its edges
    # (values above 1 and bright lobes in the black), and the bicubic shrink does neither.
    array = np.zeros((64, 64, 2), np.float32)
    array[16:48, 16:48] = 1.0
    volume = Volume(array, np.eye(4), {})
    kwargs = dict(patch_size=32, seed=1, min_foreground=0.0, augment=False, zoom_range=(0.5, 0.5))
    kspace = SliceDataset([volume], 2, zoom_method="kspace", **kwargs)
    bicubic = SliceDataset([volume], 2, **kwargs)
    shrunk = kspace._zoom(kspace.slice_image(0), np.random.default_rng(0))
    assert shrunk.shape == (32, 32) and shrunk.min() >= 0
    # A band-limited image survives the shrink exactly, sampled on the coarser grid.
    x = torch.arange(64.0)
    wave = (
        1 + 0.5 * torch.cos(2 * torch.pi * 3 * x / 64)[:, None] * torch.cos(2 * torch.pi * 5 * x / 64)[None]
    )
    coarse = (
        1
        + 0.5
        * torch.cos(2 * torch.pi * 3 * x[::2] / 64)[:, None]
        * torch.cos(2 * torch.pi * 5 * x[::2] / 64)[None]
    )
    assert torch.allclose(kspace._zoom(wave, np.random.default_rng(0)), coarse, atol=1e-5)
    assert shrunk.max() > 1.05 and shrunk[16, 7] > 0.05, "Gibbs overshoot, and ringing in the air"
    smooth = bicubic._zoom(bicubic.slice_image(0), np.random.default_rng(0))
    assert smooth.max() <= 1 and smooth[16, 5] < 1e-6
    pair = kspace[0]
    assert torch.equal(pair.hr, kspace[0].hr) and torch.equal(pair.lr, degrade(pair.hr[None], 2)[0])
    with pytest.raises(FaganError, match="zoom_method must be one of"):
        SliceDataset([volume], 2, zoom_method="lanczos", **kwargs)
    with pytest.raises(FaganError, match="zoom_method 'kspace' needs zoom_range"):
        SliceDataset([volume], 2, patch_size=16, zoom_method="kspace")
    with pytest.raises(FaganError, match="only shrinks: zoom_range needs"):
        SliceDataset([volume], 2, patch_size=16, zoom_range=(0.5, 1.5), zoom_method="kspace")


def test_noise_range_adds_rician_noise_to_the_target_and_the_input() -> None:
    # A half-dark, half-bright volume: the dark half's noisy magnitude is Rayleigh distributed.
    array = np.zeros((64, 64, 4), np.float32)
    array[:, 32:] = 1.0
    volume = Volume(array, np.eye(4), {})
    kwargs = dict(patch_size=64, seed=5, min_foreground=0.0)
    plain = SliceDataset([volume], 2, **kwargs)
    silent = SliceDataset([volume], 2, noise_range=(0.0, 0.0), **kwargs)
    noisy = SliceDataset([volume], 2, noise_range=(0.1, 0.1), **kwargs)
    assert torch.equal(silent[1].hr, plain[1].hr)
    pair = noisy[1]
    assert torch.equal(pair.hr, noisy[1].hr), "noise depends only on (seed, epoch, index)"
    assert torch.equal(pair.lr, degrade(pair.hr[None], 2)[0]), "the LR input is made from the noisy patch"
    hr = pair.hr[0]
    dark, bright = hr[plain[1].hr[0] == 0], hr[plain[1].hr[0] == 1]
    assert dark.min() >= 0
    assert dark.mean().item() == pytest.approx(0.1 * np.sqrt(np.pi / 2), rel=0.1)  # Rayleigh mean
    assert bright.std().item() == pytest.approx(0.1, rel=0.1)
    with pytest.raises(FaganError, match="noise_range needs patch_size"):
        SliceDataset([volume], 2, noise_range=(0.0, 0.1))
    with pytest.raises(FaganError, match="0 <= lo <= hi"):
        SliceDataset([volume], 2, patch_size=16, noise_range=(0.1, 0.0))


def test_gain_and_offset_ranges_map_the_noisy_patch_and_its_input_alike() -> None:
    volume = Volume(np.random.default_rng(2).random((40, 40, 6), dtype=np.float32), np.eye(4), {})
    kwargs = dict(patch_size=16, augment=True, seed=3, noise_range=(0.05, 0.05))
    plain = SliceDataset([volume], 2, **kwargs)
    mapped = SliceDataset([volume], 2, gain_range=(1.5, 1.5), offset_range=(-0.2, -0.2), **kwargs)
    for index in range(3):
        # after the noise (the same draws: the map draws last), nothing clipped, LR made from it
        assert torch.allclose(mapped[index].hr, plain[index].hr * 1.5 - 0.2, atol=1e-6)
        assert torch.equal(mapped[index].lr, degrade(mapped[index].hr[None], 2)[0])
    assert mapped[0].hr.min() < 0 and mapped[0].hr.max() > 1
    drawn = SliceDataset([volume], 2, gain_range=(0.5, 2.0), offset_range=(-0.3, 0.1), **kwargs)
    gains = []
    for index in range(len(drawn)):
        ratio = drawn[index].hr - drawn[index].hr.mean() + 1e-12
        gains.append(float(ratio.std() / (plain[index].hr - plain[index].hr.mean()).std()))
        shift = float(drawn[index].hr.mean() - gains[-1] * plain[index].hr.mean())
        assert -0.3 - 1e-4 <= shift <= 0.1 + 1e-4
    assert min(gains) >= 0.5 - 1e-4 and max(gains) <= 2.0 + 1e-4
    assert np.std(np.log(gains)) > 0.1, "a new gain per patch"
    with pytest.raises(FaganError, match="gain_range needs patch_size"):
        SliceDataset([volume], 2, gain_range=(0.8, 1.2))
    with pytest.raises(FaganError, match="offset_range needs patch_size"):
        SliceDataset([volume], 2, offset_range=(0.0, 0.1))
    with pytest.raises(FaganError, match="gain_range must satisfy 0 < lo"):
        SliceDataset([volume], 2, patch_size=16, gain_range=(0.0, 1.2))
    with pytest.raises(FaganError, match="offset_range must satisfy lo <= hi"):
        SliceDataset([volume], 2, patch_size=16, offset_range=(0.1, -0.1))


def test_contrast_prob_remaps_intensities_through_one_curve_per_patch() -> None:
    # Air and four tissues in stripes, at the curve's knots: each stripe stays flat, air at 0.
    levels = np.linspace(0.0, 1.0, CONTRAST_KNOTS + 1, dtype=np.float32)
    array = np.repeat(levels, 16)[:, None, None] * np.ones((1, 16 * len(levels), 3), np.float32)
    volume = Volume(array, np.eye(4), {})
    kwargs = dict(patch_size=16 * len(levels), seed=2, min_foreground=0.0, augment=False)
    plain = SliceDataset([volume], 2, **kwargs)
    never = SliceDataset([volume], 2, contrast_prob=0.0, **kwargs)
    always = SliceDataset([volume], 2, contrast_prob=1.0, **kwargs)
    assert torch.equal(never[0].hr, plain[0].hr)
    pair = always[0]
    assert torch.equal(pair.hr, always[0].hr), "the curve depends only on (seed, epoch, index)"
    assert torch.equal(pair.lr, degrade(pair.hr[None], 2)[0]), "the LR input is made from the remapped patch"
    before, after = plain[0].hr[0], pair.hr[0]
    stripes = [after[before == level] for level in before.unique()]
    assert all(torch.all(values == values[0]) for values in stripes), "one intensity, one output"
    assert stripes[0][0] == 0 and max(float(v[0]) for v in stripes) == pytest.approx(1.0)
    orders = {tuple(np.argsort(always[i].hr[0, ::16, 0].tolist())) for i in range(len(always))}
    assert len(orders) > 1, "the tissues' order changes from patch to patch"
    with pytest.raises(FaganError, match="contrast_prob must lie in"):
        SliceDataset([volume], 2, patch_size=16, contrast_prob=1.5)
    with pytest.raises(FaganError, match="contrast_prob needs patch_size"):
        SliceDataset([volume], 2, contrast_prob=0.5)


TISSUES = (0.25, 0.625, 1.0)


def _tissue_stripes() -> Volume:
    """Air and three tissues (``TISSUES``) in 8-pixel stripes, each pair of neighbours with a
    one-pixel boundary that mixes them half and half."""
    rows: list[float] = [0.0] * 8
    for lo, hi in itertools.pairwise((0.0, *TISSUES)):
        rows += [(lo + hi) / 2] + [hi] * 8
    rows += [0.0] * (48 - len(rows))
    array = np.asarray(rows, np.float32)[:, None, None] * np.ones((1, 48, 4), np.float32)
    return Volume(array, np.eye(4), {})


def test_tissue_knots_lie_at_the_tissue_intensities() -> None:
    knots = tissue_knots(torch.from_numpy(_tissue_stripes().array))
    assert knots == pytest.approx(TISSUES, abs=0.03)
    assert list(knots) == sorted(set(knots)) and knots[-1] == 1.0
    # nothing to cluster: the even knots
    assert np.array_equal(tissue_knots(torch.zeros(8, 8, 2)), even_knots())
    assert np.array_equal(tissue_knots(torch.full((8, 8, 2), 0.5)), even_knots())
    assert np.array_equal(even_knots(), np.linspace(0.0, 1.0, CONTRAST_KNOTS + 1)[1:])


def test_tissue_knots_map_a_boundary_between_its_two_tissues_new_intensities() -> None:
    volume = _tissue_stripes()
    kwargs = dict(patch_size=48, seed=3, min_foreground=0.0, augment=False, contrast_prob=1.0)
    plain = SliceDataset([volume], 2, patch_size=48, seed=3, min_foreground=0.0)
    before = plain[0].hr[0, :, 0].tolist()
    row = {v: before.index(v) for v in (0.0, *TISSUES)}
    mixes = [(lo, before.index((lo + hi) / 2), hi) for lo, hi in itertools.pairwise(TISSUES)]

    def bands(knots: str) -> int:
        """Boundary pixels, over all patches, whose value leaves the interval between their two
        tissues' new values."""
        dataset = SliceDataset([volume], 2, contrast_knots=knots, **kwargs)
        count = 0
        for index in range(len(dataset)):
            after = dataset[index].hr[0, :, 0]
            for lo, mix, hi in mixes:
                a, m, b = float(after[row[lo]]), float(after[mix]), float(after[row[hi]])
                count += not min(a, b) - 1e-6 <= m <= max(a, b) + 1e-6
        return count

    tissue = SliceDataset([volume], 2, contrast_knots="tissue", **kwargs)
    assert tissue.knots[0] == pytest.approx(TISSUES, abs=0.03)
    after = tissue[0].hr[0, :, 0]
    assert float(after[row[0.0]]) == 0.0, "air stays dark"
    assert bands("tissue") == 0
    assert bands("even") > 0, "evenly spaced knots fall between tissues and draw bands"
    with pytest.raises(FaganError, match="contrast_knots must be one of even, tissue"):
        SliceDataset([volume], 2, contrast_knots="labels", **kwargs)

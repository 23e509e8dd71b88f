"""Scoring methods on volumes: rows, masks, FID, figures, summaries and paired tests."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest
import torch
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from fagan import FaganError
from fagan.data.io import read_volume, write_nifti
from fagan.evaluation import foreground_mask, score_volume
from fagan.evaluation.evaluate import (
    Evaluation,
    EvalVolume,
    Method,
    Row,
    evaluate,
    evaluation_volumes,
    largest_per_anatomy,
    paired_tests_table,
    psnr_ssim_tables,
    read_rows,
    write_rows,
)
from fagan.evaluation.simulate import bicubic_volume, simulate_low_resolution, slices_along
from fagan.metrics.fid import fid_from_features, inception_features
from fagan.models import build_generator

from .phantoms import phantom, phantom_manifest

TINY = dict(channels=8, lffb_blocks=1, path_channels=4, residual_blocks=1, head_kernel=3, reduction=4)


def test_foreground_mask_covers_the_head_and_fills_its_holes() -> None:
    volume = phantom((40, 40, 2), 0)
    volume[18:22, 18:22, :] = 0  # a dark hole inside the head still counts as the subject
    mask = foreground_mask(volume)
    assert mask[20, 20, 0] and not mask[0, 0, 0]
    assert 0.3 < mask.mean() < 0.6  # the ellipse covers pi * 0.8 * 0.7 / 4 = 44% of the square


def test_masked_scores() -> None:
    rng = np.random.default_rng(0)
    hr = phantom((40, 40, 3), 1)
    sr = hr + rng.normal(0, 10, hr.shape).astype(np.float32)
    everywhere = score_volume(sr, hr, mask=np.ones(hr.shape, bool))
    assert everywhere.psnr_fg == pytest.approx(everywhere.psnr)
    assert everywhere.ssim_fg == pytest.approx(everywhere.ssim)
    mask = foreground_mask(hr)
    inside = score_volume(sr, hr, mask=mask)
    data_range = float(hr.max() - hr.min())
    assert inside.psnr_fg == pytest.approx(peak_signal_noise_ratio(hr[mask], sr[mask], data_range=data_range))
    # SSIM inside the mask: scikit-image's local SSIM map of each slice, at the positions whose
    # 11x11 window lies inside the slice and is centred in the mask, pooled over the volume.
    pooled = []
    for k in range(hr.shape[2]):
        _, local = structural_similarity(
            hr[:, :, k], sr[:, :, k], gaussian_weights=True, sigma=1.5, use_sample_covariance=False,
            data_range=data_range, full=True,
        )
        pooled.append(local[5:-5, 5:-5][mask[5:-5, 5:-5, k]])
    assert 0.05 < mask.mean() < 0.95 and inside.ssim_fg != pytest.approx(inside.ssim, abs=1e-3)
    assert inside.ssim_fg == pytest.approx(float(np.concatenate(pooled).mean()), abs=1e-4)
    assert math.isnan(score_volume(sr, hr).psnr_fg)
    with pytest.raises(ValueError, match="empty"):
        score_volume(sr, hr, mask=np.zeros(hr.shape, bool))


class _PooledFeatures(torch.nn.Module):
    """A stand-in for Inception with its interface, (N, 3, 299, 299) -> (N, 2048): pooled
    intensities through a fixed random projection."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(1)
        self.proj = torch.nn.Linear(3 * 4 * 4, 2048)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(torch.nn.functional.adaptive_avg_pool2d(x, 4).flatten(1))


def test_evaluate_fid_compares_each_method_with_the_hr_slices_of_its_scale(tmp_path) -> None:
    volumes = evaluation_volumes(phantom_manifest(tmp_path / "data"))
    network = _PooledFeatures().eval()
    torch.manual_seed(0)
    method = Method("fagan", 2, build_generator("fagan", 2, **TINY).eval())
    ev = evaluate(volumes, [method], fid_network=network)
    assert set(ev.fid) == {("bicubic", 2), ("fagan", 2)}
    # By hand: features of every test volume's HR and bicubic slices, in the HR volume's range.
    real, fake = [], []
    for info in volumes:
        pair = simulate_low_resolution(read_volume(info.path), 2)
        hr = pair.hr.array
        data_range = (float(hr.min()), float(hr.max()))
        real.append(inception_features(network, [(slices_along(hr, 2), data_range)]))
        fake.append(inception_features(network, [(slices_along(bicubic_volume(pair.lr, 2), 2), data_range)]))
    expected = fid_from_features(np.concatenate(real), np.concatenate(fake))
    assert expected > 0 and ev.fid[("bicubic", 2)] == pytest.approx(expected, rel=1e-6)
    assert ev.fid[("fagan", 2)] != pytest.approx(expected, rel=1e-3)  # the network's output, not bicubic's


def test_evaluate_scores_every_method_beside_bicubic(tmp_path) -> None:
    volumes = evaluation_volumes(phantom_manifest(tmp_path / "data"))
    assert [v.name for v in volumes] == ["subject3", "subject4"]
    torch.manual_seed(0)
    methods = [
        Method("fagan", 2, build_generator("fagan", 2, **TINY).eval()),
        Method("srgan", 2, build_generator("srgan", 2, **TINY).eval()),
        Method("fagan", 4, build_generator("fagan", 4, **TINY).eval()),
    ]
    ev = evaluate(volumes, methods, figures_dir=tmp_path / "figs", figure_methods=["fagan"])
    assert ev.scales() == [2, 4] and ev.methods(2) == ["bicubic", "fagan", "srgan"]
    assert len(ev.rows) == (3 + 2) * 2
    assert all(math.isfinite(r.psnr) and math.isfinite(r.ssim_fg) for r in ev.rows)
    # one figure per scale for the single anatomy's largest volume
    assert [f.name for f in ev.figures] == ["subject3_x2.png", "subject3_x4.png"]
    write_rows(ev.rows, tmp_path / "rows.csv")
    again = read_rows(tmp_path / "rows.csv")
    assert [(r.method, r.scale, r.volume) for r in again] == [(r.method, r.scale, r.volume) for r in ev.rows]
    assert again[0].psnr == pytest.approx(ev.rows[0].psnr, abs=1e-5)

    (table,) = psnr_ssim_tables(ev)
    assert table.columns == ("method", "x2 PSNR (dB)", "x2 SSIM", "x4 PSNR (dB)", "x4 SSIM")
    srgan_row = [r for r in table.rows if r[0] == "srgan"][0]
    assert srgan_row[3] == "" and srgan_row[1].n == 2  # srgan was only evaluated at x2
    tests = paired_tests_table(ev, "fagan")
    assert [(r[0], r[1]) for r in tests.rows] == [("x2", "bicubic"), ("x2", "srgan"), ("x4", "bicubic")]

    with pytest.raises(ValueError, match="evaluated anyway"):
        evaluate(volumes, [Method("bicubic", 2)])


def test_self_ensemble_and_consistency_reach_the_networks_but_not_bicubic(tmp_path) -> None:
    volumes = evaluation_volumes(phantom_manifest(tmp_path / "data"))[:1]
    torch.manual_seed(0)
    methods = [Method("fagan", 2, build_generator("fagan", 2, **TINY).eval())]
    plain, ensemble = (evaluate(volumes, methods, self_ensemble=flag).rows for flag in (False, True))
    assert plain[0].method == "bicubic" and plain[0].psnr == ensemble[0].psnr
    assert plain[1].method == "fagan" and plain[1].psnr != ensemble[1].psnr
    # the consistency projection (on by default) can only bring an output closer to the HR
    raw = evaluate(volumes, methods, consistency=False).rows
    assert raw[0].psnr == plain[0].psnr and raw[1].psnr < plain[1].psnr


def test_largest_volume_per_anatomy_is_shown() -> None:
    volumes = [("a", "brain", (2, 30, 30)), ("b", "brain", (64, 64, 1)), ("c", "knee", (8, 8, 8))]
    assert largest_per_anatomy(volumes) == ["b", "c"]
    assert largest_per_anatomy(volumes, axis=0) == ["a", "c"]


def test_the_embedded_test_split_is_the_default() -> None:
    volumes = evaluation_volumes()
    assert len(volumes) == 5 and {v.anatomy for v in volumes} == {"brain", "abdomen", "shoulder"}
    assert isinstance(volumes[0], EvalVolume)


def test_a_table_names_the_volumes_its_means_leave_out() -> None:
    rows = [
        Row("bicubic", 2, "head", "brain", 30.0, 0.90, 31.0, 0.91, 0.1),
        Row("bicubic", 2, "edge", "brain", 20.0, 0.80, 21.0, math.nan, 0.1),  # no foreground to score
    ]
    (table,) = psnr_ssim_tables(Evaluation(rows=rows), foreground=True)
    assert "2 volumes" in table.title and "without a finite score, left out: edge (x2 SSIM)" in table.title
    psnr, ssim = table.rows[0][1:]
    assert (psnr.n, psnr.mean, ssim.n, ssim.mean) == (2, 26.0, 1, 0.91)
    (whole,) = psnr_ssim_tables(Evaluation(rows=rows))
    assert "left out" not in whole.title


def _two_visits() -> Evaluation:
    """Three people, the first scanned twice; FA-GAN's gain over bicubic is 1, 3 (p1), 2 and 4 dB."""
    rows = []
    for volume, person, gain in (
        ("p1_v1", "p1", 1.0),
        ("p1_v2", "p1", 3.0),
        ("p2", "p2", 2.0),
        ("p3", "p3", 4.0),
    ):
        base = 30.0 + len(rows)
        rows.append(Row("bicubic", 2, volume, "brain", base, 0.8, base, 0.8, 0.1, person))
        rows.append(Row("fagan", 2, volume, "brain", base + gain, 0.9, base + gain, 0.9, 0.1, person))
    return Evaluation(rows=rows)


def test_tables_and_tests_summarise_over_subjects_when_a_subject_has_several_volumes() -> None:
    ev = _two_visits()
    assert ev.repeated_subjects() and len(ev.values("fagan", 2, "psnr")) == 4
    (table,) = psnr_ssim_tables(ev)
    assert "4 volumes of 3 subjects; mean ± std over subjects, each the mean of its volumes" in table.title
    bicubic, fagan = (row[1] for row in table.rows)
    assert fagan.n == 3 and fagan.mean == pytest.approx(((31 + 35) / 2 + 36 + 40) / 3)
    assert bicubic.n == 3 and bicubic.mean == pytest.approx(((30 + 32) / 2 + 34 + 36) / 3)
    tests = paired_tests_table(ev, "fagan")
    assert tests.columns[-1] == "subjects" and "over subjects" in tests.title
    (row,) = tests.rows
    assert row[-1] == 3 and row[2] == 2.0  # median of the subjects' gains 2, 2, 4
    # every volume a person of its own: over volumes, as before
    alone = Evaluation(rows=[dataclasses.replace(r, subject="") for r in ev.rows])
    assert not alone.repeated_subjects()
    assert "4 volumes; mean ± std over volumes" in psnr_ssim_tables(alone)[0].title
    assert paired_tests_table(alone, "fagan").rows[0][-1] == 4


def test_per_volume_rows_keep_their_subject(tmp_path) -> None:
    ev = _two_visits()
    write_rows(ev.rows, tmp_path / "rows.csv")
    assert read_rows(tmp_path / "rows.csv") == ev.rows
    old = tmp_path / "old.csv"  # written before subjects were recorded
    old.write_text(
        "\n".join(",".join(line.split(",")[:9]) for line in (tmp_path / "rows.csv").read_text().splitlines())
    )
    assert [r.subject for r in read_rows(old)] == [""] * 8


def test_volumes_of_one_file_name_are_told_apart_by_their_folders(tmp_path) -> None:
    """p01/visit1/anat/T1.nii.gz and p01/visit2/anat/T1.nii.gz: two volumes of one person."""
    layout = ("p01/visit1", "p01/visit2", "p02/visit1", "p03/visit1", "p03/visit2")
    for where in layout:
        (tmp_path / where / "anat").mkdir(parents=True)
        write_nifti(tmp_path / where / "anat" / "T1.nii.gz", phantom((24, 24, 2), len(where)), np.eye(4))
    volumes = evaluation_volumes(tmp_path)
    assert [v.name for v in volumes] == [f"{where}/anat/T1" for where in layout]
    assert [v.subject for v in volumes] == ["p01", "p01", "p02", "p03", "p03"]
    ev = evaluate(volumes, [Method("fagan", 2, build_generator("fagan", 2, **TINY).eval())])
    (table,) = psnr_ssim_tables(ev)
    assert "5 volumes of 3 subjects" in table.title and table.rows[0][1].n == 3
    # a subject rule of one's own, as prepare --subject takes
    named = evaluation_volumes(tmp_path, subject=r"^p0(\d)/")
    assert [v.subject for v in named] == ["1", "1", "2", "3", "3"]
    with pytest.raises(FaganError, match=r"--subject 'p9' names no subject in 5 of 5 volume paths"):
        evaluation_volumes(tmp_path, subject="p9")


def test_a_paired_test_leaves_out_pairs_without_a_finite_score() -> None:
    ev = _two_visits()
    ev.rows[-1] = dataclasses.replace(ev.rows[-1], ssim_fg=math.nan)  # p3 has no foreground SSIM
    assert math.isnan(ev.samples("fagan", 2, "ssim_fg")[-1])
    (row,) = paired_tests_table(ev, "fagan").rows
    assert row[-1] == 3  # PSNR and SSIM of the whole volume: every subject
    assert all(r.subject for r in ev.rows)

"""``fagan upscale`` killed with SIGKILL, and inputs too big to upscale.

A killed run can leave no output or a partial one only if it writes OUTPUT in place: fagan writes
a hidden temporary file beside it and renames it at the end, so OUTPUT is either absent, the
complete result, or (with --overwrite) the untouched previous file. The temporary file of a run
killed mid-write stays behind (nothing runs after SIGKILL); the next run writing the same OUTPUT
deletes it. Volumes whose result would not fit in memory (or an uncompressed output on disk) are
refused from their headers, before anything big is read or allocated.
"""

from __future__ import annotations

import logging
import os
import random
import resource
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import nibabel as nib
import numpy as np
import pytest
from data.dicom_helpers import write_slice

from fagan.cli import main
from fagan.inference import output as output_module
from fagan.inference.output import leftovers

SEED = 8


def _volume(path: Path, shape: tuple[int, int, int] = (128, 128, 6)) -> Path:
    """A smooth random int16 volume (compresses like an image, not like noise)."""
    rng = np.random.default_rng(0)
    coarse = rng.random((shape[0] // 8, shape[1] // 8, shape[2]))
    array = np.kron(coarse, np.ones((8, 8, 1))) * 1000 + rng.random(shape) * 50
    nib.save(nib.Nifti1Image(array.astype(np.int16), np.diag([2.0, 2.0, 3.0, 1.0])), path)
    return path


def _command(source: Path, out: Path, weights: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "fagan", "upscale", str(source), "-o", str(out), "--scale", "2",
            "--weights", str(weights), "--device", "cpu", *extra]  # fmt: skip


def _start(command: list[str], limit: int | None = None) -> subprocess.Popen:
    def limit_memory() -> None:
        if limit is not None:
            resource.setrlimit(resource.RLIMIT_AS, (limit, resource.getrlimit(resource.RLIMIT_AS)[1]))

    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, preexec_fn=limit_memory
    )


def _complete(command: list[str]) -> float:
    started = time.monotonic()
    process = _start(command)
    _, err = process.communicate(timeout=300)
    assert process.returncode == 0, err.decode()[-2000:]
    return time.monotonic() - started


def _kill_when(process: subprocess.Popen, ready: object, delay: float) -> None:
    """SIGKILL ``process`` ``delay`` seconds after ``ready()`` first holds (or when it exits)."""
    deadline = time.monotonic() + 300
    while not ready() and process.poll() is None:  # type: ignore[operator]
        assert time.monotonic() < deadline
        time.sleep(0.001)
    time.sleep(delay)
    process.send_signal(signal.SIGKILL)
    process.communicate(timeout=60)


def _same_volume(a: Path, b: Path) -> None:
    first, second = nib.load(a), nib.load(b)
    np.testing.assert_array_equal(first.get_fdata(), second.get_fdata())
    np.testing.assert_array_equal(first.affine, second.affine)


def _absent_or_complete(out: Path, reference: Path) -> str:
    """After a kill OUTPUT is absent, or complete if the kill came after the final rename."""
    if not out.exists():
        return "OUTPUT absent" + (f", {leftovers(out)[0].name} left" if leftovers(out) else "")
    _same_volume(out, reference)
    assert leftovers(out) == []
    out.unlink()
    return "OUTPUT complete (killed after the rename)"


def _kill_runs(tmp_path: Path, weights: Path, random_kills: int) -> list[str]:
    rng = random.Random(SEED + random_kills)
    source = _volume(tmp_path / "lr.nii.gz")
    reference, out = tmp_path / "reference.nii.gz", tmp_path / "out" / "sr.nii.gz"
    out.parent.mkdir()
    command = _command(source, out, weights)
    started = time.monotonic()
    straight = _start(_command(source, reference, weights))

    # Killed while writing: as soon as the temporary file appears.
    process = _start(command)
    _kill_when(process, lambda: leftovers(out), rng.uniform(0.0, 0.005))
    assert process.returncode == -signal.SIGKILL
    assert straight.wait(timeout=300) == 0, straight.communicate()[1].decode()[-2000:]
    seconds = time.monotonic() - started
    seen = [f"mid-write: {_absent_or_complete(out, reference)}"]

    # Killed at random moments of the run.
    for _ in range(random_kills):
        delay = rng.uniform(0.1, 0.8) * seconds
        process = _start(command)
        _kill_when(process, lambda: True, delay)
        seen.append(f"after {delay:.2f} s: {_absent_or_complete(out, reference)}")

    # The next run deletes what killed ones left and writes the same result.
    _complete(command)
    _same_volume(out, reference)
    assert leftovers(out) == [] and sorted(p.name for p in out.parent.iterdir()) == ["sr.nii.gz"]

    # Killed while replacing an existing OUTPUT (--overwrite): the old file stays as it was.
    before = out.read_bytes()
    process = _start([*command, "--overwrite"])
    _kill_when(process, lambda: leftovers(out), rng.uniform(0.0, 0.005))
    replaced = out.read_bytes() != before
    if replaced:  # killed after the rename: the new file, complete
        _same_volume(out, reference)
    seen.append(
        f"mid-write with --overwrite: {'new OUTPUT complete' if replaced else 'previous OUTPUT unchanged'}"
    )
    print("\n" + "\n".join(seen))
    return seen


def test_killed_upscale_leaves_no_partial_output(tmp_path, weights_dir) -> None:
    _kill_runs(tmp_path, weights_dir / "x2.safetensors", random_kills=0)


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGHUP])
def test_terminated_upscale_removes_its_temporary_file(tmp_path, weights_dir, signum) -> None:
    """SIGTERM (``kill``, a batch system's time limit) and SIGHUP clean up as Ctrl-C does."""
    source = _volume(tmp_path / "lr.nii.gz")
    out = tmp_path / "out" / "sr.nii.gz"
    out.parent.mkdir()
    process = _start(_command(source, out, weights_dir / "x2.safetensors"))
    deadline = time.monotonic() + 300
    while not leftovers(out) and process.poll() is None:
        assert time.monotonic() < deadline
        time.sleep(0.001)
    process.send_signal(signum)
    _, err = process.communicate(timeout=60)
    if process.returncode in (0, -signum):  # the signal came after the command's work: at exit,
        assert out.exists()  # where the default handler is back, or after the process ended
    else:
        assert process.returncode == 128 + signum, err.decode()[-2000:]
        assert err.decode().strip().endswith(f"fagan: stopped by {signal.Signals(signum).name}")
        assert not out.exists()
    assert leftovers(out) == []


@pytest.mark.slow
def test_killed_upscale_at_many_moments(tmp_path, weights_dir) -> None:
    _kill_runs(tmp_path, weights_dir / "x2.safetensors", random_kills=12)


def test_leftovers_are_recognised_exactly(tmp_path) -> None:
    out = tmp_path / "sr.nii.gz"
    mine = [tmp_path / ".sr.nii.gz.k2j4h1x9.nii.gz", tmp_path / ".sr.nii.gz.a_b0c1d2.nii.gz"]
    others = [tmp_path / n for n in (".sr.nii.gz.notmine", ".other.nii.gz.k2j4h1x9.nii.gz", "sr.nii")]
    for path in mine + others:
        path.write_bytes(b"x")
    assert leftovers(out) == sorted(mine)
    assert output_module.remove_leftovers(out) == sorted(mine)
    assert all(p.exists() for p in others) and not any(p.exists() for p in mine)


# ----------------------------------------------------------------------------------------------
# Big inputs


def _header_only(path: Path, shape: tuple[int, int, int]) -> Path:
    """A NIfTI file whose header claims ``shape`` int16 voxels but which holds only a few bytes."""
    header = nib.Nifti1Header()
    header.set_data_dtype(np.int16)
    header.set_data_shape(shape)
    path.write_bytes(header.binaryblock + b"\0" * 4 + b"\0" * 64)
    return path


def _one_line_error(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("fagan: error: "), err
    return err[0]


def test_a_result_too_big_for_memory_is_refused_before_reading(tmp_path, weights_dir, monkeypatch, capsys):
    source = _header_only(tmp_path / "big.nii", (512, 512, 200))
    monkeypatch.setattr(output_module, "available_memory", lambda: 2 * 10**9)
    read = []
    monkeypatch.setattr("fagan.data.io.read_volume", lambda *a, **k: read.append(a))
    args = ["upscale", str(source), "-o", str(tmp_path / "sr.nii.gz"), "--scale", "4",
            "--weights", str(weights_dir / "x4.safetensors")]  # fmt: skip
    assert main(args) == 2
    line = _one_line_error(capsys)
    assert "512x512x200 voxels x4 gives 2048x2048x200 = 3.36 GB of float32" in line
    assert "needs 3.57 GB of memory but 2 GB is available" in line and "crop the volume" in line
    assert read == [] and sorted(p.name for p in tmp_path.iterdir()) == ["big.nii"]


def test_a_4d_result_is_sized_with_all_its_volumes_and_one_volume_without(
    tmp_path, weights_dir, monkeypatch, capsys
):
    source = _header_only(tmp_path / "bold.nii", (256, 256, 60, 40))
    monkeypatch.setattr(output_module, "available_memory", lambda: 2 * 10**9)
    args = ["upscale", str(source), "-o", str(tmp_path / "sr.nii.gz"), "--scale", "2",
            "--weights", str(weights_dir / "x2.safetensors")]  # fmt: skip
    assert main(args) == 2
    assert "256x256x60x40 voxels x2 gives 512x512x60x40 = 2.52 GB of float32" in _one_line_error(capsys)
    # one volume fits: the run gets as far as reading the (empty) file
    assert main([*args, "--frame", "0"]) == 2
    assert "truncated" in _one_line_error(capsys)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bold.nii"]


def test_one_volume_of_a_dicom_series_is_sized_once_read(tmp_path, weights_dir, monkeypatch, capsys):
    """A DICOM's image count bounds its slices from above (its images may be several volumes), so
    `--frame N` is checked against the volume read, and the refusal of the whole says so."""
    series = tmp_path / "series"
    series.mkdir()
    for t in range(2):
        for k in range(4):
            pixels = np.full((64, 64), 100 + k + t, np.uint16)
            write_slice(series / f"t{t}_{k}.dcm", pixels, position=(0.0, 0.0, 2.0 * k),
                        instance=4 * t + k + 1, TemporalPositionIdentifier=t + 1)  # fmt: skip
    one = 4 * 64 * 64 * 4 * (1 + 16)  # one volume at x4, input and result, float32
    monkeypatch.setattr(output_module, "available_memory", lambda: int(1.5 * one))
    args = ["upscale", str(series), "--scale", "4", "--weights", str(weights_dir / "x4.safetensors")]
    assert main([*args, "-o", str(tmp_path / "all.nii.gz")]) == 2
    assert "if it holds several volumes, upscale one at a time (--frame N)" in _one_line_error(capsys)
    assert main([*args, "-o", str(tmp_path / "one.nii.gz"), "--frame", "1"]) == 0
    assert nib.load(tmp_path / "one.nii.gz").shape == (256, 256, 4)


def test_an_uncompressed_result_too_big_for_the_disk_is_refused(tmp_path, weights_dir, monkeypatch, capsys):
    source = _volume(tmp_path / "lr.nii.gz", (32, 32, 4))
    monkeypatch.setattr(output_module.shutil, "disk_usage", lambda folder: SimpleNamespace(free=0))
    weights = ["--weights", str(weights_dir / "x2.safetensors"), "--scale", "2"]
    assert main(["upscale", str(source), "-o", str(tmp_path / "sr.nii"), *weights]) == 2
    assert "needs 6.55e-05 GB on disk but" in _one_line_error(capsys)
    assert main(["upscale", str(source), "-o", str(tmp_path / "sr.nii.gz"), *weights]) == 0


def test_running_out_of_memory_mid_run_is_one_line(tmp_path, weights_dir, monkeypatch, capsys):
    # fagan upscale logs nothing to stderr on its own; an earlier in-process `fagan train` may
    # have given the "fagan" logger a stderr handler.
    monkeypatch.setattr(logging.getLogger("fagan"), "handlers", [])
    source = _volume(tmp_path / "lr.nii.gz", (32, 32, 4))

    def exhausted(*args: object, **kwargs: object) -> None:
        raise MemoryError

    monkeypatch.setattr("fagan.inference.upscale_volume", exhausted)
    args = ["upscale", str(source), "-o", str(tmp_path / "sr.nii.gz"), "--scale", "2",
            "--weights", str(weights_dir / "x2.safetensors")]  # fmt: skip
    assert main(args) == 2
    assert "ran out of memory upscaling" in _one_line_error(capsys)
    assert not (tmp_path / "sr.nii.gz").exists()


def test_a_huge_header_is_refused_under_a_real_memory_limit(tmp_path, weights_dir) -> None:
    """In a process limited to 8 GB of address space, a header claiming 1024x1024x512 voxels (its x4
    result: 34 GB) is refused from the header: nothing is allocated, nothing crashes. (Importing a
    CUDA build of torch alone reserves about 3.3 GB of address space, so the limit leaves room for
    that and is still a quarter of what the upscale would need.)"""
    source = _header_only(tmp_path / "huge.nii", (1024, 1024, 512))
    command = [sys.executable, "-m", "fagan", "upscale", str(source), "-o", str(tmp_path / "sr.nii.gz"),
               "--scale", "4", "--weights", str(weights_dir / "x4.safetensors")]  # fmt: skip
    process = _start(command, limit=8 * 2**30)
    _, err = process.communicate(timeout=120)
    lines = err.decode().strip().splitlines()
    assert process.returncode == 2 and len(lines) == 1, lines
    assert "1024x1024x512 voxels x4 gives 4096x4096x512 = 34.4 GB of float32" in lines[0]


def test_claimed_shape_matches_what_is_read(tmp_path) -> None:
    """The header-only shape the size check uses is the shape read_volume returns."""
    from PIL import Image

    from fagan.data.io import claimed_shape, read_volume
    from fagan.data.sample import FILES

    np.save(tmp_path / "slice.npy", np.arange(30, dtype=np.float32).reshape(5, 6))
    Image.fromarray((np.arange(12, dtype=np.uint16) * 999).reshape(3, 4)).save(tmp_path / "slice.png")
    series = tmp_path / "series"
    series.mkdir()
    import pydicom

    for k in range(3):
        ds = pydicom.dcmread(FILES / "pydicom_MR_small.dcm")
        ds.ImagePositionPatient, ds.SOPInstanceUID = [0.0, 0.0, 0.8 * k], f"1.2.3.{k + 1}"
        ds.save_as(series / f"im{k}.dcm")
    (series / ".hidden.dcm").write_bytes(b"not counted")
    import h5py

    with h5py.File(tmp_path / "file.h5", "w") as f:
        f["reconstruction_rss"] = np.random.default_rng(0).random((2, 8, 6)).astype(np.float32)
    paths = [
        FILES / "nibabel_anatomical.nii",
        FILES / "fsl_mni152_t1_2mm.nii.gz",
        FILES / "pydicom_MR_small.dcm",
        FILES / "pydicomdata_emri_small.dcm",
        series,
        _volume(tmp_path / "v.nii.gz", (16, 24, 3)),
        tmp_path / "file.h5",
        tmp_path / "slice.npy",
        tmp_path / "slice.png",
    ]
    for path in paths:
        assert claimed_shape(path) == read_volume(path).array.shape, path
    (tmp_path / "broken.nii").write_bytes(b"\0" * 400)
    assert claimed_shape(tmp_path / "broken.nii") is None and claimed_shape(tmp_path / "series" / "x") is None

import json
import os
import pickle
import struct
import subprocess
import sys

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file

from fagan import FaganError
from fagan.models import build_generator
from fagan.models.release import (
    average_releases,
    load_release,
    read_metadata,
    save_release,
    shipped_weights,
    trained_degradation,
)

TINY = dict(channels=16, lffb_blocks=1, path_channels=8, residual_blocks=2, head_kernel=3, reduction=4)


def test_round_trip_rebuilds_the_same_generator(tmp_path) -> None:
    torch.manual_seed(0)
    model = build_generator("fagan", 4, **TINY).eval()
    path = save_release(tmp_path / "w.safetensors", model, "fagan", {"steps": 12})
    loaded, meta = load_release(path, scale=4)
    assert meta["model"] == "fagan" and meta["scale"] == "4" and meta["steps"] == "12"
    assert loaded.config == model.config
    lr = torch.rand(1, 1, 8, 8)
    with torch.no_grad():
        torch.testing.assert_close(loaded(lr), model(lr), atol=2e-2, rtol=1e-2)  # fp16 storage
    path32 = save_release(tmp_path / "w32.safetensors", model, "fagan", dtype=torch.float32)
    with torch.no_grad():
        torch.testing.assert_close(load_release(path32)[0](lr), model(lr))


def test_wrong_scale_is_refused(tmp_path) -> None:
    path = save_release(tmp_path / "w.safetensors", build_generator("srgan", 4, **TINY), "srgan")
    with pytest.raises(FaganError, match="holds x4 weights but x2 was asked for"):
        load_release(path, scale=2)


def test_a_run_folder_or_checkpoint_given_as_weights_is_pointed_to_the_release(tmp_path) -> None:
    run = tmp_path / "run"
    (run / "checkpoints").mkdir(parents=True)
    with pytest.raises(
        FaganError, match="is a folder, not a weights file; make weights .*fagan train --export"
    ):
        load_release(run)
    save_release(run / "release.safetensors", build_generator("srgan", 4, **TINY), "srgan")
    with pytest.raises(
        FaganError, match=r"is a folder, not a weights file; a finished run's weights are .*release"
    ):
        load_release(run)
    step = run / "checkpoints" / "step_00000005.pt"
    torch.save({"step": 5}, step)
    with pytest.raises(FaganError, match=r"not a readable safetensors weights file \(.*\); make weights"):
        load_release(step)


def test_missing_and_pickled_files_are_refused_without_unpickling(tmp_path) -> None:
    with pytest.raises(FaganError, match="not found: .*nope.safetensors$"):
        load_release(tmp_path / "nope.safetensors")
    # A shipped file's bare name, given where it is not, is pointed to the shipped file.
    with pytest.raises(FaganError, match=r"a shipped file of that name is .*weights.fagan_x2\.safetensors\)"):
        load_release(tmp_path / "fagan_x2.safetensors")

    class Boom:
        def __reduce__(self):
            return (open, (str(tmp_path / "pwned"), "w"))

    hostile = tmp_path / "hostile.safetensors"
    hostile.write_bytes(pickle.dumps(Boom()))
    with pytest.raises(FaganError, match="not a readable safetensors"):
        load_release(hostile)
    assert not (tmp_path / "pwned").exists()


def test_wrong_architecture_is_refused(tmp_path) -> None:
    path = save_release(tmp_path / "w.safetensors", build_generator("srgan", 2, **TINY), "srgan")
    from safetensors.torch import load_file, save_file

    meta = read_metadata(path)
    tensors = load_file(str(path))
    tensors.pop(next(iter(tensors)))
    save_file(tensors, str(path), metadata=meta)
    with pytest.raises(FaganError, match="does not match the 'srgan' architecture"):
        load_release(path)


def test_no_shipped_weights_for_a_scale_is_a_clear_error(monkeypatch, tmp_path) -> None:
    from fagan.models.release import shipped_scales

    assert shipped_scales("psnr") == [2, 4, 8] and shipped_scales("gan") == [2, 4]
    monkeypatch.setattr("fagan.models.release.SHIPPED_DIR", tmp_path)
    assert shipped_scales() == []
    with pytest.raises(FaganError, match="no shipped psnr weights for x8"):
        shipped_weights(8)
    with pytest.raises(FaganError, match="unknown weights variant 'sharp'; valid: psnr, gan"):
        shipped_scales("sharp")


# -- hostile and damaged weights --------------------------------------------------------------------


class _RunsCode:
    """Unpickling this creates the folder ``marker``: proof that the file's code ran."""

    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.mkdir, (self.marker,))


def _tiny_release(tmp_path, scale: int = 2):
    torch.manual_seed(0)
    return save_release(tmp_path / f"x{scale}.safetensors", build_generator("fagan", scale, **TINY), "fagan")


def _rewrite(path, tensors=None, **meta_changes):
    """Save ``path`` again with changed tensors and/or metadata (None deletes a key)."""
    meta = {**read_metadata(path), **meta_changes}
    if tensors is not None:  # made by hand, as a file without fagan's checksum would be
        meta.pop("tensors_sha256", None)
    save_file(tensors if tensors is not None else load_file(str(path)), str(path),
              metadata={k: v for k, v in meta.items() if v is not None})  # fmt: skip
    return path


def test_a_pickle_that_runs_code_is_refused_and_never_unpickled(tmp_path) -> None:
    """A torch.save file (zip + pickle) whose unpickling would run code, given to fagan upscale
    (--weights) and to training (model.init_weights): refused with one line, the code never runs."""
    marker = tmp_path / "code-ran"
    evil = tmp_path / "evil.pt"
    torch.save({"generator": _RunsCode(str(marker))}, evil)
    np.save(tmp_path / "lr.npy", np.arange(64, dtype=np.float32).reshape(8, 8))
    args = ["upscale", str(tmp_path / "lr.npy"), "-o", str(tmp_path / "sr.npy"), "--scale", "2"]
    run = subprocess.run(
        [sys.executable, "-m", "fagan", *args, "--weights", str(evil)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    lines = run.stderr.strip().splitlines()
    assert run.returncode == 2 and len(lines) == 1 and "Traceback" not in run.stderr, run.stderr
    assert "evil.pt is not a readable safetensors weights file" in lines[0]
    assert not (tmp_path / "sr.npy").exists()

    from fagan.training import load_config, train

    config = load_config(None, ["loss.perceptual_weight=0", f"model.init_weights={evil}"])
    with pytest.raises(FaganError, match="not a readable safetensors"):
        train(config, tmp_path / "run", device="cpu")
    with pytest.raises(FaganError, match="not a readable safetensors"):
        load_release(evil)
    assert not marker.exists()


@pytest.mark.parametrize(
    ("damage", "match"),
    [
        ("truncated", "not a readable safetensors weights file"),
        ("header-claims-2^60-bytes", "not a readable safetensors weights file"),
        ("tensors-of-another-width", "does not match the 'fagan' architecture"),
        ("scale-metadata-lies", "does not match the 'fagan' architecture"),
        ("config-not-json", "unreadable generator configuration"),
        ("config-unknown-key", "unreadable generator configuration"),
        ("config-zero-reduction", "unreadable generator configuration"),
        ("nan-weights", "NaN or infinite weights"),
        ("not-fagan", "not a fagan generator release file"),
        ("flipped-bytes", "is damaged: its tensors differ from the checksum written with them"),
    ],
)
def test_damaged_or_mismatched_weights_are_one_clear_error(tmp_path, damage, match) -> None:
    path = _tiny_release(tmp_path)
    if damage == "truncated":
        data = path.read_bytes()
        path.write_bytes(data[: len(data) // 2])
    elif damage == "header-claims-2^60-bytes":
        path.write_bytes(struct.pack("<Q", 2**60) + b"{}")
    elif damage == "tensors-of-another-width":
        other = build_generator("fagan", 2, **{**TINY, "channels": 24})
        _rewrite(path, {k: v.contiguous() for k, v in other.state_dict().items()})
    elif damage == "scale-metadata-lies":  # x2 tensors, labelled x4
        _rewrite(path, scale="4")
    elif damage == "config-not-json":
        _rewrite(path, config="{channels: 16")
    elif damage == "config-unknown-key":
        _rewrite(path, config=json.dumps({**json.loads(read_metadata(path)["config"]), "chanels": 16}))
    elif damage == "config-zero-reduction":
        _rewrite(path, config=json.dumps({**json.loads(read_metadata(path)["config"]), "reduction": 0}))
    elif damage == "nan-weights":
        tensors = load_file(str(path))
        first = next(k for k, v in tensors.items() if v.is_floating_point())
        tensors[first] = torch.full_like(tensors[first], float("nan"))
        _rewrite(path, tensors)
    elif damage == "not-fagan":
        _rewrite(path, format="other-tool")
    elif damage == "flipped-bytes":  # finite, well-formed, wrong: only the checksum can tell
        data = bytearray(path.read_bytes())
        header = 8 + struct.unpack("<Q", bytes(data[:8]))[0]
        for i in range(header + 1000, header + 1100):
            data[i] ^= 0xFF
        path.write_bytes(bytes(data))
    with pytest.raises(FaganError, match=match) as info:
        load_release(path, scale=None if damage == "scale-metadata-lies" else 2)
    assert "\n" not in str(info.value)


def test_weights_without_a_scale_are_one_clear_error(tmp_path) -> None:
    path = _rewrite(_tiny_release(tmp_path), scale=None)
    with pytest.raises(FaganError, match=r"names no valid scale \(None; expected one of 2, 4, 8\)") as info:
        load_release(path)
    assert "\n" not in str(info.value)


def test_weights_with_a_scale_that_is_not_a_number_are_one_clear_error(tmp_path) -> None:
    path = _rewrite(_tiny_release(tmp_path), scale="two")
    with pytest.raises(FaganError, match=r"names no valid scale \('two'; expected one of 2, 4, 8\)") as info:
        load_release(path)
    assert "\n" not in str(info.value)


def test_trained_degradation_reads_the_training_config() -> None:
    assert trained_degradation({"train_config": '{"data": {"degradation": "kspace"}}'}) == "kspace"
    assert trained_degradation({"train_config": '{"data": {}}'}) == "bicubic"
    assert trained_degradation({}) == "bicubic"
    assert trained_degradation({"train_config": "not json"}) == "bicubic"
    shipped = read_metadata(shipped_weights(4))
    assert trained_degradation(shipped) == "bicubic"


def test_average_releases_writes_the_mean_of_like_weights(tmp_path) -> None:
    torch.manual_seed(1)
    paths = [
        save_release(tmp_path / f"{name}.safetensors", build_generator("fagan", 2, **TINY), "fagan",
                     {"train_config": {"data": {"degradation": "bicubic"}}}, dtype=torch.float32)
        for name in ("a", "b", "c")
    ]  # fmt: skip
    out = average_releases(paths, tmp_path / "soup.safetensors")
    soup, meta = load_release(out)
    states = [load_release(p)[0].state_dict() for p in paths]
    for key, value in soup.state_dict().items():
        expected = sum(s[key].float() for s in states) / 3
        assert torch.allclose(value, expected, atol=2e-3), key  # stored as float16
    assert json.loads(meta["averaged_from"]) == ["a.safetensors", "b.safetensors", "c.safetensors"]
    assert trained_degradation(meta) == "bicubic"
    assert [c["data"]["degradation"] for c in json.loads(meta["averaged_train_configs"])] == ["bicubic"] * 3
    # an average of an average keeps the history of both
    nested = average_releases([out, paths[0]], tmp_path / "again.safetensors")
    again = read_metadata(nested)
    assert json.loads(again["averaged_from"]) == [
        {"file": "soup.safetensors", "averaged_from": ["a.safetensors", "b.safetensors", "c.safetensors"]},
        "a.safetensors",
    ]
    inner, outer = json.loads(again["averaged_train_configs"])
    assert len(inner) == 3 and outer == {"data": {"degradation": "bicubic"}}
    assert trained_degradation(again) == "bicubic"

    before = {p: p.read_bytes() for p in paths}
    with pytest.raises(FileExistsError, match="one of the files to average"):
        average_releases(paths, paths[1], overwrite=True)
    with pytest.raises(FileExistsError, match="pass --overwrite"):
        average_releases(paths, out)
    with pytest.raises(FaganError, match="named twice"):
        average_releases([paths[0], paths[0]], tmp_path / "twice.safetensors")
    with pytest.raises(FaganError, match="at least two"):
        average_releases(paths[:1], tmp_path / "one.safetensors")
    other_scale = save_release(tmp_path / "x4.safetensors", build_generator("fagan", 4, **TINY), "fagan")
    with pytest.raises(FaganError, match="differ in their scale"):
        average_releases([paths[0], other_scale], tmp_path / "mixed.safetensors")
    kspace = tmp_path / "k.safetensors"
    kspace.write_bytes(paths[2].read_bytes())
    _rewrite(kspace, train_config=json.dumps({"data": {"degradation": "kspace"}}))
    with pytest.raises(FaganError, match="different degradations"):
        average_releases([paths[0], kspace], tmp_path / "mixed.safetensors")
    assert {p: p.read_bytes() for p in paths} == before
    assert not (tmp_path / "mixed.safetensors").exists() and not (tmp_path / "one.safetensors").exists()


def test_a_file_from_before_the_checksum_still_loads(tmp_path) -> None:
    path = _rewrite(_tiny_release(tmp_path), tensors_sha256=None)
    assert "tensors_sha256" not in read_metadata(path)
    load_release(path, scale=2)

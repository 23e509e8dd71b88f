import pickle

import pytest
import torch

from fagan import FaganError
from fagan.models import build_generator
from fagan.models.release import load_release, read_metadata, save_release, shipped_weights

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


def test_missing_and_pickled_files_are_refused_without_unpickling(tmp_path) -> None:
    with pytest.raises(FaganError, match="not found"):
        load_release(tmp_path / "nope.safetensors")

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
    monkeypatch.setattr("fagan.models.release.SHIPPED_DIR", tmp_path)
    with pytest.raises(FaganError, match="no shipped psnr weights for x8"):
        shipped_weights(8)

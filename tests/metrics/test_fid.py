"""FID: the Frechet distance against its closed form, the input mapping, the network loading."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy import linalg

from fagan import FaganError
from fagan.metrics.fid import (
    FEATURES,
    fid_from_features,
    frechet_distance,
    inception_features,
    inception_input,
    load_inception,
)


def _spd(rng: np.random.Generator, d: int) -> np.ndarray:
    a = rng.standard_normal((d, d))
    return a @ a.T + 0.1 * np.eye(d)


def test_diagonal_gaussians_match_the_closed_form() -> None:
    mu1, mu2 = np.array([0.0, 1.0, 2.0]), np.array([1.0, 1.0, 0.0])
    v1, v2 = np.array([1.0, 4.0, 9.0]), np.array([4.0, 1.0, 1.0])
    expected = np.sum((mu1 - mu2) ** 2) + np.sum(v1 + v2 - 2 * np.sqrt(v1 * v2))  # 5 + 1 + 1 + 4
    assert expected == pytest.approx(11.0)
    assert frechet_distance(mu1, np.diag(v1), mu2, np.diag(v2)) == pytest.approx(expected)


def test_scaled_covariance_and_identity() -> None:
    """N(m, S) against N(m, c^2 S): FID = (1 - c)^2 Tr S; a Gaussian against itself: 0."""
    rng = np.random.default_rng(0)
    s, mu = _spd(rng, 6), rng.standard_normal(6)
    assert frechet_distance(mu, s, mu, 9 * s) == pytest.approx(4 * np.trace(s))
    assert frechet_distance(mu, s, mu, s) == pytest.approx(0.0, abs=1e-8)


def test_general_covariances_agree_with_the_matrix_square_root() -> None:
    rng = np.random.default_rng(1)
    s1, s2 = _spd(rng, 8), _spd(rng, 8)
    mu1, mu2 = rng.standard_normal(8), rng.standard_normal(8)
    root = linalg.sqrtm(s1 @ s2).real
    expected = np.sum((mu1 - mu2) ** 2) + np.trace(s1 + s2 - 2 * root)
    assert frechet_distance(mu1, s1, mu2, s2) == pytest.approx(expected, rel=1e-8)


def test_sampled_features_converge_to_the_population_value() -> None:
    rng = np.random.default_rng(2)
    real = rng.normal(0.0, 1.0, (20000, 3))
    fake = rng.normal(0.5, 2.0, (20000, 3))
    expected = 3 * 0.25 + 3 * (1 + 4 - 2 * 2)  # means 0 vs 0.5, variances 1 vs 4
    assert fid_from_features(real, fake) == pytest.approx(expected, rel=0.05)


def test_inception_input_is_three_channel_299_in_minus_one_to_one() -> None:
    slices = torch.linspace(-50, 250, 2 * 17 * 23).reshape(2, 1, 17, 23)
    x = inception_input(slices, (0.0, 200.0))
    assert x.shape == (2, 3, 299, 299)
    assert float(x.min()) == -1.0 and float(x.max()) == pytest.approx(127 / 128)
    assert torch.equal(x[:, 0], x[:, 2])
    with pytest.raises(ValueError, match="data range"):
        inception_input(slices, (1.0, 1.0))


class _TinyFeatures(torch.nn.Module):
    """A stand-in with the FID network's interface: (N, 3, 299, 299) -> (N, 2048)."""

    def __init__(self) -> None:
        super().__init__()
        self.proj = torch.nn.Linear(3, FEATURES)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(x.mean(dim=(2, 3)))


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_scripted_network_loads_from_a_path_and_gives_features(tmp_path) -> None:
    path = tmp_path / "tiny.pt"
    torch.jit.script(_TinyFeatures()).save(str(path))
    network = load_inception(path)
    torch.manual_seed(0)
    slices = torch.rand(5, 1, 20, 20)
    features = inception_features(network, [(slices, (0.0, 1.0)), (slices[:2], (0.0, 2.0))], batch_size=2)
    assert features.shape == (7, FEATURES)
    # Each batch goes through the network as Inception's input, with its own data range.
    with torch.no_grad():
        expected = torch.cat(
            [network(inception_input(slices, (0.0, 1.0))), network(inception_input(slices[:2], (0.0, 2.0)))]
        )
    np.testing.assert_allclose(features, expected.double().numpy(), rtol=1e-5, atol=1e-6)
    assert not np.allclose(features[:2], features[5:])  # the same slices in another range
    assert fid_from_features(features[:5], features[:5]) == pytest.approx(0.0, abs=1e-6)
    darker = inception_features(network, [(slices * 0.5, (0.0, 1.0))])
    assert fid_from_features(features[:5], darker) > 1e-3


def test_inception_input_maps_the_data_range_to_eight_bit_levels_in_minus_one_to_one() -> None:
    slices = torch.tensor([[[[10.0, 20.0], [30.0, 40.0]]]])
    x = inception_input(slices, (10.0, 40.0))
    assert x.shape == (1, 3, 299, 299)
    assert float(x.min()) == -1.0 and float(x.max()) == pytest.approx(127 / 128)
    assert torch.equal(x[:, 0], x[:, 2])  # one gray image in three channels


def test_missing_or_bad_network_files_are_clear_errors(tmp_path, monkeypatch) -> None:
    with pytest.raises(FileNotFoundError, match="FID network file not found"):
        load_inception(tmp_path / "absent.pt")
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"not a network")
    with pytest.raises(FaganError, match="not a TorchScript network"):
        load_inception(junk)
    monkeypatch.setattr("fagan.metrics.fid.default_weights", lambda: None)
    with pytest.raises(FaganError, match=r"fagan\[fid\]"):
        load_inception()

"""The data-consistency projection: fagan.inference.consistency."""

import pytest
import torch

from fagan.data.degrade import degrade
from fagan.inference.consistency import downsampling_matrix, project_onto_input


@pytest.mark.parametrize(("height", "width", "scale"), [(16, 24, 2), (40, 64, 4), (48, 48, 8), (8, 16, 8)])
def test_the_two_matrices_are_the_bicubic_degradation(height: int, width: int, scale: int) -> None:
    image = torch.rand(3, 1, height, width, dtype=torch.float64)
    a_h, a_w = downsampling_matrix(height, scale), downsampling_matrix(width, scale)
    assert a_h.shape == (height // scale, height)
    torch.testing.assert_close(a_h @ image @ a_w.T, degrade(image, scale), rtol=0, atol=1e-12)


@pytest.mark.parametrize("scale", [2, 4])
def test_projection_matches_the_input_and_never_moves_away_from_a_consistent_image(scale: int) -> None:
    torch.manual_seed(0)
    hr = torch.rand(4, 1, 32, 24, dtype=torch.float64)
    lr = degrade(hr, scale)
    guesses = [torch.rand_like(hr), hr + 0.1 * torch.randn_like(hr), torch.zeros_like(hr)]
    for guess in guesses:
        projected = project_onto_input(guess, lr, scale)
        torch.testing.assert_close(degrade(projected, scale), lr, rtol=0, atol=1e-10)
        torch.testing.assert_close(project_onto_input(projected, lr, scale), projected, rtol=0, atol=1e-10)
        # Pythagoras: |P(x) - hr|^2 = |x - hr|^2 - |x - P(x)|^2, per slice
        before = ((guess - hr) ** 2).sum(dim=(1, 2, 3))
        after = ((projected - hr) ** 2).sum(dim=(1, 2, 3))
        moved = ((guess - projected) ** 2).sum(dim=(1, 2, 3))
        torch.testing.assert_close(after, before - moved, rtol=1e-8, atol=1e-8)
        assert (moved > 0).all()
    torch.testing.assert_close(project_onto_input(hr, lr, scale), hr, rtol=0, atol=1e-10)


def test_projection_keeps_the_dtype_and_refuses_mismatched_sizes() -> None:
    sr, lr = torch.rand(1, 1, 16, 16), torch.rand(1, 1, 8, 8)
    assert project_onto_input(sr, lr, 2).dtype == torch.float32
    with pytest.raises(ValueError, match="does not belong"):
        project_onto_input(sr, lr, 4)
    with pytest.raises(ValueError, match="does not belong"):
        project_onto_input(torch.rand(1, 1, 15, 16), lr, 2)

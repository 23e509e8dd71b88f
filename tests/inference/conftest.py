import pytest
import torch

from fagan.models import build_generator
from fagan.models.release import save_release

TINY = dict(channels=16, lffb_blocks=1, path_channels=8, residual_blocks=2, head_kernel=3, reduction=4)


def tiny_generator(scale: int, seed: int = 0):
    torch.manual_seed(seed)
    model = build_generator("fagan", scale, **TINY)
    for module in model.modules():  # make attention and the output path non-trivial
        if hasattr(module, "gamma"):
            torch.nn.init.constant_(module.gamma, 0.3)
    return model.eval()


@pytest.fixture(scope="session")
def weights_dir(tmp_path_factory):
    folder = tmp_path_factory.mktemp("weights")
    for scale in (2, 4):
        save_release(folder / f"x{scale}.safetensors", tiny_generator(scale), "fagan")
    return folder

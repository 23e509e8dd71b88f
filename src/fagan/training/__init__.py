"""Training FA-GAN and its family: configuration, the loop, checkpoints, logs.

- :mod:`fagan.training.config`: frozen dataclasses loaded from YAML, ``KEY=VALUE`` overrides;
- :mod:`fagan.training.trainer`: :func:`train`, :func:`train_step`, :func:`validate`,
  :func:`export_release`;
- :mod:`fagan.training.checkpoint`: atomic, checksummed checkpoints;
- :mod:`fagan.training.data`: the volumes, the per-rank sample stream and the loader;
- :mod:`fagan.training.distributed`: device choice and torchrun / DDP;
- :mod:`fagan.training.ema`: the EMA generator;
- :mod:`fagan.training.logs`: JSON-lines logs, loss curves, TensorBoard.
"""

from fagan.training.config import TrainConfig, load_config, save_config
from fagan.training.trainer import export_release, train, train_step, validate

__all__ = ["TrainConfig", "export_release", "load_config", "save_config", "train", "train_step", "validate"]

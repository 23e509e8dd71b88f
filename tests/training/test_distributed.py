"""Two CPU processes under torchrun train with DDP and end with identical weights."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from fagan.data import Manifest, ManifestEntry, sample_volumes
from fagan.training import save_config
from fagan.training.logs import read_jsonl
from fagan.training.trainer import DEBUG_HASH_ENV

from .tiny import tiny_config


def test_two_processes_hold_identical_weights(tmp_path):
    # The smallest shipped volume (91 x 109 x 91) as training data keeps the processes' start short.
    small = sample_volumes("val")[0]
    manifest = tmp_path / "small.json"
    Manifest([ManifestEntry(str(small.path), small.name, "train")]).save(manifest)
    overrides = ("schedule.steps=4", "schedule.checkpoint_every=4", f"data.manifest={manifest}")
    config = save_config(tiny_config(*overrides), tmp_path / "tiny.yaml")
    run = tmp_path / "run"
    env = {**os.environ, DEBUG_HASH_ENV: "1", "OMP_NUM_THREADS": "1"}
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2"]
    command += ["-m", "fagan", "train", "--config", str(config), "--out", str(run), "--device", "cpu"]
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, done.stderr[-3000:]
    ranks = [json.loads((run / "debug" / f"rank{r}.json").read_text()) for r in (0, 1)]
    assert ranks[0]["generator"] == ranks[1]["generator"]
    assert ranks[0]["discriminator"] == ranks[1]["discriminator"]
    assert ranks[0]["first_batch"] != ranks[1]["first_batch"]  # each rank trains on its own slices
    assert [r["step"] for r in read_jsonl(run / "losses.jsonl")] == [1, 2, 3, 4]  # rank 0 alone logs
    assert (run / "release.safetensors").is_file() and (run / "checkpoints" / "step_00000004.pt").is_file()
    assert done.stdout.splitlines() == [f"wrote {run / 'release.safetensors'}"]  # rank 0 alone reports
    assert done.stderr.count("INFO: training fagan x4 for 4 steps") == 1

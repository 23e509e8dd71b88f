"""The training loop on the embedded sample data, with tiny networks on the CPU."""

from __future__ import annotations

import json
import multiprocessing
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch

from fagan import FaganError
from fagan.data import Volume, sample_volumes
from fagan.losses import pixel as pixel_module
from fagan.models import build_generator
from fagan.models.release import load_release, read_metadata
from fagan.training import checkpoint, export_release, load_config, train, train_step
from fagan.training.data import SampleStream, training_dataset, validation_dataset
from fagan.training.distributed import Runtime
from fagan.training.ema import EMA
from fagan.training.logs import read_jsonl
from fagan.training.trainer import _build, _loss_fn, lr_at

from .tiny import tiny_config


def _weights(path) -> dict[str, torch.Tensor]:
    return checkpoint.read_checkpoint(path)


def test_steps_on_a_fixed_batch_lower_the_pixel_loss():
    config = tiny_config("loss.adversarial_weight=0", "optim.lr=1e-3")
    runtime = Runtime(torch.device("cpu"))
    torch.manual_seed(0)
    nets = _build(config, runtime)
    loss_fn = _loss_fn(config, None, runtime.device)
    dataset = training_dataset([v.path for v in sample_volumes("train")], config.data, 4, seed=0)
    pairs = [dataset[i] for i in range(0, len(dataset), len(dataset) // 8)][:8]
    lr, hr = torch.stack([p.lr for p in pairs]), torch.stack([p.hr for p in pairs])
    losses = [train_step(lr, hr, nets, loss_fn, runtime, warmup=False)[0]["pixel"] for _ in range(25)]
    assert all(torch.isfinite(torch.tensor(losses)))
    assert sum(losses[-5:]) / 5 < 0.7 * sum(losses[:5]) / 5


def test_a_gan_step_updates_the_discriminator_and_warmup_leaves_it_alone():
    """After warmup each step also updates D, whose loss on a fixed batch then falls; during
    warmup D is not touched."""
    config = tiny_config("loss.adversarial_weight=0.01", "optim.lr=1e-3")
    runtime = Runtime(torch.device("cpu"))
    torch.manual_seed(0)
    nets = _build(config, runtime)
    loss_fn = _loss_fn(config, None, runtime.device)
    assert nets.discriminator is not None and loss_fn.adversarial
    dataset = training_dataset([v.path for v in sample_volumes("train")], config.data, 4, seed=0)
    pairs = [dataset[i] for i in range(4)]
    lr, hr = torch.stack([p.lr for p in pairs]), torch.stack([p.hr for p in pairs])

    def d_weights() -> list[torch.Tensor]:
        return [p.detach().clone() for p in nets.discriminator.parameters()]

    before = d_weights()
    terms, ok = train_step(lr, hr, nets, loss_fn, runtime, warmup=True)
    assert ok and "d_total" not in terms
    assert all(torch.equal(a, b) for a, b in zip(before, d_weights(), strict=True))
    d_losses = [train_step(lr, hr, nets, loss_fn, runtime, warmup=False)[0]["d_total"] for _ in range(12)]
    assert any(not torch.equal(a, b) for a, b in zip(before, d_weights(), strict=True))
    assert d_losses[-1] < d_losses[0]  # the tiny D stays near chance (2 ln 2), but moves away from it


def test_a_run_writes_everything_a_person_watches(tmp_path):
    run = tmp_path / "run"
    release = train(tiny_config(), run, device="cpu")
    assert release == run / "release.safetensors"
    assert load_config(run / "config.yaml") == tiny_config()
    losses = read_jsonl(run / "losses.jsonl")
    assert [r["step"] for r in losses] == [1, 2, 3, 4, 5, 6]
    assert [r["phase"] for r in losses] == ["warmup"] * 2 + ["gan"] * 4
    assert set(losses[0]) >= {"pixel", "g_total", "lr", "skipped"} and "adversarial" not in losses[0]
    assert {"pixel", "adversarial", "g_total", "d_total", "d_real", "d_fake"} <= set(losses[-1])
    validation = read_jsonl(run / "validation.jsonl")
    assert [r["step"] for r in validation] == [3, 6]
    assert validation[0]["slices"] == 4 and validation[0]["bicubic_psnr"] > 15
    assert [p.name for p in checkpoint.list_checkpoints(run)] == ["step_00000003.pt", "step_00000006.pt"]
    assert (run / "loss_curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "validation on 4 slices" in (run / "train.log").read_text()
    generator, meta = load_release(release, scale=4)
    assert meta["model"] == "fagan" and meta["steps"] == "6" and meta["data"] == "fagan.data.sample"
    assert json.loads(meta["config"])["channels"] == 16
    assert json.loads(meta["train_config"]) == tiny_config().to_dict()
    with pytest.raises(FileExistsError, match="already holds a training run"):
        train(tiny_config(), run, device="cpu")


def test_resume_refuses_a_manifest_whose_split_changed_since_the_run_started(tmp_path):
    from fagan.data.manifest import Manifest, ManifestEntry

    train_files, val_files = sample_volumes("train"), sample_volumes("val")
    manifest = tmp_path / "m.json"

    def write(test_subject: str | None) -> None:
        entries = [ManifestEntry(str(v.path), v.name, "val") for v in val_files]
        for v in train_files:
            entries.append(ManifestEntry(str(v.path), v.name, "test" if v.name == test_subject else "train"))
        Manifest(entries).save(manifest, overwrite=True)

    write(None)
    run = tmp_path / "run"
    config = tiny_config(f"data.manifest={manifest}", "schedule.steps=2", "schedule.checkpoint_every=1")
    train(config, run, device="cpu")
    record = json.loads((run / "data.json").read_text())
    assert [Path(p).name for p in record["train"]] == sorted(v.path.name for v in train_files)
    assert record["source"] == str(manifest)
    write(train_files[0].name)  # `fagan prepare` again, another seed: a training subject is now test
    more = tiny_config(f"data.manifest={manifest}", "schedule.steps=3", "schedule.checkpoint_every=1")
    gone = f"other data .*1 train volume.* gone, e.g. .*{train_files[0].path.name}"
    with pytest.raises(FaganError, match=gone):
        train(more, run, device="cpu", resume=True)
    assert [p.name for p in checkpoint.list_checkpoints(run)][-1] == "step_00000002.pt"
    write(None)
    train(more, run, device="cpu", resume=True)
    assert [p.name for p in checkpoint.list_checkpoints(run)][-1] == "step_00000003.pt"
    (run / "data.json").write_text("")  # killed while writing it, by an older fagan
    with pytest.raises(FaganError, match="data.json is damaged"):
        train(tiny_config(f"data.manifest={manifest}", "schedule.steps=4"), run, device="cpu", resume=True)


def test_resume_after_a_damaged_checkpoint_ends_with_identical_weights(tmp_path, caplog):
    straight, interrupted = tmp_path / "straight", tmp_path / "interrupted"
    every = "schedule.checkpoint_every=2"
    train(tiny_config(every), straight, device="cpu")
    train(tiny_config(every, "schedule.steps=4"), interrupted, device="cpu")
    latest = checkpoint.list_checkpoints(interrupted)[-1]
    assert latest.name == "step_00000004.pt"
    latest.write_bytes(latest.read_bytes()[:1000])  # a save cut short
    train(tiny_config(every), interrupted, device="cpu", resume=True)
    assert "does not match its checksum" in caplog.text
    a = _weights(checkpoint.list_checkpoints(straight)[-1])
    b = _weights(checkpoint.list_checkpoints(interrupted)[-1])
    assert a["step"] == b["step"] == 6 and a["samples_seen"] == b["samples_seen"] == 24
    for part in ("generator", "ema", "discriminator"):
        assert a[part].keys() == b[part].keys()
        for key in a[part]:
            assert torch.equal(a[part][key], b[part][key]), f"{part}.{key}"
    drop_time = [{k: v for k, v in r.items() if k != "time"} for r in read_jsonl(straight / "losses.jsonl")]
    assert drop_time == [
        {k: v for k, v in r.items() if k != "time"} for r in read_jsonl(interrupted / "losses.jsonl")
    ]
    assert [r["step"] for r in read_jsonl(interrupted / "validation.jsonl")] == [3, 6]


def test_loader_workers_give_the_same_run_and_are_gone_when_training_returns(tmp_path):
    """Patches cut in worker processes are the ones the main process would cut, and the workers
    are shut down when the run ends. Before, the loader's iterator sat in a reference cycle and
    its workers lived until the interpreter exited, where on CUDA (pinned memory) each waited out
    a 5 s join timeout (pytorch/pytorch#81794)."""
    runs = {}
    for workers in (0, 2):
        out = tmp_path / f"workers{workers}"
        train(tiny_config("schedule.steps=4", f"data.num_workers={workers}"), out, device="cpu")
        runs[workers] = out
        assert multiprocessing.active_children() == []
    a, b = (_weights(checkpoint.list_checkpoints(runs[w])[-1]) for w in (0, 2))
    for key in a["generator"]:
        assert torch.equal(a["generator"][key], b["generator"][key]), key
    losses = [
        [{k: v for k, v in r.items() if k != "time"} for r in read_jsonl(runs[w] / "losses.jsonl")]
        for w in (0, 2)
    ]
    assert losses[0] == losses[1]


def test_non_finite_losses_skip_steps_then_stop_the_run(tmp_path, monkeypatch):
    def nan_loss(self, sr, hr):
        return (sr - hr).abs().mean() * float("nan")

    monkeypatch.setattr(pixel_module.PixelLoss, "forward", nan_loss)
    run = tmp_path / "run"
    config = tiny_config("schedule.max_bad_steps=3", "schedule.checkpoint_every=1", "schedule.steps=10")
    with pytest.raises(FaganError, match=r"3 steps in a row had NaN or infinite losses \(last at step 3\)"):
        train(config, run, device="cpu")
    records = read_jsonl(run / "losses.jsonl")
    assert [r["skipped"] for r in records] == [True] * 3 and records[0]["pixel"] is None
    kept = checkpoint.list_checkpoints(run)
    assert [p.name for p in kept] == ["step_00000001.pt", "step_00000002.pt"]
    torch.manual_seed(0)
    initial = build_generator("fagan", 4, **config.model.overrides).state_dict()
    saved = _weights(kept[-1])["generator"]
    assert all(torch.equal(saved[k], initial[k]) for k in initial)


def test_generator_starts_from_a_release_file_and_export_matches(tmp_path):
    psnr_run, gan_run = tmp_path / "psnr", tmp_path / "gan"
    release = train(tiny_config("loss.adversarial_weight=0", "schedule.steps=3"), psnr_run, device="cpu")
    assert read_metadata(release)["ema"] == "true"
    exported = export_release(psnr_run, tmp_path / "exported.safetensors")
    a, _ = load_release(release)
    b, meta = load_release(exported)
    assert meta["checkpoint"] == "step_00000003.pt"
    assert all(torch.equal(a.state_dict()[k], b.state_dict()[k]) for k in a.state_dict())
    # lr 0 and no EMA: the fine-tune's release holds exactly the weights it started from.
    config = tiny_config(
        f"model.init_weights={release}", "optim.lr=0", "schedule.ema_decay=0", "schedule.steps=1"
    )
    started = train(config, gan_run, device="cpu")
    c, _ = load_release(started)
    assert all(torch.equal(a.state_dict()[k], c.state_dict()[k]) for k in a.state_dict())
    with pytest.raises(
        FaganError, match="holds a different generator.*channels=16 where this run has channels=32"
    ):
        train(
            tiny_config(f"model.init_weights={release}", "model.overrides.channels=32"),
            tmp_path / "x",
            device="cpu",
        )


def test_a_larger_scale_starts_from_a_smaller_scales_release_but_not_the_reverse(tmp_path):
    x2 = train(tiny_config("model.scale=2", "schedule.steps=1"), tmp_path / "x2", device="cpu")
    config = tiny_config(f"model.init_weights={x2}", "optim.lr=0", "schedule.ema_decay=0", "schedule.steps=1")
    x4 = train(config, tmp_path / "x4", device="cpu")
    small, _ = load_release(x2)
    large, meta = load_release(x4)
    assert meta["scale"] == "4"
    grown = large.state_dict()
    for key, value in small.state_dict().items():
        assert torch.equal(grown[key], value), key
    for key in [k for k in grown if k.startswith("upsample.1.")]:
        assert torch.equal(grown[key], grown[key.replace("upsample.1.", "upsample.0.")]), key
    with pytest.raises(FaganError, match="holds x4 weights, more than this run's x2"):
        train(tiny_config("model.scale=2", f"model.init_weights={x4}"), tmp_path / "y", device="cpu")
    assert not (tmp_path / "y" / "release.safetensors").exists()
    assert not (tmp_path / "y" / "checkpoints").exists()


def test_a_run_with_more_lffbs_starts_from_a_release_with_fewer(tmp_path):
    shallow = train(tiny_config("schedule.steps=1"), tmp_path / "shallow", device="cpu")
    blocks = load_release(shallow)[0].config.lffb_blocks
    deeper = f"model.overrides.lffb_blocks={blocks + 1}"
    config = tiny_config(f"model.init_weights={shallow}", deeper, "optim.lr=0", "schedule.ema_decay=0")
    grown, meta = load_release(train(config, tmp_path / "deep", device="cpu"))
    small, _ = load_release(shallow)
    x = torch.rand(1, 1, 12, 12)
    with torch.no_grad():
        assert torch.equal(grown.eval()(x), small.eval()(x))
    with pytest.raises(FaganError, match=f"lffb_blocks={blocks + 1} where this run has lffb_blocks={blocks}"):
        train(
            tiny_config(f"model.init_weights={tmp_path / 'deep' / 'release.safetensors'}"),
            tmp_path / "z",
            device="cpu",
        )


def test_sample_stream_splits_epochs_between_ranks_and_resumes_in_place():
    ranks = [SampleStream(10, seed=3, rank=r, world_size=2) for r in range(2)]
    first = [[next(it) for _ in range(5)] for it in map(iter, ranks)]
    assert all(epoch == 0 for stream in first for epoch, _ in stream)
    assert sorted(i for stream in first for _, i in stream) == list(range(10))
    whole = iter(SampleStream(10, seed=3))
    head = [next(whole) for _ in range(23)]
    resumed = iter(SampleStream(10, seed=3, start=17))
    assert [next(resumed) for _ in range(6)] == head[17:]
    assert [e for e, _ in head] == [0] * 10 + [1] * 10 + [2] * 3
    assert [i for _, i in head[:10]] != [i for _, i in head[10:20]]


def test_volume_balanced_stream_draws_each_volume_equally_often_and_resumes():
    # volume 0 has 90 slices, volume 1 has 10: by slices volume 1 would get 10% of the draws
    groups = [0] * 90 + [1] * 10
    stream = iter(SampleStream(100, seed=5, groups=groups))
    draws = [next(stream) for _ in range(4000)]
    share = sum(groups[i] for _, i in draws) / len(draws)
    assert 0.45 < share < 0.55
    assert {i for _, i in draws} == set(range(100))  # every slice of both volumes is drawn
    assert [e for e, _ in draws[:200]] == [0] * 100 + [1] * 100
    resumed = iter(SampleStream(100, seed=5, start=150, groups=groups))
    assert [next(resumed) for _ in range(20)] == draws[150:170]
    with pytest.raises(FaganError, match="groups has 3 entries"):
        SampleStream(100, seed=5, groups=[0, 1, 1])


def test_balance_by_volumes_reaches_the_stream_and_unknown_values_are_refused(tmp_path, monkeypatch):
    seen: list = []

    class Recording(SampleStream):
        def __init__(self, *args, **kwargs):
            seen.append(kwargs.get("groups"))
            super().__init__(*args, **kwargs)

    monkeypatch.setattr("fagan.training.trainer.SampleStream", Recording)
    train(tiny_config("data.balance=volumes", "schedule.steps=2"), tmp_path / "run", device="cpu")
    assert seen[0] is not None and set(seen[0]) == set(range(len(sample_volumes("train"))))
    with pytest.raises(FaganError, match="data.balance"):
        tiny_config("data.balance=subjects")


def test_training_patches_get_every_augmentation_the_config_names():
    volume = Volume(np.random.default_rng(1).random((64, 64, 4), dtype=np.float32), np.eye(4), {})
    settings = ("data.zoom_range=[0.5,0.5]", "data.noise_range=[0.1,0.1]", "data.axes=[2]")
    plain = training_dataset([volume], tiny_config(*settings).data, 4, seed=0)
    config = tiny_config(
        *settings,
        "data.zoom_method=kspace",
        "data.contrast_prob=1.0",
        "data.contrast_knots=tissue",
        "data.gain_range=[0.9,1.1]",
        "data.offset_range=[-0.1,0.0]",
    )
    dataset = training_dataset([volume], config.data, 4, seed=0)
    assert (dataset.zoom_method, dataset.contrast_prob, dataset.noise_range) == ("kspace", 1.0, (0.1, 0.1))
    assert dataset.contrast_knots == "tissue"
    assert (dataset.gain_range, dataset.offset_range) == ((0.9, 1.1), (-0.1, 0.0))
    assert (plain.gain_range, plain.offset_range) == (None, None)
    assert (plain.zoom_method, plain.contrast_prob, plain.contrast_knots) == ("bicubic", 0.0, "even")
    assert not torch.equal(dataset[0].hr, plain[0].hr)


def test_validation_skips_cuts_too_thin_for_ssim():
    # a 10-slice volume cut along axes 0 and 1 gives 64x10 images: SSIM cannot score them
    thin = Volume(np.random.default_rng(0).random((64, 64, 10), dtype=np.float32), np.eye(4), {})
    config = tiny_config("data.axes=[0,1,2]", "data.val_slices=400")
    val = validation_dataset([sample_volumes("val")[0].path, thin], config.data, 4)
    sides = [min(val.slice_image(i).shape) for i in range(len(val))]
    assert min(sides) >= 11
    assert {e.volume for e in val.entries} == {0, 1}
    assert {e.axis for e in val.entries if e.volume == 1} == {2}


@pytest.mark.parametrize(("files", "cap"), [(5, 2), (3, 32), (3, 4), (1, 4)])
def test_val_slices_caps_the_validation_slices_however_many_files(files, cap):
    rng = np.random.default_rng(0)
    volumes = [Volume(rng.random((24, 24, 12), dtype=np.float32), np.eye(4), {}) for _ in range(files)]
    val = validation_dataset(volumes, tiny_config(f"data.val_slices={cap}").data, 4)
    assert 0 < len(val) <= cap
    assert len({e.volume for e in val.entries}) == min(files, cap)  # spread over the files


def test_a_val_split_too_small_for_validation_is_named_in_the_error(tmp_path):
    small = tmp_path / "small.nii.gz"
    nib.save(nib.Nifti1Image(np.random.default_rng(0).random((6, 6, 4), dtype=np.float32), np.eye(4)), small)
    config = tiny_config()
    with pytest.raises(
        FaganError, match=r"the val split \(1 volume\(s\): .*small\.nii\.gz\) has no slice"
    ) as exc:
        validation_dataset([small], config.data, 4)
    assert "data.val_slices=0" in str(exc.value) and "patch_size" not in str(exc.value)
    assert validation_dataset([small], tiny_config("data.val_slices=0").data, 4) is None


def test_ema_and_step_decay():
    source = torch.nn.Linear(2, 2)
    ema = EMA(source, decay=0.9)
    assert ema.decay_at(0) == pytest.approx(0.1) and ema.decay_at(10_000) == 0.9
    with torch.no_grad():
        source.weight.add_(1.0)
    before = ema.model.weight.clone()
    ema.update(source, step=0)
    torch.testing.assert_close(ema.model.weight, before + 0.9)
    assert not ema.model.weight.requires_grad
    assert lr_at(1e-4, 0, (10, 20), 0.5) == 1e-4
    assert lr_at(1e-4, 10, (10, 20), 0.5) == pytest.approx(5e-5)
    assert lr_at(1e-4, 25, (10, 20), 0.5) == pytest.approx(2.5e-5)

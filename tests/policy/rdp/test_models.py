"""Slow-side models, checkpoints and training: shapes, round trips, resume, bad input."""
import json
import shutil

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from policy.rdp.checkpoint import load_checkpoint
from policy.rdp.config import DiffusionConfig, PolicyConfig, UNetConfig
from policy.rdp.diffusion import ConditionalUnet1D, make_scheduler
from policy.rdp.runtime import TorchSlowPolicy
from policy.rdp.train import train


def test_unet_shapes_and_film():
    torch.manual_seed(0)
    net = ConditionalUnet1D(4, 10, UNetConfig(down_dims=(16, 32, 64), step_embed_dim=16))
    x = torch.randn(2, 8, 4)
    y = net(x, torch.tensor([1, 50]), torch.randn(2, 10))
    assert y.shape == x.shape
    a = net(x, torch.tensor([5, 5]), torch.zeros(2, 10))
    b = net(x, torch.tensor([5, 5]), torch.ones(2, 10))
    assert not torch.allclose(a, b)  # the conditioning reaches the output


def test_scheduler_is_diffusers_ddim_squaredcos():
    s = make_scheduler(DiffusionConfig())
    assert type(s).__name__ == "DDIMScheduler"
    assert s.config.num_train_timesteps == 100 and s.config.beta_schedule == "squaredcos_cap_v2"
    assert s.config.prediction_type == "epsilon"
    s.set_timesteps(8)
    assert len(s.timesteps) == 8


def test_checkpoint_round_trip(trained, dataset):
    ck = load_checkpoint(trained / "ldp", expect="rdp_ldp")
    assert ck.tokenizer is not None and ck.config.model_type == "rdp_ldp"
    assert (trained / "ldp" / "ema.safetensors").is_file()
    assert {"latent", "action", "contact", "proprio"} <= set(ck.normalizer.stats)
    cfg = json.loads((trained / "ldp" / "config.json").read_text())
    assert cfg["model_type"] == "rdp_ldp" and cfg["shapes"]["cameras"] == ["wrist"]
    # weights load back bit-identical, and inference is reproducible from the folder
    saved = load_file(str(trained / "ldp" / "model.safetensors"))
    for k, v in ck.model.state_dict().items():
        assert torch.equal(v, saved[k])
    images = {"wrist": np.random.default_rng(0).integers(0, 256, (2, 32, 48, 3), dtype=np.uint8)}
    pose = np.tile(np.array([0.5, 0, 0.3, 0, 0, 0, 1], np.float32), (2, 1))
    contact = np.zeros((2, 6), np.float32)
    a = TorchSlowPolicy(trained / "ldp").predict(images, pose, contact, seed=3)
    b = TorchSlowPolicy(trained / "ldp").predict(images, pose, contact, seed=3)
    assert a.shape == (4, 4) and np.array_equal(a, b)


def test_wrong_model_type_is_refused(trained):
    with pytest.raises(ValueError, match="checkpoint is a 'dp' model, expected 'rdp_ldp'"):
        load_checkpoint(trained / "dp", expect="rdp_ldp")
    with pytest.raises(ValueError, match="'rdp_tokenizer' model, cannot resume it as 'dp'"):
        train("dp", trained.parent, trained / "tok", resume=True)


def test_ldp_needs_tokenizer_and_rejects_other_types(trained, dataset, tiny_config, tmp_path):
    with pytest.raises(ValueError, match="needs a trained tokenizer: --tokenizer"):
        train("ldp", dataset, tmp_path / "x", tiny_config("rdp_ldp"), progress=False)
    with pytest.raises(ValueError, match="'dp' model, expected 'rdp_tokenizer'"):
        train("ldp", dataset, tmp_path / "x", tiny_config("rdp_ldp"), tokenizer=trained / "dp", progress=False)


def test_nan_in_dataset_is_named(tmp_path, dataset, tiny_config):
    bad = tmp_path / "nan"
    shutil.copytree(dataset, bad)
    import pandas as pd
    p = bad / "data/chunk-000/file-002.parquet"
    df = pd.read_parquet(p)
    w = np.stack(df["observation.wrench"].to_numpy())
    w[5:, 2] = np.nan  # a broken sensor after the stats were written
    df["observation.wrench"] = list(w)
    df.to_parquet(p)
    with pytest.raises(ValueError, match="feature 'observation.wrench' has NaN or infinite values in 43 frame.*episode 2 frame 5"):
        train("tokenizer", bad, tmp_path / "ck", tiny_config("rdp_tokenizer"), progress=False)


def test_nan_in_batch_at_training_time(tmp_path, dataset, tiny_config, monkeypatch):
    from policy.rdp import dataset as dsmod
    orig = dsmod.ChunkSamples.__getitem__

    def poisoned(self, k):
        x = orig(self, k)
        if k == 7:
            x["obs_proprio"] = x["obs_proprio"].copy()
            x["obs_proprio"][0, 0] = np.nan
        return x

    monkeypatch.setattr(dsmod.ChunkSamples, "__getitem__", poisoned)
    cfg = tiny_config("dp", train={"batch_size": 500, "epochs": 1})
    with pytest.raises(ValueError, match=r"NaN or infinite value in batch at step 0: input 'obs_proprio' \(dataset frames"):
        train("dp", dataset, tmp_path / "ck", cfg, progress=False)


@pytest.mark.slow
@pytest.mark.parametrize("kind,stop", [("tokenizer", 5), ("dp", 4)])
def test_resume_equals_uninterrupted(tmp_path, dataset, tiny_config, kind, stop):
    """Stop mid-epoch (as Ctrl-C would), resume: same weights, EMA and optimizer as one run."""
    mt = {"tokenizer": "rdp_tokenizer", "dp": "dp"}[kind]
    over = {"train": {"epochs": 2, "batch_size": 64, "lr": 2e-3, "warmup_steps": 2}}
    full = train(kind, dataset, tmp_path / "full", tiny_config(mt, **over), progress=False)
    part_cfg = tiny_config(mt, **over)
    part_cfg.train.num_workers = 1 if kind == "dp" else 0  # a worker process must not change the result
    part = train(kind, dataset, tmp_path / "part", part_cfg, progress=False, stop_after_steps=stop)
    assert part["stopped"] and part["steps"] == stop
    resumed = train(kind, dataset, tmp_path / "part", resume=True, progress=False)
    assert resumed["steps"] == full["steps"]
    for name in ["model.safetensors"] + (["ema.safetensors"] if kind == "dp" else []):
        a, b = load_file(str(tmp_path / "full" / name)), load_file(str(tmp_path / "part" / name))
        for k in a:
            assert torch.allclose(a[k], b[k], atol=1e-6), (name, k)
    assert resumed["val_loss"] == pytest.approx(full["val_loss"], rel=1e-5)
    st = json.loads((tmp_path / "part" / "training_state" / "state.json").read_text())
    assert st["step"] == full["steps"] and st["epoch"] == 2


def test_refuses_to_overwrite_and_validates_config(tmp_path, trained, dataset):
    with pytest.raises(OSError, match="already holds a checkpoint"):
        train("tokenizer", dataset, trained / "tok", progress=False)
    with pytest.raises(ValueError, match="PolicyConfig.data.horizon = 30: must be a multiple of tokenizer.compression"):
        PolicyConfig.from_dict({"model_type": "rdp_tokenizer", "data": {"horizon": 30}})
    with pytest.raises(ValueError, match="unknown field"):
        PolicyConfig.from_dict({"model_type": "dp", "bogus": 1})


def test_dataset_of_other_rate_is_refused_on_resume(tmp_path, trained, tiny_config):
    from policy.rdp.synthetic import make_dataset
    other = make_dataset(tmp_path / "fast", episodes=2, length=24, fps=200, image_size=None)
    shutil.copytree(trained / "tok", tmp_path / "tok")
    with pytest.raises(ValueError, match="dataset fps 200 does not match the expected 50"):
        train("tokenizer", other, tmp_path / "tok", resume=True, progress=False)


def test_random_crop_in_training_centre_crop_otherwise():
    from policy.rdp.config import ObsEncoderConfig
    from policy.rdp.diffusion import ObsEncoder

    enc = ObsEncoder(ObsEncoderConfig(image_width=8, image_feature_dim=8, crop_ratio=0.75), 1, 2, 9, 6, 2)
    x = torch.arange(4 * 3 * 16 * 20, dtype=torch.float32).reshape(4, 3, 16, 20)
    a = enc.train().crop(x, torch.Generator().manual_seed(0))
    b = enc.train().crop(x, torch.Generator().manual_seed(0))
    assert a.shape == (4, 3, 12, 15) and torch.equal(a, b)  # seeded: reproducible
    for i in range(4):  # each crop is a contiguous window of its own image
        oy, ox = divmod(int(a[i, 0, 0, 0] - x[i, 0, 0, 0]), 20)
        assert torch.equal(a[i], x[i, :, oy:oy + 12, ox:ox + 15])
    c = enc.eval().crop(x)
    assert torch.equal(c, x[:, :, 2:14, 2:17])


def test_early_stopping_keeps_the_best_epoch_and_plots_the_curves(tmp_path, dataset, tiny_config, monkeypatch):
    """With a patience, training stops once the validation loss has not improved for that many
    epochs; the checkpoint on disk is the best epoch's, loss.json/loss.png hold every epoch."""
    import json

    import policy.rdp.train as tr

    losses = iter([0.5, 0.3, 0.4, 0.35, 0.6, 0.2, 0.1])   # best at epoch 1, then 3 worse ones
    monkeypatch.setattr(tr, "evaluate", lambda *a, **k: next(losses))
    cfg = tiny_config("rdp_tokenizer", train={"epochs": 7, "patience": 3}, data={"val_fraction": 0.2})
    out = train("tokenizer", dataset, tmp_path / "tok", cfg, progress=False)
    assert out["stopped_early"] and out["best_epoch"] == 1 and out["best_val_loss"] == 0.3
    state = json.loads((tmp_path / "tok" / "training_state" / "state.json").read_text())
    assert state["epoch"] == 2 and state["val_loss"] == 0.3          # the best epoch's checkpoint
    curves = json.loads((tmp_path / "tok" / "loss.json").read_text())
    assert [h["val_loss"] for h in curves["history"]] == [0.5, 0.3, 0.4, 0.35, 0.6]
    assert (tmp_path / "tok" / "loss.png").stat().st_size > 1000


def test_the_small_dp_predicts_the_clean_chunk_and_the_published_one_the_noise():
    """The CPU-size UNet cannot carry an 18-channel chunk's noise through its first level
    (docs/results.md, lift): the sim preset's DP predicts the clean chunk. The published sizes
    and the latent diffusion policy keep the published epsilon prediction."""
    from policy.rdp.config import preset

    assert preset("sim", "dp").diffusion.prediction_type == "sample"
    assert preset("published", "dp").diffusion.prediction_type == "epsilon"
    assert preset("sim", "rdp_ldp").diffusion.prediction_type == "epsilon"

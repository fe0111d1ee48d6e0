"""The asymmetric tokenizer: overfits, reacts to force in the right direction, steps in O(1)
exactly like the whole-sequence decode."""
import numpy as np
import pytest
import torch

from policy.rdp.config import TokenizerConfig
from policy.rdp.dataset import ChunkSamples, required_keys
from slowfast_data.reader import LeRobotDataset
from policy.rdp.models import build_model
from policy.rdp.synthetic import make_dataset
from policy.rdp.tokenizer import AsymmetricTokenizer
from policy.rdp.train import collate

L1_BOUND = 0.05       # mean |reconstruction - action| in normalised units
POS_BOUND_M = 0.002   # mean position error of the reconstructed targets (metres)


@pytest.fixture(scope="module")
def overfit(tmp_path_factory, tiny_config):
    root = make_dataset(tmp_path_factory.mktemp("tok") / "d", episodes=4, length=48, image_size=None, seed=1)
    cfg = tiny_config("rdp_tokenizer")
    ds = LeRobotDataset(root, require=required_keys(cfg))
    norm = ChunkSamples.fit(ds, cfg, ds.ep_ids)
    samples = ChunkSamples(ds, cfg, norm)
    torch.manual_seed(0)
    model = build_model(cfg, norm)
    batch = collate([samples[i] for i in range(len(samples))])
    opt = torch.optim.Adam(model.parameters(), 3e-3)
    for it in range(400):
        loss, _ = model(batch, torch.Generator().manual_seed(it))
        opt.zero_grad()
        loss.backward()
        opt.step()
    return model.eval(), norm, batch


@pytest.mark.slow
def test_overfits_small_set(overfit):
    model, norm, b = overfit
    with torch.no_grad():
        mean, _ = model.encode(b["action"])
        rec = model.decode(mean, b["contact"])
    assert (rec - b["action"]).abs().mean() < L1_BOUND
    pos = norm.unnormalize("action", rec.numpy())[..., :3] - norm.unnormalize("action", b["action"].numpy())[..., :3]
    assert np.abs(pos).mean() < POS_BOUND_M


def test_action_follows_force(overfit):
    """Synthetic task: the arm yields along -z in proportion to the force f_z it feels now.
    With the latent fixed, raising f_z must lower the decoded z target at every step."""
    model, norm, b = overfit
    with torch.no_grad():
        mean, _ = model.encode(b["action"][:32])
        hi, lo = b["contact"][:32].clone(), b["contact"][:32].clone()
        hi[..., 2], lo[..., 2] = 1.5, -1.5
        dz = norm.unnormalize("action", model.decode(mean, hi).numpy())[..., 2] \
            - norm.unnormalize("action", model.decode(mean, lo).numpy())[..., 2]
    f_std = norm.mean_std("contact")[1][2]
    expected = -0.01 * (3.0 * f_std) / 10.0  # the synthetic gain: 0.01 m per 10 N
    assert (dz < 0).mean() > 0.95
    assert 0.5 * abs(expected) < -dz.mean() < 1.5 * abs(expected)


def test_step_equals_whole_sequence():
    torch.manual_seed(0)
    tok = AsymmetricTokenizer(TokenizerConfig(latent_dim=3, compression=4, hidden=16), action_dim=9, contact_dim=6, horizon=32).eval()
    lat = torch.randn(3, 8, 3)
    con = torch.randn(3, 32, 6)
    with torch.no_grad():
        full = tok.decode(lat, con)
        h = tok.initial_state(3)
        steps = []
        for t in range(32):
            a, h = tok.step(lat[:, t // 4], con[:, t], torch.full((3, 1), float(t)), h)
            steps.append(a)
    assert torch.allclose(torch.stack(steps, 1), full, atol=1e-5)
    # the path taken under ONNX export (a GRU node over a length-1 sequence) agrees too
    from unittest import mock
    with torch.no_grad(), mock.patch("torch.onnx.is_in_onnx_export", return_value=True):
        h = tok.initial_state(3)
        out = []
        for t in range(32):
            a, h = tok.step(lat[:, t // 4], con[:, t], torch.full((3, 1), float(t)), h)
            out.append(a)
    assert torch.allclose(torch.stack(out, 1), full, atol=1e-5)


def test_encoder_sees_actions_only_and_compresses():
    tok = AsymmetricTokenizer(TokenizerConfig(compression=8, latent_dim=2), action_dim=9, contact_dim=6, horizon=64)
    mean, logvar = tok.encode(torch.randn(2, 64, 9))
    assert mean.shape == (2, 8, 2) and logvar.shape == (2, 8, 2)
    with pytest.raises(ValueError, match="expected \\(64, 9\\)"):
        tok.encode(torch.randn(2, 32, 9))


def test_config_errors_name_the_field():
    with pytest.raises(ValueError, match="TokenizerConfig.compression = 3: must be a power of two"):
        TokenizerConfig(compression=3)
    with pytest.raises(ValueError, match="TokenizerConfig.kl_weight = -1"):
        TokenizerConfig(kl_weight=-1)

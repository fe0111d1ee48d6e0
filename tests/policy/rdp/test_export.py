"""ONNX export and the runtimes the control loops call."""
import json
import shutil

import numpy as np
import onnx
import pytest
import torch

from policy.rdp.checkpoint import load_checkpoint
from slowfast_data.geometry import absolute_to_relative, relative_to_absolute, rot6d_to_matrix
from policy.rdp.runtime import DecoderRuntime, SlowPolicyRuntime, TorchDecoderRuntime, TorchSlowPolicy

pytestmark = pytest.mark.slow   # trains tiny models (the session fixture)


def _obs(rng):
    images = {"wrist": rng.integers(0, 256, (2, 32, 48, 3), dtype=np.uint8)}
    pose = np.tile(np.array([0.5, 0.1, 0.3, 0, 0, 0.3826834, 0.9238795], np.float32), (2, 1))
    contact = rng.normal(0, 5, (2, 6)).astype(np.float32)
    return images, pose, contact


def test_export_files(trained):
    meta = json.loads((trained / "onnx_ldp" / "runtime.json").read_text())
    assert set(meta["files"]) == {"decoder_step", "action_encoder", "obs_encoder", "denoiser"}
    assert all(err < 1e-4 for err in meta["max_abs_error"].values())
    names = [i.name for i in onnx.load(str(trained / "onnx_ldp" / "decoder_step.onnx")).graph.input]
    assert names == ["latent", "contact", "step", "state"]
    assert set(json.loads((trained / "onnx_tok" / "runtime.json").read_text())["files"]) == {"decoder_step", "action_encoder"}


def test_decoder_onnx_matches_torch_over_a_chunk(trained):
    rng = np.random.default_rng(0)
    ort_dec, torch_dec = DecoderRuntime(trained / "onnx_ldp"), TorchDecoderRuntime(trained / "ldp")
    lat = rng.normal(size=(ort_dec.latent_steps, ort_dec.latent_dim)).astype(np.float32)
    s1 = s2 = None
    for t in range(ort_dec.horizon):
        c = rng.normal(0, 5, 6).astype(np.float32)
        a1, s1 = ort_dec.step(lat, t, c, s1)
        a2, s2 = torch_dec.step(lat, t, c, s2)
        assert np.abs(a1 - a2).max() < 1e-4 and np.abs(s1 - s2).max() < 1e-4
    assert a1.shape == (9,) and s1.shape == (1, ort_dec.hidden)


def test_runtime_step_equals_model_decode(trained):
    """The runtime (raw contact in, un-normalised relative action out) equals the model's
    whole-sequence decode with the normalisation applied by hand."""
    ck = load_checkpoint(trained / "tok")
    tok, norm = ck.model.eval(), ck.normalizer
    rng = np.random.default_rng(1)
    lat = rng.normal(size=(4, tok.cfg.latent_dim)).astype(np.float32)
    contacts = rng.normal(0, 5, (16, 6)).astype(np.float32)
    with torch.no_grad():
        ref = tok.decode(torch.from_numpy(lat)[None], torch.from_numpy(norm.normalize("contact", contacts))[None])[0]
    ref = norm.unnormalize("action", ref.numpy())
    got = DecoderRuntime(trained / "onnx_tok").decode_chunk(lat, contacts)
    assert np.abs(got - ref).max() < 1e-4
    start = np.array([0.4, -0.1, 0.2, 0, 0, 0.3826834, 0.9238795], np.float32)
    absolute = DecoderRuntime(trained / "onnx_tok").decode_chunk(lat, contacts, start_pose=start)
    assert absolute.shape == (16, 7)
    back = absolute_to_relative(absolute, start)
    assert np.allclose(back[:, :3], got[:, :3], atol=1e-4)  # the 6-D part is projected onto SO(3)
    assert np.allclose(rot6d_to_matrix(back[:, 3:]), rot6d_to_matrix(got[:, 3:]), atol=1e-4)


def test_batched_decoder_and_bad_calls(trained):
    dec = DecoderRuntime(trained / "onnx_ldp")
    lat = np.zeros((3, dec.latent_steps, dec.latent_dim), np.float32)
    a, s = dec.step(lat, 0, np.zeros((3, 6), np.float32), dec.initial_state(3))
    assert a.shape == (3, 9) and s.shape == (3, dec.hidden)
    with pytest.raises(ValueError, match=r"step_index 16: must be in \[0, 16\)"):
        dec.step(lat[0], 16, np.zeros(6), None)
    with pytest.raises(ValueError, match="contact of length 5, expected 6"):
        dec.step(lat[0], 0, np.zeros(5), None)


@pytest.mark.parametrize("name", ["ldp", "dp"])
def test_slow_policy_onnx_matches_torch(trained, name):
    rng = np.random.default_rng(2)
    images, pose, contact = _obs(rng)
    a = SlowPolicyRuntime(trained / f"onnx_{name}").predict(images, pose, contact, seed=5)
    b = TorchSlowPolicy(trained / name).predict(images, pose, contact, seed=5)
    assert a.shape == ((4, 4) if name == "ldp" else (16, 9))
    assert np.abs(a - b).max() < 1e-4 * max(1.0, float(np.abs(b).max()))
    # images at another resolution are resized, not refused
    big = {"wrist": np.repeat(np.repeat(images["wrist"], 2, 1), 2, 2)}
    assert SlowPolicyRuntime(trained / f"onnx_{name}").predict(big, pose, contact, seed=5).shape == a.shape


def test_dp_chunk_converts_to_absolute(trained):
    rng = np.random.default_rng(3)
    images, pose, contact = _obs(rng)
    rel = SlowPolicyRuntime(trained / "onnx_dp").predict(images, pose, contact, seed=0)
    absolute = relative_to_absolute(rel, pose[-1])
    assert absolute.shape == (16, 7) and np.allclose(np.linalg.norm(absolute[:, 3:], axis=-1), 1, atol=1e-5)


def test_onnx_with_mismatched_inputs_is_named(trained, tmp_path):
    bad = tmp_path / "bad"
    shutil.copytree(trained / "onnx_ldp", bad)
    meta = json.loads((bad / "runtime.json").read_text())
    meta["shapes"]["contact_raw_dim"] = 12  # e.g. an export of a two-arm model
    (bad / "runtime.json").write_text(json.dumps(meta))
    with pytest.raises(ValueError, match=r"decoder_step.onnx: input 'contact' has shape \['batch', 6\], expected \['batch', 12\]"):
        DecoderRuntime(bad)
    shutil.copy(trained / "onnx_dp" / "denoiser.onnx", bad / "denoiser.onnx")
    meta["shapes"]["contact_raw_dim"] = 6
    (bad / "runtime.json").write_text(json.dumps(meta))
    with pytest.raises(ValueError, match=r"denoiser.onnx: input 'sample' has shape \['batch', 16, 9\], expected \['batch', 4, 4\]"):
        SlowPolicyRuntime(bad)
    shutil.copy(trained / "onnx_dp" / "obs_encoder.onnx", bad / "decoder_step.onnx")
    with pytest.raises(ValueError, match=r"decoder_step.onnx: inputs \['images', 'tcp_pose', 'contact'\] do not match"):
        DecoderRuntime(bad)
    (bad / "decoder_step.onnx").write_bytes(b"not onnx")
    with pytest.raises(ValueError, match="onnxruntime cannot load it"):
        DecoderRuntime(bad)
    with pytest.raises(ValueError, match="no slow policy"):
        SlowPolicyRuntime(trained / "onnx_tok")


def test_tactile_decoder_export_matches_numpy_pca(tmp_path, dataset, tiny_config):
    """Tactile contact: the PCA + normalisation baked into decoder_step.onnx equal the
    dataset-side numpy path, so the fast loop can feed raw marker fields."""
    from policy.rdp.export import export_checkpoint
    from policy.rdp.train import train

    cfg = tiny_config("rdp_tokenizer", data={"contact": "tactile", "tactile_pca_dim": 5}, train={"epochs": 1})
    train("tokenizer", dataset, tmp_path / "tok", cfg, progress=False)
    export_checkpoint(tmp_path / "tok", tmp_path / "onnx")
    ck = load_checkpoint(tmp_path / "tok")
    tok, norm = ck.model.eval(), ck.normalizer
    rng = np.random.default_rng(4)
    raw = rng.normal(0, 0.3, (16, 32)).astype(np.float32)  # 8 markers x (x, y, dx, dy)
    lat = rng.normal(size=(4, tok.cfg.latent_dim)).astype(np.float32)
    feat = norm.normalize("contact", norm.tactile_embedding(raw, 1))
    assert feat.shape == (16, 5)
    with torch.no_grad():
        ref = norm.unnormalize("action", tok.decode(torch.from_numpy(lat)[None], torch.from_numpy(feat)[None])[0].numpy())
    dec = DecoderRuntime(tmp_path / "onnx")
    assert dec.contact_dim == 32
    assert np.abs(dec.decode_chunk(lat, raw) - ref).max() < 1e-4
    assert np.abs(TorchDecoderRuntime(tmp_path / "tok").decode_chunk(lat, raw) - ref).max() < 1e-4

"""Export a checkpoint to ONNX: the decoder step, the observation encoder and the denoiser.

``export_checkpoint(CKPT, OUT)`` writes into OUT:

* ``decoder_step.onnx`` (rdp_tokenizer, rdp_ldp): one control tick, recurrent state explicit
    inputs:  latent  (B, Dz)      float32  latent slice z[t // compression], tokenizer units
             contact (B, Craw)    float32  raw wrench (A*6: N, N m, tool frame) or raw marker
                                           fields (A*N*4: x, y, dx, dy); normalisation and the
                                           tactile PCA are inside the graph
             step    (B, 1)       float32  control step index t within the chunk (0 .. H-1)
             state   (B, hidden)  float32  GRU state (zeros at chunk start)
    outputs: action  (B, A*9)     float32  target pose relative to the TCP pose at chunk start
                                           (position m + 6-D rotation per arm), un-normalised
             state_out (B, hidden)
* ``obs_encoder.onnx`` (rdp_ldp, dp): raw observations -> conditioning vector
    inputs:  images   (B, n_cam, n_obs, 3, h, w) uint8 RGB (only when the model has cameras)
             tcp_pose (B, n_obs, A*7) float32 world frame, quaternion x, y, z, w
             contact  (B, Ch, Craw)  float32 raw, as above
    outputs: cond (B, G)
* ``denoiser.onnx`` (rdp_ldp, dp): the UNet, one evaluation
    inputs:  sample (B, T, C) float32 normalised noisy target, timestep (B,) int64, cond (B, G)
    outputs: eps (B, T, C)
* ``action_encoder.onnx`` (rdp_tokenizer, rdp_ldp): the tokenizer's encoder, for inpainting
  a latent chunk (:mod:`policy.rdp.handover`)
    inputs:  action (B, H, A*9) float32 relative actions, un-normalised (as the decoder outputs)
    outputs: latent (B, H/c, Dz)  the posterior mean, tokenizer units (what the LDP predicts)
* ``runtime.json``: shapes, names, scheduler settings and the target's normalisation; read
  by :mod:`policy.rdp.runtime`.

After writing, each graph is run with onnxruntime against torch on random inputs; a
difference above ``tolerance`` (1e-4) is an error.
"""
from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import torch
from torch import nn

from .checkpoint import Checkpoint, load_checkpoint
from .contract import window_meta
from .models import ContactFeaturizer, ProprioFeaturizer

OPSET = 17
TOLERANCE = 1e-4


class DecoderStepExport(nn.Module):
    """Raw contact in, un-normalised relative action out (see module docstring)."""

    def __init__(self, ckpt: Checkpoint) -> None:
        super().__init__()
        cfg = ckpt.config
        self.tok = ckpt.model.eval()
        self.contact = ContactFeaturizer(ckpt.normalizer, cfg.data.contact, int(cfg.shapes["num_arms"]))
        m, s = ckpt.normalizer.mean_std("action")
        self.register_buffer("a_mean", torch.as_tensor(m))
        self.register_buffer("a_std", torch.as_tensor(s))

    def forward(self, latent, contact, step, state):
        a, h = self.tok.step(latent, self.contact(contact), step, state)
        return a * self.a_std + self.a_mean, h


class ActionEncoderExport(nn.Module):
    """Un-normalised relative actions in, the tokenizer's latent mean out (see module docstring)."""

    def __init__(self, ckpt: Checkpoint) -> None:
        super().__init__()
        self.tok = ckpt.model.eval()
        m, s = ckpt.normalizer.mean_std("action")
        self.register_buffer("a_mean", torch.as_tensor(m))
        self.register_buffer("a_std", torch.as_tensor(s))

    def forward(self, action):
        return self.tok.encode((action - self.a_mean) / self.a_std)[0]


class ObsEncoderExport(nn.Module):
    def __init__(self, ckpt: Checkpoint, model: nn.Module) -> None:
        super().__init__()
        cfg = ckpt.config
        a = int(cfg.shapes["num_arms"])
        self.enc = model.obs_encoder
        self.proprio = ProprioFeaturizer(ckpt.normalizer, a)
        self.contact = ContactFeaturizer(ckpt.normalizer, cfg.data.contact, a)
        self.has_images = self.enc.n_cameras > 0
        self.use_contact = bool(cfg.obs.use_contact)

    @property
    def input_names(self) -> list[str]:
        return (["images"] if self.has_images else []) + ["tcp_pose"] + (["contact"] if self.use_contact else [])

    def forward(self, *args):
        args = list(args)
        images = args.pop(0) if self.has_images else None
        tcp_pose = args.pop(0)
        contact = self.contact(args.pop(0)) if self.use_contact else None
        return self.enc(images, self.proprio(tcp_pose), contact)


class DenoiserExport(nn.Module):
    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.unet = model.unet

    def forward(self, sample, timestep, cond):
        return self.unet(sample, timestep.to(torch.float32), cond)


def _export(module: nn.Module, args: tuple, path: Path, inputs: list[str], outputs: list[str]) -> None:
    dyn = {n: {0: "batch"} for n in inputs + outputs}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(module, args, str(path), input_names=inputs, output_names=outputs,
                          dynamic_axes=dyn, opset_version=OPSET, dynamo=False)


def _verify(module: nn.Module, args: tuple, path: Path, inputs: list[str], tolerance: float) -> float:
    import onnxruntime as ort

    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    feed = {n: a.numpy() for n, a in zip(inputs, args)}
    got = sess.run(None, feed)
    with torch.no_grad():
        ref = module(*args)
    ref = ref if isinstance(ref, (tuple, list)) else (ref,)
    err = max(float(np.max(np.abs(g - r.numpy()))) for g, r in zip(got, ref))
    if not err <= tolerance:
        raise ValueError(f"{path.name}: onnxruntime and torch differ by {err:.3g} (> {tolerance:g})")
    return err


def decoder_example(ckpt: Checkpoint, batch: int = 2, seed: int = 0) -> tuple:
    cfg = ckpt.config
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(batch, cfg.tokenizer.latent_dim, generator=g),
            torch.randn(batch, int(cfg.shapes["contact_raw_dim"]), generator=g),
            torch.randint(0, cfg.data.horizon, (batch, 1), generator=g).float(),
            torch.randn(batch, cfg.tokenizer.hidden, generator=g) * 0.5)


def obs_example(ckpt: Checkpoint, batch: int = 1, seed: int = 0) -> tuple:
    cfg, s = ckpt.config, ckpt.config.shapes
    d = cfg.data
    g = torch.Generator().manual_seed(seed)
    a = int(s["num_arms"])
    pose = torch.randn(batch, d.n_obs_steps, a * 7, generator=g) * 0.1
    pose[..., 6::7] += 1.0
    contact = torch.randn(batch, d.contact_history, int(s["contact_raw_dim"]), generator=g)
    args: tuple = (pose, contact)
    if s.get("cameras"):
        img = torch.randint(0, 256, (batch, len(s["cameras"]), d.n_obs_steps, 3, *d.image_size), generator=g, dtype=torch.uint8)
        args = (img, *args)
    return args


def export_checkpoint(ckpt_dir: str | Path, out: str | Path, tolerance: float = TOLERANCE) -> dict:
    """Write the ONNX files and runtime.json for a checkpoint; returns runtime.json's content."""
    ckpt = load_checkpoint(ckpt_dir)
    cfg = ckpt.config
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    meta: dict = {
        "format_version": 1, "model_type": cfg.model_type, "source": str(Path(ckpt_dir).resolve()),
        "shapes": cfg.shapes, "contact": cfg.data.contact, "horizon": cfg.data.horizon,
        **window_meta(cfg.data), "image_size": list(cfg.data.image_size),
        "fps": cfg.shapes.get("fps"), "files": {}, "max_abs_error": {},
    }
    tok = ckpt if cfg.model_type == "rdp_tokenizer" else ckpt.tokenizer
    if tok is not None:
        tcfg = tok.config
        meta.update({"compression": tcfg.tokenizer.compression, "latent_dim": tcfg.tokenizer.latent_dim,
                     "latent_steps": tcfg.latent_steps, "hidden": tcfg.tokenizer.hidden})
        mod = DecoderStepExport(tok).eval()
        args = decoder_example(tok)
        names = ["latent", "contact", "step", "state"]
        _export(mod, args, out / "decoder_step.onnx", names, ["action", "state_out"])
        meta["files"]["decoder_step"] = "decoder_step.onnx"
        meta["max_abs_error"]["decoder_step"] = _verify(mod, args, out / "decoder_step.onnx", names, tolerance)
        enc = ActionEncoderExport(tok).eval()
        eargs = (torch.randn(2, tcfg.data.horizon, enc.a_mean.shape[-1], generator=torch.Generator().manual_seed(2)) * 0.02,)
        _export(enc, eargs, out / "action_encoder.onnx", ["action"], ["latent"])
        meta["files"]["action_encoder"] = "action_encoder.onnx"
        meta["max_abs_error"]["action_encoder"] = _verify(enc, eargs, out / "action_encoder.onnx", ["action"], tolerance)
    if cfg.model_type in ("rdp_ldp", "dp"):
        model = ckpt.model_for_inference()
        enc = ObsEncoderExport(ckpt, model).eval()
        names = enc.input_names
        args = obs_example(ckpt)
        if not enc.use_contact:
            args = args[:-1]
        _export(enc, args, out / "obs_encoder.onnx", names, ["cond"])
        meta["files"]["obs_encoder"] = "obs_encoder.onnx"
        meta["max_abs_error"]["obs_encoder"] = _verify(enc, args, out / "obs_encoder.onnx", names, tolerance)
        den = DenoiserExport(model).eval()
        g = torch.Generator().manual_seed(1)
        dargs = (torch.randn(2, model.target_len, model.target_dim, generator=g),
                 torch.tensor([3, 70], dtype=torch.int64), torch.randn(2, model.obs_encoder.cond_dim, generator=g))
        dnames = ["sample", "timestep", "cond"]
        _export(den, dargs, out / "denoiser.onnx", dnames, ["eps"])
        meta["files"]["denoiser"] = "denoiser.onnx"
        meta["max_abs_error"]["denoiser"] = _verify(den, dargs, out / "denoiser.onnx", dnames, tolerance)
        target = "latent" if cfg.model_type == "rdp_ldp" else "action"
        m, s = ckpt.normalizer.mean_std(target)
        meta.update({"target": target, "target_len": model.target_len, "target_dim": model.target_dim,
                     "cond_dim": model.obs_encoder.cond_dim, "target_norm": {"mean": m.tolist(), "std": s.tolist()},
                     "diffusion": cfg.diffusion.to_dict(), "cameras": list(cfg.shapes.get("cameras", []))})
    (out / "runtime.json").write_text(json.dumps(meta, indent=1))
    ckpt.normalizer.save(out / "normalizer.json")
    return meta

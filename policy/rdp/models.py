"""Model construction from a :class:`PolicyConfig`, and the raw-unit featurisers that make
the exported graphs take sensor values directly (normalisation baked in)."""
from __future__ import annotations

import torch
from torch import nn

from slowfast_data.geometry import rot6d_to_matrix_torch  # noqa: F401  (re-exported for runtime users)

from .config import PolicyConfig
from .diffusion import DiffusionModel, ObsEncoder
from .normalizer import Normalizer
from .tokenizer import AsymmetricTokenizer


def _shape(cfg: PolicyConfig, key: str) -> int:
    if key not in cfg.shapes:
        raise ValueError(f"config.shapes has no {key!r}: the model was never fitted to a dataset")
    return int(cfg.shapes[key])


def build_model(cfg: PolicyConfig, normalizer: Normalizer | None = None) -> nn.Module:
    """The trainable module of ``cfg.model_type`` (tokenizer, or a DiffusionModel)."""
    d = cfg.data
    if cfg.model_type == "rdp_tokenizer":
        return AsymmetricTokenizer(cfg.tokenizer, _shape(cfg, "action_dim"), _shape(cfg, "contact_dim"), d.horizon)
    img = {}
    if normalizer is not None and "image" in normalizer:
        m, s = normalizer.mean_std("image")
        img = {"image_mean": tuple(float(v) for v in m), "image_std": tuple(float(v) for v in s)}
    enc = ObsEncoder(cfg.obs, len(cfg.shapes.get("cameras", [])), d.n_obs_steps, _shape(cfg, "proprio_dim"),
                     _shape(cfg, "contact_dim"), d.contact_history, **img)
    if cfg.model_type == "rdp_ldp":
        return DiffusionModel(enc, cfg.latent_steps, cfg.tokenizer.latent_dim, cfg.unet, cfg.diffusion)
    return DiffusionModel(enc, d.horizon, _shape(cfg, "action_dim"), cfg.unet, cfg.diffusion)


def quat_to_matrix_torch(q: torch.Tensor) -> torch.Tensor:
    """(..., 4) x, y, z, w -> (..., 3, 3), branch-free (exports to ONNX)."""
    q = q / q.norm(dim=-1, keepdim=True).clamp_min(1e-12)
    x, y, z, w = q.unbind(-1)
    rows = [1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w),
            2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w),
            2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)]
    return torch.stack(rows, dim=-1).reshape(q.shape[:-1] + (3, 3))


class ProprioFeaturizer(nn.Module):
    """Raw TCP poses (..., A*7) -> normalised position + 6-D rotation (..., A*9)."""

    def __init__(self, normalizer: Normalizer, num_arms: int) -> None:
        super().__init__()
        m, s = normalizer.mean_std("proprio")
        self.num_arms = num_arms
        self.register_buffer("mean", torch.as_tensor(m))
        self.register_buffer("std", torch.as_tensor(s))

    def forward(self, pose: torch.Tensor) -> torch.Tensor:
        p = pose.reshape(pose.shape[:-1] + (self.num_arms, 7))
        r = quat_to_matrix_torch(p[..., 3:])
        feat = torch.cat([p[..., :3], r[..., :, 0], r[..., :, 1]], dim=-1)
        feat = feat.reshape(pose.shape[:-1] + (self.num_arms * 9,))
        return (feat - self.mean) / self.std


class ContactFeaturizer(nn.Module):
    """Raw contact (..., A*6 wrench or A*N*4 marker fields) -> normalised feature (..., Dc)."""

    def __init__(self, normalizer: Normalizer, kind: str, num_arms: int) -> None:
        super().__init__()
        self.kind, self.num_arms = kind, num_arms
        m, s = normalizer.mean_std("contact")
        self.register_buffer("mean", torch.as_tensor(m))
        self.register_buffer("std", torch.as_tensor(s))
        if kind == "tactile":
            pca = normalizer.contact_pca
            if pca is None:
                raise ValueError("tactile contact needs the PCA in normalizer.json (contact_pca)")
            self.register_buffer("pca_mean", torch.as_tensor(pca["mean"]))
            self.register_buffer("pca_components", torch.as_tensor(pca["components"]))

    def forward(self, raw: torch.Tensor) -> torch.Tensor:
        if self.kind == "tactile":
            t = raw.reshape(raw.shape[:-1] + (self.num_arms, -1, 4))
            off = t[..., 2:4].reshape(raw.shape[:-1] + (self.num_arms, -1))
            emb = (off - self.pca_mean) @ self.pca_components.T
            raw = emb.reshape(raw.shape[:-1] + (-1,))
        return (raw - self.mean) / self.std

"""Normalisation statistics fitted on the data, saved with every checkpoint (normalizer.json).

Each entry is ``{"mean": [...], "std": [...]}`` with ``normalize(x) = (x - mean) / std``
(std floored at ``STD_FLOOR`` when fitted). Entries used by the RDP models:

* ``action``   relative action, position + 6-D rotation per arm (A*9)
* ``proprio``  absolute TCP pose as position + 6-D rotation per arm (A*9), world frame
* ``contact``  per-step contact feature: wrench (A*6) or tactile PCA embedding (A*k)
* ``latent``   tokenizer latent (latent_dim), LDP only
* ``image``    per channel mean/std of RGB in [0, 1] (3)

``contact_pca`` (tactile only): ``{"mean": [2N], "components": [k][2N], "markers": N}``:
embedding of one arm = components @ (offsets - mean), offsets = (dx0, dy0, dx1, dy1, ...).
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from slowfast_data.fileio import read_json

STD_FLOOR = 1e-3


class Normalizer:
    def __init__(self, stats: dict | None = None, contact_pca: dict | None = None) -> None:
        self.stats: dict[str, dict[str, np.ndarray]] = {}
        for k, v in (stats or {}).items():
            self.stats[k] = {"mean": np.asarray(v["mean"], np.float32), "std": np.asarray(v["std"], np.float32)}
        self.contact_pca = None
        if contact_pca is not None:
            self.contact_pca = {"mean": np.asarray(contact_pca["mean"], np.float32),
                                "components": np.asarray(contact_pca["components"], np.float32),
                                "markers": int(contact_pca["markers"])}

    # -- fitting
    def fit(self, name: str, x: np.ndarray, axis=0) -> None:
        x = np.asarray(x, np.float64)
        x = x.reshape(-1, x.shape[-1])
        if not np.all(np.isfinite(x)):
            raise ValueError(f"normalizer {name!r}: data contains NaN or infinite values")
        self.stats[name] = {"mean": x.mean(0).astype(np.float32),
                            "std": np.maximum(x.std(0), STD_FLOOR).astype(np.float32)}

    def fit_contact_pca(self, tactile: np.ndarray, num_arms: int, dim: int) -> None:
        """Fit the tactile PCA on raw marker fields (T, A*N*4), pooled over arms."""
        off = tactile_offsets(tactile, num_arms)            # (T, A, 2N)
        x = off.reshape(-1, off.shape[-1]).astype(np.float64)
        if dim > x.shape[1]:
            raise ValueError(f"data.tactile_pca_dim = {dim}: must be <= 2 * markers = {x.shape[1]}")
        mean = x.mean(0)
        _, _, vt = np.linalg.svd(x - mean, full_matrices=False)
        comps = vt[:dim]
        # sign convention: largest-magnitude entry of each component is positive (reproducible)
        comps *= np.sign(comps[np.arange(dim), np.abs(comps).argmax(1)])[:, None]
        self.contact_pca = {"mean": mean.astype(np.float32), "components": comps.astype(np.float32),
                            "markers": off.shape[-1] // 2}

    # -- use
    def __contains__(self, name: str) -> bool:
        return name in self.stats

    def mean_std(self, name: str) -> tuple[np.ndarray, np.ndarray]:
        if name not in self.stats:
            raise ValueError(f"normalizer has no statistics for {name!r} (has {sorted(self.stats)})")
        return self.stats[name]["mean"], self.stats[name]["std"]

    def normalize(self, name: str, x):
        m, s = self.mean_std(name)
        if hasattr(x, "dtype") and not isinstance(x, np.ndarray):  # torch
            import torch
            return (x - torch.as_tensor(m, device=x.device)) / torch.as_tensor(s, device=x.device)
        return ((np.asarray(x, np.float32) - m) / s).astype(np.float32)

    def unnormalize(self, name: str, x):
        m, s = self.mean_std(name)
        if hasattr(x, "dtype") and not isinstance(x, np.ndarray):
            import torch
            return x * torch.as_tensor(s, device=x.device) + torch.as_tensor(m, device=x.device)
        return (np.asarray(x, np.float32) * s + m).astype(np.float32)

    def tactile_embedding(self, tactile: np.ndarray, num_arms: int) -> np.ndarray:
        """Raw marker fields (..., A*N*4) -> PCA embedding (..., A*k) (not normalised)."""
        if self.contact_pca is None:
            raise ValueError("normalizer has no tactile PCA (the model was trained on wrench)")
        off = tactile_offsets(tactile, num_arms)
        emb = (off - self.contact_pca["mean"]) @ self.contact_pca["components"].T
        return emb.reshape(emb.shape[:-2] + (-1,)).astype(np.float32)

    # -- io
    def to_dict(self) -> dict:
        d = {"stats": {k: {"mean": v["mean"].tolist(), "std": v["std"].tolist()} for k, v in self.stats.items()}}
        if self.contact_pca is not None:
            d["contact_pca"] = {"mean": self.contact_pca["mean"].tolist(),
                                "components": self.contact_pca["components"].tolist(),
                                "markers": self.contact_pca["markers"]}
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "Normalizer":
        return cls(d.get("stats", {}), d.get("contact_pca"))

    def save(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps(self.to_dict()))

    @classmethod
    def load(cls, path: str | Path) -> "Normalizer":
        return cls.from_dict(read_json(path))


def tactile_offsets(tactile: np.ndarray, num_arms: int) -> np.ndarray:
    """(..., A*N*4) marker fields x, y, dx, dy -> (..., A, 2N) offsets dx, dy."""
    t = np.asarray(tactile, np.float32)
    if t.shape[-1] % (4 * num_arms):
        raise ValueError(f"tactile vector of length {t.shape[-1]} is not A*N*4 with A = {num_arms}")
    t = t.reshape(t.shape[:-1] + (num_arms, -1, 4))
    return t[..., 2:4].reshape(t.shape[:-2] + (-1,))

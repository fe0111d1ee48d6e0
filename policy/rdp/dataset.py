"""Cut training samples from a LeRobot-v3.0-layout dataset (read by
:class:`slowfast_data.reader.LeRobotDataset`) for the tokenizer, the latent diffusion policy and the DP baseline.

A sample taken at frame ``i`` of an episode (all values normalised with the checkpoint's
:class:`~policy.rdp.normalizer.Normalizer`):

* ``action``        (H, A*9)  target poses of frames i .. i+H-1 relative to the TCP pose at
                              frame i (the chunk start): position + 6-D rotation per arm
* ``contact``       (H, Dc)   contact signal at frames i .. i+H-1 (decoder input, per step)
* ``obs_proprio``   (n_obs, A*9)  TCP pose at frames i-(n_obs-1)*stride .. i, world frame
* ``obs_contact``   (Ch, Dc)  contact at frames i-Ch+1 .. i
* ``obs_images``    (n_cam, n_obs, 3, h, w) uint8, cameras in config order

Indices before the episode start repeat its first frame, indices after its end its last.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np

from slowfast_data.features import ACTION_KEY, IMAGE_PREFIX, POSE_KEY, TACTILE_KEY
from slowfast_data.geometry import pose_to_pos_rot6d
from slowfast_data.reader import LeRobotDataset

from . import contract
from .config import PolicyConfig
from .normalizer import Normalizer



def split_episodes(ep_ids: Sequence[int], val_fraction: float, seed: int) -> tuple[list[int], list[int]]:
    """Hold out round(val_fraction * E) episodes (at least 1 when > 0 and E >= 2), chosen by seed."""
    ep_ids = list(ep_ids)
    if val_fraction <= 0 or len(ep_ids) < 2:
        return ep_ids, []
    n_val = min(len(ep_ids) - 1, max(1, int(round(val_fraction * len(ep_ids)))))
    perm = np.random.default_rng(seed).permutation(len(ep_ids))
    val = sorted(ep_ids[i] for i in perm[:n_val])
    return [e for e in ep_ids if e not in val], val


def required_keys(cfg: PolicyConfig) -> list[str]:
    keys = [POSE_KEY, ACTION_KEY, contract.CONTACT_FEATURES[cfg.data.contact]]
    keys += [IMAGE_PREFIX + c for c in cfg.data.cameras]
    return keys


class ChunkSamples:
    """Training samples (a map-style dataset usable with torch's DataLoader).

    Build with :meth:`fit` (fits the normaliser and fills ``cfg.shapes``) or with a
    checkpoint's normaliser and config (validates the dataset against ``cfg.shapes``).
    """

    def __init__(self, ds: LeRobotDataset, cfg: PolicyConfig, normalizer: Normalizer,
                 episodes: Sequence[int] | None = None, images: bool | None = None) -> None:
        self.ds, self.cfg, self.norm = ds, cfg, normalizer
        d = cfg.data
        self.episodes = list(ds.ep_ids if episodes is None else episodes)
        self.use_images = (cfg.model_type != "rdp_tokenizer") if images is None else images
        # The model's camera order (fixed when it was fitted) wins over the dataset's.
        self.cameras = list(d.cameras) or list(cfg.shapes.get("cameras") or ds.cameras)
        if self.use_images:
            missing = [c for c in self.cameras if c not in ds.cameras]
            if missing:
                raise ValueError(f"{ds.root}: dataset is missing camera(s) {missing} (has {ds.cameras})")
        check_shapes(ds, cfg)
        a = ds.num_arms
        pose = ds.data[POSE_KEY]
        self.proprio = normalizer.normalize("proprio", pose_to_pos_rot6d(pose))
        self.contact = normalizer.normalize("contact", contact_features(ds, cfg, normalizer))
        self.pose, self.action = pose, ds.data[ACTION_KEY]
        self.window = contract.ObservationWindow.from_config(d, ds.fps)
        self.index = np.concatenate([np.arange(ds.ep_start[e], ds.ep_end[e]) for e in self.episodes]) \
            if self.episodes else np.zeros(0, np.int64)
        self.num_arms = a

    @staticmethod
    def fit(ds: LeRobotDataset, cfg: PolicyConfig, episodes: Sequence[int], seed: int = 0,
            normalizer: Normalizer | None = None) -> Normalizer:
        """Fit the normaliser on ``episodes`` and record the dataset's shapes in ``cfg.shapes``."""
        norm = normalizer or Normalizer()
        d, a = cfg.data, ds.num_arms
        rows = np.concatenate([np.arange(ds.ep_start[e], ds.ep_end[e]) for e in episodes])
        # Entries already present (an LDP starts from its tokenizer's) are kept, not refitted.
        if d.contact == "tactile" and norm.contact_pca is None:
            norm.fit_contact_pca(ds.data[TACTILE_KEY][rows], a, d.tactile_pca_dim)
        if "proprio" not in norm:
            norm.fit("proprio", pose_to_pos_rot6d(ds.data[POSE_KEY][rows]))
        if "contact" not in norm:
            norm.fit("contact", contact_features(ds, cfg, norm)[rows])
        if "action" not in norm:
            rng = np.random.default_rng(seed)
            starts = rng.choice(rows, size=min(len(rows), 4096), replace=False)
            norm.fit("action", np.stack([relative_chunk(ds, int(i), cfg.data.horizon) for i in starts]))
        if "image" not in norm:  # fixed: RGB in [0, 1] -> about [-2, 2]
            norm.stats["image"] = {"mean": np.array([0.5, 0.5, 0.5], np.float32),
                                   "std": np.array([0.25, 0.25, 0.25], np.float32)}
        cams = list(d.cameras) or list(ds.cameras)
        cfg.shapes.update({
            "fps": ds.fps, "arms": ds.arms, "num_arms": a, "action_dim": a * contract.ACTION_WIDTH,
            "proprio_dim": a * contract.ACTION_WIDTH,
            "contact_raw_dim": contract.contact_width(d.contact, a, ds.tactile_markers),
            "contact_dim": a * (6 if d.contact == "wrench" else d.tactile_pca_dim),
            "tactile_markers": ds.tactile_markers, "cameras": cams if cfg.model_type != "rdp_tokenizer" else [],
        })
        return norm

    def __len__(self) -> int:
        return len(self.index)

    def _frames(self, i: int, offsets: np.ndarray) -> np.ndarray:
        e = int(self.ds.episode_index[i])
        return contract.episode_rows(i, offsets, self.ds.ep_start[e], self.ds.ep_end[e])

    def raw_observation(self, k: int) -> dict:
        """Sample k's observation before normalisation, as the runtime's observation builder
        (:meth:`policy.serving.SlowPlanner.observation`) makes it from a live stream:
        ``tcp_pose`` (n_obs, A*7), ``contact`` (Ch, Craw) float32, and ``image_frames`` (n_obs,)
        the episode frames of the images."""
        i = int(self.index[k])
        obs, hist = self._frames(i, self.window.obs_offsets), self._frames(i, self.window.contact_offsets)
        e = int(self.ds.episode_index[i])
        return {"tcp_pose": self.pose[obs], "contact": self.ds.data[contract.CONTACT_FEATURES[self.cfg.data.contact]][hist],
                "image_frames": obs - self.ds.ep_start[e]}

    def preload(self) -> None:
        """Decode every video this sample set needs (otherwise decoded on first use)."""
        if self.use_images:
            for e in self.episodes:
                for c in self.cameras:
                    self.ds.video(c, e, self.cfg.data.image_size)

    def action_chunk(self, k: int) -> np.ndarray:
        """Normalised relative action chunk (H, A*9) of sample k."""
        return self.norm.normalize("action", relative_chunk(self.ds, int(self.index[k]), self.cfg.data.horizon))

    def __getitem__(self, k: int) -> dict:
        d = self.cfg.data
        i = int(self.index[k])
        h = d.horizon
        act = self.norm.normalize("action", relative_chunk(self.ds, i, d.horizon))
        fut = self._frames(i, np.arange(h))
        obs = self._frames(i, self.window.obs_offsets)
        hist = self._frames(i, self.window.contact_offsets)
        out = {"action": act, "contact": self.contact[fut], "obs_proprio": self.proprio[obs],
               "obs_contact": self.contact[hist]}
        if self.use_images and self.cameras:
            e = int(self.ds.episode_index[i])
            local = obs - self.ds.ep_start[e]
            out["obs_images"] = np.stack([
                self.ds.video(c, e, d.image_size)[local].transpose(0, 3, 1, 2) for c in self.cameras])
        return out


def relative_chunk(ds: LeRobotDataset, i: int, horizon: int) -> np.ndarray:
    """The un-normalised training target at row ``i``: the actions of rows i .. i+horizon-1
    (the episode's last repeated) relative to the TCP pose of row i, (horizon, A*9)."""
    e = int(ds.episode_index[i])
    return contract.relative_chunk(ds.data[ACTION_KEY], ds.data[POSE_KEY], i, horizon, ds.ep_start[e], ds.ep_end[e])


def contact_features(ds: LeRobotDataset, cfg: PolicyConfig, norm: Normalizer) -> np.ndarray:
    """Un-normalised per-frame contact feature (T, Dc): wrench, or tactile PCA embedding."""
    raw = ds.data[contract.CONTACT_FEATURES[cfg.data.contact]]
    return raw if cfg.data.contact == "wrench" else norm.tactile_embedding(raw, ds.num_arms)


def check_shapes(ds: LeRobotDataset, cfg: PolicyConfig) -> None:
    """Raise ValueError when the dataset does not match what the model was built for."""
    s = cfg.shapes
    if not s:
        return
    if abs(float(s.get("fps", ds.fps)) - ds.fps) > 1e-6 * ds.fps:
        raise ValueError(f"{ds.root}: dataset fps {ds.fps:g} does not match the model's {s['fps']:g}")
    if s.get("num_arms", ds.num_arms) != ds.num_arms:
        raise ValueError(f"{ds.root}: dataset has {ds.num_arms} arm(s), the model {s['num_arms']}")
    if cfg.data.contact == "tactile" and s.get("tactile_markers", ds.tactile_markers) != ds.tactile_markers:
        raise ValueError(f"{ds.root}: dataset has {ds.tactile_markers} tactile markers, the model {s['tactile_markers']}")

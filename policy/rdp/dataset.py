"""Read a LeRobot-v3.0-layout dataset (written by ``teleop_tactar.dataset.DatasetWriter``)
and cut training samples for the tokenizer, the latent diffusion policy and the DP baseline.

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

from pathlib import Path
from typing import Sequence

import numpy as np

from policy.fileio import read_json

from .config import PolicyConfig
from .geometry import absolute_to_relative, pose_to_pos_rot6d
from .normalizer import Normalizer

IMAGE_PREFIX = "observation.images."
POSE_KEY, ACTION_KEY, WRENCH_KEY, TACTILE_KEY = "observation.tcp_pose", "action", "observation.wrench", "observation.tactile"
RATE_TOLERANCE = 0.05  # relative tolerance on frame intervals vs 1/fps


class LeRobotDataset:
    """All float features of a v3.0 dataset in memory, plus the episode table.

    Args:
        root: dataset folder.
        require: feature keys that must exist (ValueError naming every missing one).
        fps: expected frame rate (ValueError when the dataset's differs), or None.
    """

    def __init__(self, root: str | Path, require: Sequence[str] = (), fps: float | None = None) -> None:
        import pandas as pd

        self.root = Path(root)
        info_path = self.root / "meta" / "info.json"
        if not info_path.is_file():
            raise ValueError(f"{self.root}: not a LeRobot dataset (no meta/info.json)")
        info = read_json(info_path)
        self.info = info
        for key in ("codebase_version", "fps", "features", "data_path", "total_episodes"):
            if key not in info:
                raise ValueError(f"{info_path}: missing field {key!r}")
        if not str(info["codebase_version"]).startswith("v3"):
            raise ValueError(f"{info_path}: codebase_version {info['codebase_version']!r}, expected v3.x")
        self.fps = float(info["fps"])
        if fps is not None and abs(self.fps - float(fps)) > 1e-6 * max(1.0, fps):
            raise ValueError(f"{self.root}: dataset fps {self.fps:g} does not match the expected {float(fps):g}")
        self.features: dict = info["features"]
        missing = [k for k in require if k not in self.features]
        if missing:
            raise ValueError(f"{self.root}: dataset is missing feature(s) {missing} "
                             f"(has {sorted(k for k in self.features if '.' in k or k == 'action')})")
        # slowfast's facts LeRobot has no info key for: meta/slowfast.json (older datasets kept
        # them in info.json); for a dataset from elsewhere, the arms from the pose's names
        side_path = self.root / "meta" / "slowfast.json"
        side = read_json(side_path) if side_path.is_file() else info
        names = self.features.get(POSE_KEY, {}).get("names") or []
        from_names = list(dict.fromkeys(n.rsplit(".", 1)[0] for n in names if "." in n))
        self.arms: list[str] = list(side.get("arms") or from_names or ["arm"])
        self.num_arms = len(self.arms)
        markers = side.get("tactile_markers")
        if markers is None and TACTILE_KEY in self.features:
            markers = int(self.features[TACTILE_KEY]["shape"][0]) // (4 * self.num_arms)
        self.tactile_markers = int(markers or 0)
        self._check_shapes()
        for k, f in self.features.items():
            if f.get("dtype") == "video":
                vfps = (f.get("info") or {}).get("video.fps")
                if vfps is not None and abs(float(vfps) - self.fps) > 1e-6 * self.fps:
                    raise ValueError(f"{self.root}: video {k!r} is at {vfps} fps, dataset fps is {self.fps:g}")

        ep_path = self.root / "meta" / "episodes" / "chunk-000" / "file-000.parquet"
        ep_files = sorted((self.root / "meta" / "episodes").glob("chunk-*/file-*.parquet"))
        if not ep_files:
            raise ValueError(f"{self.root}: missing {ep_path.relative_to(self.root)}")
        self.episodes = pd.concat([pd.read_parquet(p) for p in ep_files]).sort_values("episode_index").reset_index(drop=True)
        float_keys = [k for k in self.features if self.features[k].get("dtype") != "video"
                      and k not in ("index", "episode_index", "frame_index", "timestamp", "task_index")]
        self.float_keys = float_keys
        self.video_keys = [k for k, f in self.features.items() if f.get("dtype") == "video"]
        frames = []
        files = sorted({(int(r["data/chunk_index"]), int(r["data/file_index"])) for _, r in self.episodes.iterrows()})
        for c, f in files:
            p = self.root / info["data_path"].format(chunk_index=c, file_index=f)
            if not p.is_file():
                raise ValueError(f"{self.root}: data file {p.relative_to(self.root)} is missing")
            df = pd.read_parquet(p)
            absent = [k for k in ["episode_index", "frame_index", "timestamp", *float_keys] if k not in df.columns]
            if absent:
                raise ValueError(f"{p}: missing column(s) {absent}")
            frames.append(df)
        df = pd.concat(frames).sort_values(["episode_index", "frame_index"]).reset_index(drop=True)
        self.data: dict[str, np.ndarray] = {}
        for k in float_keys:
            arr = np.stack(df[k].to_numpy()).astype(np.float32).reshape(len(df), -1)
            if arr.shape[1] != int(np.prod(self.features[k]["shape"])):
                raise ValueError(f"{self.root}: column {k!r} has width {arr.shape[1]}, "
                                 f"info.json says shape {self.features[k]['shape']}")
            bad = ~np.isfinite(arr).all(axis=1)
            if bad.any():
                i = int(np.flatnonzero(bad)[0])
                raise ValueError(f"{self.root}: feature {k!r} has NaN or infinite values in {int(bad.sum())} frame(s), "
                                 f"first at episode {int(df['episode_index'].iloc[i])} frame {int(df['frame_index'].iloc[i])}")
            self.data[k] = arr
        self.episode_index = df["episode_index"].to_numpy()
        self.timestamp = df["timestamp"].to_numpy().astype(np.float64)
        # Episode boundaries in the concatenated arrays.
        self.ep_ids = [int(e) for e in self.episodes["episode_index"]]
        self.ep_start, self.ep_end = {}, {}
        for e in self.ep_ids:
            idx = np.flatnonzero(self.episode_index == e)
            if len(idx) == 0:
                raise ValueError(f"{self.root}: episode {e} has no frames in the data files")
            self.ep_start[e], self.ep_end[e] = int(idx[0]), int(idx[-1]) + 1
            dt = np.diff(self.timestamp[idx])
            if len(dt) and np.any(np.abs(dt * self.fps - 1.0) > RATE_TOLERANCE):
                bad = float(np.median(dt))
                raise ValueError(f"{self.root}: episode {e} timestamps step {bad:.6g} s "
                                 f"({1 / bad if bad > 0 else float('inf'):.4g} Hz), fps in info.json is {self.fps:g}")
        self.cameras = [k[len(IMAGE_PREFIX):] for k in self.video_keys if k.startswith(IMAGE_PREFIX)]
        self._video_cache: dict[tuple, np.ndarray] = {}

    def _check_shapes(self) -> None:
        a, n = self.num_arms, self.tactile_markers
        expect = {POSE_KEY: a * 7, ACTION_KEY: a * 7, WRENCH_KEY: a * 6}
        if n:
            expect[TACTILE_KEY] = a * n * 4
        for k, width in expect.items():
            if k in self.features:
                got = int(np.prod(self.features[k]["shape"]))
                if got != width:
                    raise ValueError(f"{self.root}: feature {k!r} has shape {self.features[k]['shape']}, "
                                     f"expected [{width}] for {a} arm(s)" + (f" and {n} markers" if k == TACTILE_KEY else ""))
        if TACTILE_KEY in self.features and not n:
            raise ValueError(f"{self.root}: info.json has observation.tactile but no 'tactile_markers'")

    def __len__(self) -> int:
        return len(self.timestamp)

    def video(self, camera: str, episode: int, size: tuple[int, int]) -> np.ndarray:
        """Decoded RGB frames (T, h, w, 3) uint8 of one episode, resized to ``size`` (cached)."""
        import av

        key = (camera, episode, tuple(size))
        if key in self._video_cache:
            return self._video_cache[key]
        vkey = IMAGE_PREFIX + camera
        if vkey not in self.features:
            raise ValueError(f"{self.root}: no camera {camera!r} (has {self.cameras})")
        row = self.episodes[self.episodes["episode_index"] == episode].iloc[0]
        path = self.root / self.info["video_path"].format(
            video_key=vkey, chunk_index=int(row[f"videos/{vkey}/chunk_index"]),
            file_index=int(row[f"videos/{vkey}/file_index"]))
        if not path.is_file():
            raise ValueError(f"{self.root}: video file {path.relative_to(self.root)} is missing")
        t0 = float(row.get(f"videos/{vkey}/from_timestamp", 0.0))
        n = self.ep_end[episode] - self.ep_start[episode]
        out = np.empty((n, size[0], size[1], 3), np.uint8)
        got = 0
        with av.open(str(path)) as container:
            stream = container.streams.video[0]
            rate = float(stream.average_rate or self.fps)
            if abs(rate - self.fps) > 1e-3 * self.fps:
                raise ValueError(f"{path}: video runs at {rate:g} fps, dataset fps is {self.fps:g}")
            for frame in container.decode(stream):
                ts = float(frame.pts * stream.time_base) if frame.pts is not None else got / self.fps + t0
                if ts < t0 - 0.5 / self.fps:
                    continue
                if got >= n:
                    break
                img = frame.to_ndarray(format="rgb24")
                if img.shape[:2] != tuple(size):
                    import cv2
                    img = cv2.resize(img, (size[1], size[0]), interpolation=cv2.INTER_AREA)
                out[got] = img
                got += 1
        if got < n:
            raise ValueError(f"{path}: {got} frames for episode {episode}, expected {n}")
        self._video_cache[key] = out
        return out


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
    keys = [POSE_KEY, ACTION_KEY, WRENCH_KEY if cfg.data.contact == "wrench" else TACTILE_KEY]
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
            "fps": ds.fps, "arms": ds.arms, "num_arms": a, "action_dim": a * 9, "proprio_dim": a * 9,
            "contact_raw_dim": int(ds.data[WRENCH_KEY if d.contact == "wrench" else TACTILE_KEY].shape[1]),
            "contact_dim": a * (6 if d.contact == "wrench" else d.tactile_pca_dim),
            "tactile_markers": ds.tactile_markers, "cameras": cams if cfg.model_type != "rdp_tokenizer" else [],
        })
        return norm

    def __len__(self) -> int:
        return len(self.index)

    def _frames(self, i: int, offsets: np.ndarray) -> np.ndarray:
        e = int(self.ds.episode_index[i])
        return np.clip(i + offsets, self.ds.ep_start[e], self.ds.ep_end[e] - 1)

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
        obs = self._frames(i, -d.obs_stride * np.arange(d.n_obs_steps)[::-1])
        hist = self._frames(i, -np.arange(d.contact_history)[::-1])
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
    fut = np.clip(i + np.arange(horizon), ds.ep_start[e], ds.ep_end[e] - 1)
    return absolute_to_relative(ds.data[ACTION_KEY][fut], ds.data[POSE_KEY][i])


def contact_features(ds: LeRobotDataset, cfg: PolicyConfig, norm: Normalizer) -> np.ndarray:
    """Un-normalised per-frame contact feature (T, Dc): wrench, or tactile PCA embedding."""
    if cfg.data.contact == "wrench":
        return ds.data[WRENCH_KEY]
    return norm.tactile_embedding(ds.data[TACTILE_KEY], ds.num_arms)


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

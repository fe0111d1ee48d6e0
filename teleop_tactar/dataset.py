"""LeRobot-v3.0-layout dataset writer (the format the RDP trainers read).

Layout under ``root``::

    meta/info.json                              codebase_version "v3.0", fps, features, arms, ...
    meta/stats.json                             per feature: mean, std, min, max, count
    meta/tasks.parquet                          index "task" (str), column task_index
    meta/episodes/chunk-000/file-000.parquet    one row per episode (see below)
    data/chunk-{c:03d}/file-{f:03d}.parquet     index, episode_index, frame_index, timestamp,
                                                task_index + every non-video feature
    videos/{video_key}/chunk-{c:03d}/file-{f:03d}.mp4   H.264 (PyAV, libx264), yuv420p

This writer puts one episode per data file and per video file (``file_index`` = episode
index, ``chunk_index`` = episode index // chunks_size), which the v3 layout allows: the
episodes table says where each episode lies (``data/file_index``, ``dataset_from_index``,
``dataset_to_index``, ``videos/<key>/file_index``, ``videos/<key>/from_timestamp``,
``videos/<key>/to_timestamp``).

Feature keys (A arms, in the order of ``info["arms"]``; N tactile markers per arm):

* ``observation.tcp_pose``  float32 (A*7)   position (m) + quaternion x, y, z, w, world frame
* ``observation.wrench``    float32 (A*6)   force (N), torque (N m), tool frame
* ``observation.tactile``   float32 (A*N*4) per marker x, y, dx, dy (``info["tactile_markers"] = N``)
* ``action``                float32 (A*7)   target TCP pose, absolute, world frame
* ``observation.images.<cam>``  video (H, W, 3) uint8 RGB, one frame per dataset frame

Extra float32 features may be added (``extra_features``); they are stored and get stats.
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np

CODEBASE_VERSION = "v3.0"
DATA_PATH = "data/chunk-{chunk_index:03d}/file-{file_index:03d}.parquet"
VIDEO_PATH = "videos/{video_key}/chunk-{chunk_index:03d}/file-{file_index:03d}.mp4"
EPISODES_PATH = "meta/episodes/chunk-000/file-000.parquet"
IMAGE_PREFIX = "observation.images."
#: slowfast's own sidecar: the sim seed of each generated episode (for replaying it on its scene)
EPISODE_SEEDS_PATH = "meta/slowfast_episodes.json"


def standard_features(arms: Sequence[str], tactile_markers: int = 0,
                      cameras: Mapping[str, tuple[int, int]] | None = None,
                      fps: float | None = None) -> dict:
    """The features dict of the contract for ``arms``, N tactile markers and cameras {name: (H, W)}."""
    a = len(arms)

    def names(per_arm: Sequence[str]) -> list[str]:
        return [f"{arm}.{n}" for arm in arms for n in per_arm]

    pose = ["x", "y", "z", "qx", "qy", "qz", "qw"]
    feats = {
        "observation.tcp_pose": {"dtype": "float32", "shape": [a * 7], "names": names(pose)},
        "observation.wrench": {"dtype": "float32", "shape": [a * 6],
                               "names": names(["fx", "fy", "fz", "tx", "ty", "tz"])},
        "action": {"dtype": "float32", "shape": [a * 7], "names": names(pose)},
    }
    if tactile_markers:
        feats["observation.tactile"] = {
            "dtype": "float32", "shape": [a * tactile_markers * 4],
            "names": [f"{arm}.m{i}.{c}" for arm in arms for i in range(tactile_markers) for c in ("x", "y", "dx", "dy")],
        }
    for cam, (h, w) in (cameras or {}).items():
        info = {"video.codec": "h264", "video.pix_fmt": "yuv420p", "video.is_depth_map": False,
                "video.height": int(h), "video.width": int(w), "video.channels": 3}
        if fps is not None:
            info["video.fps"] = float(fps)
        feats[IMAGE_PREFIX + cam] = {"dtype": "video", "shape": [int(h), int(w), 3],
                                     "names": ["height", "width", "channels"], "info": info}
    return feats


class _RunningStats:
    """Mean/std/min/max over the first axis, accumulated in float64."""

    def __init__(self) -> None:
        self.n = 0
        self.s = self.ss = self.lo = self.hi = None

    def add(self, x: np.ndarray) -> None:
        x = np.asarray(x, dtype=np.float64)
        if self.s is None:
            self.s = x.sum(0)
            self.ss = (x * x).sum(0)
            self.lo, self.hi = x.min(0), x.max(0)
        else:
            self.s += x.sum(0)
            self.ss += (x * x).sum(0)
            self.lo, self.hi = np.minimum(self.lo, x.min(0)), np.maximum(self.hi, x.max(0))
        self.n += x.shape[0]

    def result(self) -> dict:
        mean = self.s / self.n
        std = np.sqrt(np.maximum(self.ss / self.n - mean * mean, 0.0))
        return {"mean": mean.tolist(), "std": std.tolist(), "min": self.lo.tolist(),
                "max": self.hi.tolist(), "count": [int(self.n)]}


def check_output_folder(root: str | os.PathLike, overwrite: bool = False) -> Path:
    """Make sure a dataset can be written at ``root`` (creating it): OSError naming it when
    it is not a folder, not writable, or not empty without ``overwrite``."""
    root = Path(root)
    if root.exists() and not root.is_dir():
        raise OSError(f"dataset folder {root}: exists and is not a folder")
    if root.is_dir() and any(root.iterdir()) and not overwrite:
        raise OSError(f"dataset folder {root} exists and is not empty")
    from policy.fileio import writable_folder

    try:
        return writable_folder(root)
    except OSError as exc:
        raise OSError(f"dataset folder {exc}") from None


class DatasetWriter:
    """Write episodes in the LeRobot v3.0 layout; ``finalize()`` writes the metadata and stats.

    Args:
        root: dataset folder (created; must be empty or absent unless ``overwrite``).
        fps: frame rate of every feature, videos included (frames per second, > 0).
        arms: arm names, in the order their values appear in each vector (e.g. ["right"]).
        cameras: {camera name: (height, width)} of the RGB streams (may be empty).
        tactile_markers: markers per arm in ``observation.tactile`` (0 = no tactile feature).
        features: the full features dict; by default :func:`standard_features`.
        extra_features: {key: shape} of additional float32 per-frame features.
        chunks_size: files per chunk folder.
        crf: H.264 quality (0 lossless .. 51); 18 is visually lossless.
        gop: keyframe interval in frames (small = fast random access, large = small files).

    ``add_episode(frames, task)`` takes {feature key: array with T rows}: float features
    (T, dim), images (T, H, W, 3) uint8; ``timestamp`` (T,) is optional (default frame/fps).
    """

    def __init__(self, root: str | os.PathLike, fps: float, arms: Sequence[str],
                 cameras: Mapping[str, tuple[int, int]] | None = None, tactile_markers: int = 0,
                 features: dict | None = None, extra_features: Mapping[str, Sequence[int]] | None = None,
                 robot_type: str = "unknown", chunks_size: int = 1000, crf: int = 18, gop: int = 2,
                 overwrite: bool = False) -> None:
        if not (isinstance(fps, (int, float)) and fps > 0):
            raise ValueError(f"fps = {fps!r}: must be a number > 0")
        arms = list(arms)
        if not arms or len(set(arms)) != len(arms) or not all(isinstance(a, str) and a for a in arms):
            raise ValueError(f"arms = {arms!r}: must be a non-empty list of distinct names")
        if not isinstance(tactile_markers, int) or tactile_markers < 0:
            raise ValueError(f"tactile_markers = {tactile_markers!r}: must be an integer >= 0")
        if not isinstance(chunks_size, int) or chunks_size < 1:
            raise ValueError(f"chunks_size = {chunks_size!r}: must be an integer >= 1")
        self.root = check_output_folder(root, overwrite)
        self.fps = float(fps)
        self.arms = arms
        self.cameras = dict(cameras or {})
        self.tactile_markers = tactile_markers
        self.features = features if features is not None else standard_features(arms, tactile_markers, self.cameras, fps)
        for key, f in self.features.items():  # cameras declared only through ``features``
            if f.get("dtype") == "video" and key.startswith(IMAGE_PREFIX):
                self.cameras.setdefault(key[len(IMAGE_PREFIX):], tuple(f["shape"][:2]))
        for key, shape in (extra_features or {}).items():
            self.features[key] = {"dtype": "float32", "shape": [int(s) for s in shape], "names": None}
        self.robot_type = robot_type
        self.chunks_size = chunks_size
        if not (isinstance(crf, int) and 0 <= crf <= 51):
            raise ValueError(f"crf = {crf!r}: must be an integer in [0, 51]")
        if not (isinstance(gop, int) and gop >= 1):
            raise ValueError(f"gop = {gop!r}: must be an integer >= 1")
        self.crf, self.gop = crf, gop
        self.tasks: dict[str, int] = {}
        self.episodes: list[dict] = []
        self.total_frames = 0
        self.stats: dict[str, _RunningStats] = {k: _RunningStats() for k in self.features}
        self._finalized = False
        self.root.mkdir(parents=True, exist_ok=True)

    @property
    def video_keys(self) -> list[str]:
        return [k for k, f in self.features.items() if f["dtype"] == "video"]

    @property
    def float_keys(self) -> list[str]:
        return [k for k, f in self.features.items() if f["dtype"] != "video"]

    def _check_episode(self, frames: Mapping[str, np.ndarray]) -> int:
        missing = [k for k in self.features if k not in frames]
        if missing:
            raise ValueError(f"episode is missing feature(s) {missing}")
        unknown = [k for k in frames if k not in self.features and k != "timestamp"]
        if unknown:
            raise ValueError(f"episode has feature(s) not declared in features: {unknown}")
        lengths = {k: len(frames[k]) for k in self.features}
        t = next(iter(lengths.values()))
        if any(v != t for v in lengths.values()) or t < 1:
            raise ValueError(f"episode features have different or zero lengths: {lengths}")
        for k, f in self.features.items():
            shape = tuple(np.shape(frames[k])[1:])
            if shape != tuple(f["shape"]):
                raise ValueError(f"feature {k!r}: frames have shape {shape}, declared {tuple(f['shape'])}")
            if f["dtype"] == "video":
                if np.asarray(frames[k]).dtype != np.uint8:
                    raise ValueError(f"feature {k!r}: images must be uint8 RGB")
            elif not np.all(np.isfinite(frames[k])):
                raise ValueError(f"feature {k!r}: contains NaN or infinite values")
        return t

    def add_episode(self, frames: Mapping[str, np.ndarray], task: str = "") -> int:
        """Write one episode; returns its episode index."""
        import pandas as pd

        if self._finalized:
            raise RuntimeError("DatasetWriter: add_episode after finalize")
        t = self._check_episode(frames)
        ep = len(self.episodes)
        task_index = self.tasks.setdefault(task, len(self.tasks))
        chunk, file = ep // self.chunks_size, ep
        ts = np.asarray(frames["timestamp"], dtype=np.float32) if "timestamp" in frames \
            else (np.arange(t, dtype=np.float64) / self.fps).astype(np.float32)
        if ts.shape != (t,):
            raise ValueError(f"timestamp: shape {ts.shape}, expected ({t},)")
        cols = {
            "index": np.arange(self.total_frames, self.total_frames + t, dtype=np.int64),
            "episode_index": np.full(t, ep, dtype=np.int64),
            "frame_index": np.arange(t, dtype=np.int64),
            "timestamp": ts,
            "task_index": np.full(t, task_index, dtype=np.int64),
        }
        for k in self.float_keys:
            x = np.asarray(frames[k], dtype=np.float32).reshape(t, -1)
            cols[k] = list(x)
            self.stats[k].add(x)
        path = self.root / DATA_PATH.format(chunk_index=chunk, file_index=file)
        path.parent.mkdir(parents=True, exist_ok=True)
        pd.DataFrame(cols).to_parquet(path, index=False)
        row = {"episode_index": ep, "tasks": [task], "length": t,
               "data/chunk_index": chunk, "data/file_index": file,
               "dataset_from_index": self.total_frames, "dataset_to_index": self.total_frames + t,
               "meta/episodes/chunk_index": 0, "meta/episodes/file_index": 0}
        for k in self.video_keys:
            vpath = self.root / VIDEO_PATH.format(video_key=k, chunk_index=chunk, file_index=file)
            images = np.asarray(frames[k])
            self._write_video(vpath, images)
            sub = images[:: max(1, t // 32)].astype(np.float64) / 255.0  # stats on a subsample, in [0, 1]
            self.stats[k].add(sub.reshape(-1, 3))
            row.update({f"videos/{k}/chunk_index": chunk, f"videos/{k}/file_index": file,
                        f"videos/{k}/from_timestamp": 0.0, f"videos/{k}/to_timestamp": t / self.fps})
        self.episodes.append(row)
        self.total_frames += t
        return ep

    def _write_video(self, path: Path, images: np.ndarray) -> None:
        import av
        from fractions import Fraction

        path.parent.mkdir(parents=True, exist_ok=True)
        h, w = images.shape[1:3]
        if h % 2 or w % 2:
            raise ValueError(f"video {path.name}: H.264 yuv420p needs even height and width, got {h}x{w}")
        rate = Fraction(self.fps).limit_denominator(1001)
        with av.open(str(path), "w") as container:
            stream = container.add_stream("libx264", rate=rate)
            stream.width, stream.height, stream.pix_fmt = w, h, "yuv420p"
            stream.options = {"crf": str(self.crf), "preset": "veryfast", "g": str(self.gop)}
            for img in images:
                for packet in stream.encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(img), format="rgb24")):
                    container.mux(packet)
            for packet in stream.encode():
                container.mux(packet)

    def finalize(self) -> Path:
        """Write meta/info.json, meta/stats.json, meta/tasks.parquet and the episodes table."""
        import pandas as pd

        if not self.episodes:
            raise ValueError("DatasetWriter.finalize: no episodes were added")
        meta = self.root / "meta"
        (meta / "episodes" / "chunk-000").mkdir(parents=True, exist_ok=True)
        pd.DataFrame(self.episodes).to_parquet(self.root / EPISODES_PATH, index=False)
        tasks = sorted(self.tasks, key=self.tasks.get)
        pd.DataFrame({"task_index": [self.tasks[t] for t in tasks]},
                     index=pd.Index(tasks, name="task")).to_parquet(meta / "tasks.parquet")
        stats = {}
        for k, st in self.stats.items():
            if st.n == 0:
                continue
            r = st.result()
            if self.features[k]["dtype"] == "video":  # per channel, shape (3, 1, 1) as LeRobot does
                r = {n: [[[v]] for v in vals] if n != "count" else vals for n, vals in r.items()}
            stats[k] = r
        (meta / "stats.json").write_text(json.dumps(stats, indent=1))
        default = {
            "index": {"dtype": "int64", "shape": [1], "names": None},
            "episode_index": {"dtype": "int64", "shape": [1], "names": None},
            "frame_index": {"dtype": "int64", "shape": [1], "names": None},
            "timestamp": {"dtype": "float32", "shape": [1], "names": None},
            "task_index": {"dtype": "int64", "shape": [1], "names": None},
        }
        info = {
            "codebase_version": CODEBASE_VERSION,
            "robot_type": self.robot_type,
            "fps": self.fps,
            "arms": self.arms,
            "cameras": list(self.cameras),
            "tactile_markers": self.tactile_markers,
            "total_episodes": len(self.episodes),
            "total_frames": self.total_frames,
            "total_tasks": len(self.tasks),
            "chunks_size": self.chunks_size,
            "data_files_size_in_mb": 100,
            "video_files_size_in_mb": 500,
            "data_path": DATA_PATH,
            "video_path": VIDEO_PATH if self.video_keys else None,
            "splits": {"train": f"0:{len(self.episodes)}"},
            "features": {**self.features, **default},
        }
        (meta / "info.json").write_text(json.dumps(info, indent=1))
        self._finalized = True
        return self.root

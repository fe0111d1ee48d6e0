"""LeRobot-v3.0-layout dataset writer (the format the RDP trainers read).

Layout under ``root``::

    meta/info.json                              codebase_version "v3.0", fps (int), features, ...
    meta/stats.json                             per feature: mean, std, min, max, count, q01..q99
    meta/tasks.parquet                          index "task" (str), column task_index
    meta/episodes/chunk-000/file-000.parquet    one row per episode, with its stats (see below)
    meta/slowfast.json                          what LeRobot has no key for: arms, cameras, markers
    data/chunk-{c:03d}/file-{f:03d}.parquet     index, episode_index, frame_index, timestamp,
                                                task_index + every non-video feature
    videos/{video_key}/chunk-{c:03d}/file-{f:03d}.mp4   H.264 (PyAV, libx264), yuv420p

This writer puts one episode per data file and per video file (``file_index`` = episode
index, ``chunk_index`` = episode index // chunks_size), which the v3 layout allows: the
episodes table says where each episode lies (``data/file_index``, ``dataset_from_index``,
``dataset_to_index``, ``videos/<key>/file_index``, ``videos/<key>/from_timestamp``,
``videos/<key>/to_timestamp``).

Statistics are LeRobot's: per episode (columns ``stats/<feature>/<stat>`` of the episodes
table) min, max, mean, std, count and the quantiles q01, q10, q50, q90, q99 of every feature,
the index columns included; images per channel in [0, 1], shape (3, 1, 1), over the frames
LeRobot samples, ``count`` in frames. ``stats.json`` aggregates them as LeRobot does (means and
variances weighted by count, min/max, quantiles as the envelope of the episodes' quantiles),
so LeRobot's own tools (``delete_episodes``, merging, quantile normalisation) work on it.

Feature keys and per-arm layouts: :mod:`slowfast_data.features`.

Extra float32 features may be added (``extra_features``); they are stored and get stats.
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np

from .features import (CODEBASE_VERSION, DATA_PATH, DEFAULT_FEATURES, EPISODES_PATH, IMAGE_PREFIX, INFO_PATH,
                       SLOWFAST_INFO_PATH, VIDEO_PATH, standard_features)

QUANTILES = (0.01, 0.10, 0.50, 0.90, 0.99)


def feature_stats(x: np.ndarray) -> dict:
    """LeRobot's statistics of one feature over one episode: ``x`` (T, dim) ->
    min, max, mean, std (dim,), count (1,) = T, and the quantiles q01 .. q99."""
    x = np.asarray(x, dtype=np.float64)
    out = {"min": x.min(0), "max": x.max(0), "mean": x.mean(0), "std": x.std(0), "count": np.array([len(x)])}
    qs = np.quantile(x, QUANTILES, axis=0) if len(x) >= 2 else np.repeat(x.mean(0)[None], len(QUANTILES), 0)
    for q, v in zip(QUANTILES, qs):
        out[f"q{int(round(q * 100)):02d}"] = v
    return out


def sample_frame_indices(n: int) -> np.ndarray:
    """The frames LeRobot computes an episode's image stats on (its ``sample_indices``)."""
    k = max(min(n, 100), min(int(n ** 0.75), 10_000))
    return np.round(np.linspace(0, n - 1, k)).astype(int)


def image_stats(images: np.ndarray) -> dict:
    """Per-channel stats of (T, H, W, 3) uint8 frames in [0, 1], shape (3, 1, 1), over the
    frames LeRobot samples (downsampled as it does above 300 px); ``count`` in frames."""
    idx = sample_frame_indices(len(images))
    sub = np.asarray(images)[idx]
    h, w = sub.shape[1:3]
    if max(h, w) >= 300:
        f = int(w / 150) if w > h else int(h / 150)
        sub = sub[:, ::f, ::f]
    st = feature_stats(sub.reshape(-1, 3).astype(np.float64) / 255.0)
    return {k: (v if k == "count" else v.reshape(3, 1, 1)) for k, v in {**st, "count": np.array([len(idx)])}.items()}


def aggregate_stats(episodes: list[dict]) -> dict:
    """Dataset stats from per-episode stats, as LeRobot aggregates them: count-weighted mean
    and pooled variance, min of mins, max of maxes, and for quantiles the envelope (the
    smallest q01..q50, the largest q90, q99: bounds, since exact quantiles do not merge)."""
    out = {}
    for key in {k for e in episodes for k in e}:
        sts = [e[key] for e in episodes if key in e]
        counts = np.stack([s["count"] for s in sts]).astype(np.float64)
        means, var = np.stack([s["mean"] for s in sts]), np.stack([s["std"] ** 2 for s in sts])
        c = counts.reshape(counts.shape[0], *([1] * (means.ndim - 1)))
        total = counts.sum(0)
        mean = (means * c).sum(0) / c.sum(0)
        variance = ((var + (means - mean) ** 2) * c).sum(0) / c.sum(0)
        agg = {"min": np.stack([s["min"] for s in sts]).min(0), "max": np.stack([s["max"] for s in sts]).max(0),
               "mean": mean, "std": np.sqrt(variance), "count": total.astype(np.int64)}
        for q in QUANTILES:
            name = f"q{int(round(q * 100)):02d}"
            vals = np.stack([s[name] for s in sts])
            agg[name] = vals.min(0) if q <= 0.5 else vals.max(0)
        out[key] = agg
    return out


def _jsonable(stats: dict) -> dict:
    return {k: {n: np.asarray(v).tolist() for n, v in st.items()} for k, st in stats.items()}


def check_output_folder(root: str | os.PathLike, overwrite: bool = False) -> Path:
    """Make sure a dataset can be written at ``root`` (creating it): OSError naming it when
    it is not a folder, not writable, or not empty without ``overwrite``."""
    root = Path(root)
    if root.exists() and not root.is_dir():
        raise OSError(f"dataset folder {root}: exists and is not a folder")
    if root.is_dir() and any(root.iterdir()) and not overwrite:
        raise OSError(f"dataset folder {root} exists and is not empty")
    from .fileio import writable_folder

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
        if not (isinstance(fps, (int, float)) and fps > 0 and abs(fps - round(fps)) < 1e-9):
            raise ValueError(f"fps = {fps!r}: must be a whole number of frames per second > 0 (LeRobot's fps is an integer)")
        arms = list(arms)
        if not arms or len(set(arms)) != len(arms) or not all(isinstance(a, str) and a for a in arms):
            raise ValueError(f"arms = {arms!r}: must be a non-empty list of distinct names")
        if not isinstance(tactile_markers, int) or tactile_markers < 0:
            raise ValueError(f"tactile_markers = {tactile_markers!r}: must be an integer >= 0")
        if not isinstance(chunks_size, int) or chunks_size < 1:
            raise ValueError(f"chunks_size = {chunks_size!r}: must be an integer >= 1")
        self.root = check_output_folder(root, overwrite)
        self.fps = int(round(fps))
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
        self.episode_stats: list[dict] = []
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
        ep_stats = {k: feature_stats(np.asarray(v, np.float64).reshape(t, 1)) for k, v in cols.items()}
        for k in self.float_keys:
            x = np.asarray(frames[k], dtype=np.float32).reshape(t, -1)
            cols[k] = list(x)
            ep_stats[k] = feature_stats(x)
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
            ep_stats[k] = image_stats(images)
            row.update({f"videos/{k}/chunk_index": chunk, f"videos/{k}/file_index": file,
                        f"videos/{k}/from_timestamp": 0.0, f"videos/{k}/to_timestamp": t / self.fps})
        for k, st in ep_stats.items():     # LeRobot's flattened columns: stats/<feature>/<stat>
            for name, v in st.items():
                row[f"stats/{k}/{name}"] = np.asarray(v).tolist()
        self.episode_stats.append(ep_stats)
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
        (meta / "stats.json").write_text(json.dumps(_jsonable(aggregate_stats(self.episode_stats)), indent=1))
        info = {
            "codebase_version": CODEBASE_VERSION,
            "fps": self.fps,
            "features": {**self.features, **DEFAULT_FEATURES},
            "total_episodes": len(self.episodes),
            "total_frames": self.total_frames,
            "total_tasks": len(self.tasks),
            "chunks_size": self.chunks_size,
            "data_files_size_in_mb": 100,
            "video_files_size_in_mb": 500,
            "data_path": DATA_PATH,
            "video_path": VIDEO_PATH if self.video_keys else None,
            "robot_type": self.robot_type,
            "splits": {"train": f"0:{len(self.episodes)}"},
        }
        (self.root / INFO_PATH).write_text(json.dumps(info, indent=1))
        (self.root / SLOWFAST_INFO_PATH).write_text(json.dumps(
            {"arms": self.arms, "cameras": list(self.cameras), "tactile_markers": self.tactile_markers}, indent=1))
        self._finalized = True
        return self.root

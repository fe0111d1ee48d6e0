"""Read a LeRobot-v3.0-layout dataset written by :class:`slowfast_data.writer.DatasetWriter`
(or by LeRobot): every float feature in memory, the episode table, videos decoded on demand."""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np

from .features import (ACTION_KEY, EPISODES_PATH, IMAGE_PREFIX, INDEX_COLUMNS, INFO_PATH, MARKER_WIDTH, POSE_KEY,
                       POSE_WIDTH, SLOWFAST_INFO_PATH, TACTILE_KEY, WRENCH_KEY, WRENCH_WIDTH)
from .fileio import read_json

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
        info_path = self.root / INFO_PATH
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
        side_path = self.root / SLOWFAST_INFO_PATH
        side = read_json(side_path) if side_path.is_file() else info
        names = self.features.get(POSE_KEY, {}).get("names") or []
        from_names = list(dict.fromkeys(n.rsplit(".", 1)[0] for n in names if "." in n))
        self.arms: list[str] = list(side.get("arms") or from_names or ["arm"])
        self.num_arms = len(self.arms)
        markers = side.get("tactile_markers")
        if markers is None and TACTILE_KEY in self.features:
            markers = int(self.features[TACTILE_KEY]["shape"][0]) // (MARKER_WIDTH * self.num_arms)
        self.tactile_markers = int(markers or 0)
        self._check_shapes()
        for k, f in self.features.items():
            if f.get("dtype") == "video":
                vfps = (f.get("info") or {}).get("video.fps")
                if vfps is not None and abs(float(vfps) - self.fps) > 1e-6 * self.fps:
                    raise ValueError(f"{self.root}: video {k!r} is at {vfps} fps, dataset fps is {self.fps:g}")

        ep_path = self.root / EPISODES_PATH
        ep_files = sorted((self.root / "meta" / "episodes").glob("chunk-*/file-*.parquet"))
        if not ep_files:
            raise ValueError(f"{self.root}: missing {ep_path.relative_to(self.root)}")
        self.episodes = pd.concat([pd.read_parquet(p) for p in ep_files]).sort_values("episode_index").reset_index(drop=True)
        float_keys = [k for k in self.features if self.features[k].get("dtype") != "video"
                      and k not in INDEX_COLUMNS]
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
        expect = {POSE_KEY: a * POSE_WIDTH, ACTION_KEY: a * POSE_WIDTH, WRENCH_KEY: a * WRENCH_WIDTH}
        if n:
            expect[TACTILE_KEY] = a * n * MARKER_WIDTH
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

"""The dataset's feature keys, file paths and per-arm layouts (LeRobot v3.0, see
:mod:`slowfast_data.writer` for the whole layout).

A arms, in the order of ``meta/slowfast.json["arms"]``; N tactile markers per arm:

* ``observation.tcp_pose``  float32 (A*7)   position (m) + quaternion x, y, z, w, world frame
* ``observation.wrench``    float32 (A*6)   force (N), torque (N m), tool frame
* ``observation.tactile``   float32 (A*N*4) per marker x, y, dx, dy
* ``action``                float32 (A*7)   target TCP pose, absolute, world frame
* ``observation.images.<cam>``  video (H, W, 3) uint8 RGB

Every per-arm vector is the arms' readings, each flattened row-major, concatenated in arm
order (:func:`per_arm`).
"""
from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np

POSE_KEY = "observation.tcp_pose"
WRENCH_KEY = "observation.wrench"
TACTILE_KEY = "observation.tactile"
ACTION_KEY = "action"
IMAGE_PREFIX = "observation.images."
#: values per arm: pose (position + quaternion x, y, z, w), wrench, tactile marker
POSE_WIDTH, WRENCH_WIDTH, MARKER_WIDTH = 7, 6, 4

CODEBASE_VERSION = "v3.0"
DATA_PATH = "data/chunk-{chunk_index:03d}/file-{file_index:03d}.parquet"
VIDEO_PATH = "videos/{video_key}/chunk-{chunk_index:03d}/file-{file_index:03d}.mp4"
EPISODES_PATH = "meta/episodes/chunk-000/file-000.parquet"
INFO_PATH = "meta/info.json"
#: slowfast's own sidecar: the sim seed of each generated episode (for replaying it on its scene)
EPISODE_SEEDS_PATH = "meta/slowfast_episodes.json"
#: slowfast's own dataset facts LeRobot's info.json has no key for (LeRobot drops unknown keys)
SLOWFAST_INFO_PATH = "meta/slowfast.json"
#: slowfast's own sidecar: each generated episode's nominal actions (:mod:`slowfast_data.nominal`)
NOMINAL_PATH = "meta/slowfast_nominal.npz"
#: the per-frame bookkeeping columns every LeRobot dataset has
INDEX_COLUMNS = ("index", "episode_index", "frame_index", "timestamp", "task_index")
DEFAULT_FEATURES = {
    "timestamp": {"dtype": "float32", "shape": [1], "names": None},
    "frame_index": {"dtype": "int64", "shape": [1], "names": None},
    "episode_index": {"dtype": "int64", "shape": [1], "names": None},
    "index": {"dtype": "int64", "shape": [1], "names": None},
    "task_index": {"dtype": "int64", "shape": [1], "names": None},
}


def per_arm(readings: Sequence, frames: int | None = None) -> np.ndarray:
    """A per-arm feature's vector: each arm's reading flattened (row-major), concatenated in
    arm order. ``frames``: each reading holds that many frames (leading axis) -> (frames, dim).
    Used by every writer and reader of these vectors."""
    shape = (-1,) if frames is None else (frames, -1)
    return np.concatenate([np.asarray(r).reshape(shape) for r in readings], axis=-1)


def pose_vector(pos, quat) -> np.ndarray:
    """One arm's pose (..., 7): position then quaternion x, y, z, w."""
    return np.concatenate([pos, quat], axis=-1)


def standard_features(arms: Sequence[str], tactile_markers: int = 0,
                      cameras: Mapping[str, tuple[int, int]] | None = None,
                      fps: float | None = None) -> dict:
    """The features dict of the contract for ``arms``, N tactile markers and cameras {name: (H, W)}."""
    a = len(arms)

    def names(per_arm: Sequence[str]) -> list[str]:
        return [f"{arm}.{n}" for arm in arms for n in per_arm]

    pose = ["x", "y", "z", "qx", "qy", "qz", "qw"]
    feats = {
        POSE_KEY: {"dtype": "float32", "shape": [a * POSE_WIDTH], "names": names(pose)},
        WRENCH_KEY: {"dtype": "float32", "shape": [a * WRENCH_WIDTH],
                     "names": names(["fx", "fy", "fz", "tx", "ty", "tz"])},
        ACTION_KEY: {"dtype": "float32", "shape": [a * POSE_WIDTH], "names": names(pose)},
    }
    if tactile_markers:
        feats[TACTILE_KEY] = {
            "dtype": "float32", "shape": [a * tactile_markers * MARKER_WIDTH],
            "names": [f"{arm}.m{i}.{c}" for arm in arms for i in range(tactile_markers) for c in ("x", "y", "dx", "dy")],
        }
    for cam, (h, w) in (cameras or {}).items():
        info = {"video.height": int(h), "video.width": int(w), "video.codec": "h264",
                "video.pix_fmt": "yuv420p", "video.channels": 3, "has_audio": False, "is_depth_map": False}
        if fps is not None:
            info["video.fps"] = int(round(fps))
        feats[IMAGE_PREFIX + cam] = {"dtype": "video", "shape": [int(h), int(w), 3],
                                     "names": ["height", "width", "channels"], "info": info}
    return feats

"""Synthetic RGB-D for tests and benchmarks: a box-shaped room rendered by ray casting.

World frame: z up, the room spans [0, size_x] x [0, size_y] x [0, height]. The robot moves in
the plane with a camera at ``camera_height`` looking along its heading; poses are returned as
``pose_world_from_camera`` in the OpenCV optical convention (x right, y down, z forward).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from .actions import Action


@dataclass(frozen=True)
class BoxRoom:
    size_x: float = 6.0
    size_y: float = 5.0
    height: float = 2.7
    tile: float = 0.5  # checkerboard tile size on every surface, metres

    def __post_init__(self) -> None:
        for name in ("size_x", "size_y", "height", "tile"):
            v = getattr(self, name)
            if not (math.isfinite(v) and v > 0):
                raise ValueError(f"{name} must be a finite number > 0, got {v!r}")

    def render(self, pose_world_from_camera: np.ndarray, intrinsics: np.ndarray, width: int, height: int,
               nan_fraction: float = 0.0, rng: np.random.Generator | None = None) -> tuple[np.ndarray, np.ndarray]:
        """RGB uint8 ``[h, w, 3]`` and depth float32 metres ``[h, w]`` seen from inside the room."""
        K = np.asarray(intrinsics, dtype=np.float64)
        T = np.asarray(pose_world_from_camera, dtype=np.float64)
        u, v = np.meshgrid(np.arange(width, dtype=np.float64), np.arange(height, dtype=np.float64))
        d_cam = np.stack([(u - K[0, 2]) / K[0, 0], (v - K[1, 2]) / K[1, 1], np.ones_like(u)], axis=-1)
        d = d_cam @ T[:3, :3].T
        o = T[:3, 3]
        lo = np.zeros(3)
        hi = np.array([self.size_x, self.size_y, self.height])
        with np.errstate(divide="ignore", invalid="ignore"):
            t_axis = np.where(d > 0, (hi - o) / d, np.where(d < 0, (lo - o) / d, np.inf))
        face = np.argmin(t_axis, axis=-1)
        t = np.take_along_axis(t_axis, face[..., None], axis=-1)[..., 0]  # = depth, since d_cam.z = 1
        p = o + t[..., None] * d
        cells = np.floor(p / self.tile).astype(np.int64)
        checker = (cells.sum(axis=-1) & 1).astype(np.float64)
        side = (face * 2 + (d[np.arange(height)[:, None], np.arange(width)[None], face] > 0)).astype(np.int64)
        base = np.array([[200, 60, 60], [60, 200, 60], [60, 60, 200], [200, 200, 60], [120, 120, 120],
                         [220, 220, 220]], dtype=np.float64)[side]
        hashed = ((cells[..., 0] * 73856093) ^ (cells[..., 1] * 19349663) ^ (cells[..., 2] * 83492791)) % 50
        rgb = np.clip(base * (0.6 + 0.4 * checker[..., None]) + hashed[..., None], 0, 255).astype(np.uint8)
        depth = t.astype(np.float32)
        if nan_fraction > 0:
            rng = rng or np.random.default_rng(0)
            depth[rng.random(depth.shape) < nan_fraction] = np.nan
        return rgb, depth


def pinhole(width: int, height: int, hfov_deg: float = 90.0) -> np.ndarray:
    f = (width / 2.0) / math.tan(math.radians(hfov_deg) / 2.0)
    return np.array([[f, 0.0, (width - 1) / 2.0], [0.0, f, (height - 1) / 2.0], [0.0, 0.0, 1.0]])


def camera_pose(x: float, y: float, yaw: float, camera_height: float = 1.25) -> np.ndarray:
    """``pose_world_from_camera`` of a forward-looking camera on a robot at (x, y, yaw)."""
    c, s = math.cos(yaw), math.sin(yaw)
    forward = np.array([c, s, 0.0])
    right = np.array([s, -c, 0.0])
    down = np.array([0.0, 0.0, -1.0])
    T = np.eye(4)
    T[:3, :3] = np.stack([right, down, forward], axis=1)
    T[:3, 3] = [x, y, camera_height]
    return T


def loop_actions(steps: int, side_x: int = 16, side_y: int = 12) -> list[Action]:
    """A rectangular loop driven again and again (so places are revisited): forward, turn 90° left."""
    one = ([Action.MOVE_FORWARD] * side_x + [Action.TURN_LEFT] * 6
           + [Action.MOVE_FORWARD] * side_y + [Action.TURN_LEFT] * 6) * 2
    out: list[Action] = []
    while len(out) < steps:
        out.extend(one)
    return out[:steps]


def rollout(actions, start=(1.0, 1.0, 0.0)) -> list[tuple[float, float, float]]:
    """Robot states (x, y, yaw) before each action and after the last one."""
    x, y, yaw = start
    states = [(x, y, yaw)]
    for a in actions:
        a = Action(a)
        yaw += a.yaw_rad
        x += a.forward_m * math.cos(yaw)
        y += a.forward_m * math.sin(yaw)
        states.append((x, y, yaw))
    return states

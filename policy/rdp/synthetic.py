"""Small synthetic datasets in the LeRobot-v3 layout, for tests, benchmarks and smoke runs.

The task: each arm's TCP drifts along a smooth random path (rotating about the world z axis)
while a contact force f_z(t) switches between random levels every few frames. The target
pose commanded at frame t is the next path point shifted along world z by
``-force_gain * f_z(t)`` (the arm yields to the force it feels *now*), so the right action
depends on the per-step force, which the action encoder alone cannot predict. The tactile
markers move with the force (dx, dy proportional to f_z and to a fixed per-marker pattern).
Images are flat colours that follow the TCP position.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from slowfast_data.geometry import matrix_to_quat


def make_episode(rng: np.random.Generator, length: int, arms: int = 1, markers: int = 8,
                 image_size: tuple[int, int] | None = (32, 48), force_gain: float = 0.01,
                 hold: int = 3) -> dict:
    t = np.arange(length)
    poses, actions, wrenches, tactile = [], [], [], []
    pattern = np.random.default_rng(1234).normal(size=(markers, 2)) if markers else None  # one sensor
    for _ in range(arms):
        p0 = rng.uniform(-0.2, 0.2, 3) + np.array([0.5, 0.0, 0.3])
        vel = rng.uniform(-0.004, 0.004, 3)
        wob = rng.uniform(0.002, 0.006)
        pos = p0 + vel * t[:, None] + wob * np.stack([np.sin(0.2 * t), np.cos(0.15 * t), np.sin(0.1 * t)], -1)
        yaw = rng.uniform(-np.pi, np.pi) + rng.uniform(-0.01, 0.01) * t
        rot = np.zeros((length, 3, 3))
        rot[:, 0, 0], rot[:, 0, 1], rot[:, 1, 0], rot[:, 1, 1], rot[:, 2, 2] = np.cos(yaw), -np.sin(yaw), np.sin(yaw), np.cos(yaw), 1
        quat = matrix_to_quat(rot)
        levels = rng.uniform(-1.0, 1.0, (length + hold - 1) // hold + 1)
        fz = np.repeat(levels, hold)[:length] * 10.0  # N
        w = rng.normal(0, 0.2, (length, 6))
        w[:, 2] = fz
        nxt = np.concatenate([pos[1:], pos[-1:]])
        target = nxt.copy()
        target[:, 2] -= force_gain * fz / 10.0
        nq = np.concatenate([quat[1:], quat[-1:]])
        poses.append(np.concatenate([pos, quat], -1))
        actions.append(np.concatenate([target, nq], -1))
        wrenches.append(w)
        if markers:
            grid = np.stack(np.meshgrid(np.linspace(0, 1, markers), [0.5])[0:2], -1).reshape(-1, 2)[:markers]
            off = (fz[:, None, None] / 10.0) * pattern[None] * 0.5 + rng.normal(0, 0.01, (length, markers, 2))
            tactile.append(np.concatenate([np.broadcast_to(grid, (length, markers, 2)), off], -1).reshape(length, -1))
    ep = {"observation.tcp_pose": np.concatenate(poses, -1).astype(np.float32),
          "action": np.concatenate(actions, -1).astype(np.float32),
          "observation.wrench": np.concatenate(wrenches, -1).astype(np.float32)}
    if markers:
        ep["observation.tactile"] = np.concatenate(tactile, -1).astype(np.float32)
    if image_size is not None:
        h, w = image_size
        p = ep["observation.tcp_pose"][:, :3]
        col = np.clip((p - p.min(0)) / (np.ptp(p, 0) + 1e-6) * 255, 0, 255).astype(np.uint8)
        img = np.broadcast_to(col[:, None, None, :], (length, h, w, 3)).copy()
        img[:, : h // 2, : w // 2] = 255 - img[:, : h // 2, : w // 2]
        ep["observation.images.wrist"] = img
    return ep


def make_dataset(root: str | Path, episodes: int = 6, length: int = 60, fps: float = 50.0, arms: int = 1,
                 markers: int = 8, image_size: tuple[int, int] | None = (32, 48), seed: int = 0,
                 force_gain: float = 0.01) -> Path:
    """Write a synthetic dataset with the :class:`slowfast_data.writer.DatasetWriter`."""
    from slowfast_data.writer import DatasetWriter

    rng = np.random.default_rng(seed)
    names = ["right", "left"][:arms] if arms <= 2 else [f"arm{i}" for i in range(arms)]
    cams = {"wrist": tuple(image_size)} if image_size is not None else {}
    w = DatasetWriter(root, fps=fps, arms=names, cameras=cams, tactile_markers=markers, robot_type="synthetic")
    for _ in range(episodes):
        w.add_episode(make_episode(rng, length, arms, markers, image_size, force_gain), task="yield to force")
    return w.finalize()

"""Quaternion helpers. MuJoCo stores w, x, y, z; the API uses x, y, z, w (ROS order)."""
from __future__ import annotations

import numpy as np


def xyzw_to_wxyz(q) -> np.ndarray:
    q = np.asarray(q, float)
    return np.array([q[3], q[0], q[1], q[2]])


def wxyz_to_xyzw(q) -> np.ndarray:
    q = np.asarray(q, float)
    return np.array([q[1], q[2], q[3], q[0]])


def quat_mul(a, b) -> np.ndarray:
    """Hamilton product of two w, x, y, z quaternions."""
    w1, x1, y1, z1 = a
    w2, x2, y2, z2 = b
    return np.array([
        w1 * w2 - x1 * x2 - y1 * y2 - z1 * z2,
        w1 * x2 + x1 * w2 + y1 * z2 - z1 * y2,
        w1 * y2 - x1 * z2 + y1 * w2 + z1 * x2,
        w1 * z2 + x1 * y2 - y1 * x2 + z1 * w2,
    ])


def axis_angle_quat(axis, angle: float) -> np.ndarray:
    """w, x, y, z quaternion of a rotation by ``angle`` (rad) about ``axis``."""
    axis = np.asarray(axis, float)
    n = np.linalg.norm(axis)
    if n < 1e-12 or abs(angle) < 1e-15:
        return np.array([1.0, 0.0, 0.0, 0.0])
    axis = axis / n
    return np.concatenate([[np.cos(angle / 2)], np.sin(angle / 2) * axis])


def quat_to_mat(q) -> np.ndarray:
    """3x3 rotation matrix of a w, x, y, z quaternion."""
    w, x, y, z = np.asarray(q, float) / np.linalg.norm(q)
    return np.array([
        [1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
        [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
        [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)],
    ])

"""Headset (Unity) frame <-> robot world frame, and the quaternion helpers the teleop uses.

Unity's frame is left-handed with Y up; the robot world is right-handed with Z up. The
published TactAR mapping: mirror Y (negate the y of a position; negate x and z of a
w, x, y, z quaternion), then rotate by ``UNITY_TO_WORLD``::

    robot x = Unity z (forward)     robot y = -Unity x (left)     robot z = Unity y (up)

Quaternions here are x, y, z, w (ROS order) unless a name says ``wxyz`` (the app's order).
"""
from __future__ import annotations

import numpy as np

UNITY_TO_WORLD = np.array([[0.0, 0.0, 1.0], [-1.0, 0.0, 0.0], [0.0, -1.0, 0.0]])
_MIRROR = np.diag([1.0, -1.0, 1.0])


def quat_to_matrix(q_xyzw) -> np.ndarray:
    x, y, z, w = np.asarray(q_xyzw, float) / np.linalg.norm(q_xyzw)
    return np.array([
        [1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
        [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
        [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)]])


def matrix_to_quat(m) -> np.ndarray:
    """Rotation matrix -> unit quaternion x, y, z, w with w >= 0."""
    m = np.asarray(m, float)
    t = np.trace(m)
    if t > 0:
        s = 2.0 * np.sqrt(t + 1.0)
        q = [(m[2, 1] - m[1, 2]) / s, (m[0, 2] - m[2, 0]) / s, (m[1, 0] - m[0, 1]) / s, 0.25 * s]
    elif m[0, 0] > m[1, 1] and m[0, 0] > m[2, 2]:
        s = 2.0 * np.sqrt(1.0 + m[0, 0] - m[1, 1] - m[2, 2])
        q = [0.25 * s, (m[0, 1] + m[1, 0]) / s, (m[0, 2] + m[2, 0]) / s, (m[2, 1] - m[1, 2]) / s]
    elif m[1, 1] > m[2, 2]:
        s = 2.0 * np.sqrt(1.0 + m[1, 1] - m[0, 0] - m[2, 2])
        q = [(m[0, 1] + m[1, 0]) / s, 0.25 * s, (m[1, 2] + m[2, 1]) / s, (m[0, 2] - m[2, 0]) / s]
    else:
        s = 2.0 * np.sqrt(1.0 + m[2, 2] - m[0, 0] - m[1, 1])
        q = [(m[0, 2] + m[2, 0]) / s, (m[1, 2] + m[2, 1]) / s, 0.25 * s, (m[1, 0] - m[0, 1]) / s]
    q = np.array(q)
    q /= np.linalg.norm(q)
    return -q if q[3] < 0 else q


def wxyz_to_xyzw(q) -> np.ndarray:
    q = np.asarray(q, float)
    return np.array([q[1], q[2], q[3], q[0]])


def xyzw_to_wxyz(q) -> np.ndarray:
    q = np.asarray(q, float)
    return np.array([q[3], q[0], q[1], q[2]])


def unity_to_world_pos(p) -> np.ndarray:
    return UNITY_TO_WORLD @ (_MIRROR @ np.asarray(p, float))


def world_to_unity_pos(p) -> np.ndarray:
    return _MIRROR @ (UNITY_TO_WORLD.T @ np.asarray(p, float))


def unity_to_world_rot(q_wxyz) -> np.ndarray:
    """A Unity rotation (quaternion w, x, y, z) as a rotation matrix in the robot world."""
    w, x, y, z = np.asarray(q_wxyz, float)
    mirrored = quat_to_matrix([-x, y, -z, w])
    return UNITY_TO_WORLD @ mirrored @ UNITY_TO_WORLD.T


def world_to_unity_quat(r) -> np.ndarray:
    """Inverse of :func:`unity_to_world_rot`: a world rotation matrix -> Unity w, x, y, z."""
    mirrored = UNITY_TO_WORLD.T @ np.asarray(r, float) @ UNITY_TO_WORLD
    x, y, z, w = matrix_to_quat(mirrored)
    return np.array([w, -x, y, -z])


def pose_to_unity(pos, quat_xyzw) -> list[float]:
    """A world pose -> the app's 7 floats: x, y, z, qw, qx, qy, qz in the Unity frame."""
    return [*world_to_unity_pos(pos).tolist(), *world_to_unity_quat(quat_to_matrix(quat_xyzw)).tolist()]

"""Headset (Unity) frame <-> robot world frame, and the quaternion helpers the teleop uses.

Unity's frame is left-handed with Y up; the robot world is right-handed with Z up. The
published TactAR mapping: mirror Y (negate the y of a position; negate x and z of a
w, x, y, z quaternion), then rotate by ``UNITY_TO_WORLD``::

    robot x = Unity z (forward)     robot y = -Unity x (left)     robot z = Unity y (up)

Quaternions here are x, y, z, w (ROS order) unless a name says ``wxyz`` (the app's order).
The quaternion helpers are slowfast_data.geometry's single-pose ones, re-exported.
"""
from __future__ import annotations

import numpy as np

from slowfast_data.geometry import matrix_to_quat_one as matrix_to_quat  # noqa: F401 - part of this API
from slowfast_data.geometry import quat_to_matrix_one as quat_to_matrix

UNITY_TO_WORLD = np.array([[0.0, 0.0, 1.0], [-1.0, 0.0, 0.0], [0.0, -1.0, 0.0]])
_MIRROR = np.diag([1.0, -1.0, 1.0])


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

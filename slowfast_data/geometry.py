"""Pose and quaternion geometry shared by the simulator, the datasets, training, export,
the runtime and teleoperation (numpy, plus one torch helper).

A pose is 7 numbers: position (m) then quaternion x, y, z, w (ROS order), world frame.
With A arms a pose vector is A*7 long, arms in the dataset's ``arms`` order.

A *relative* action is the pose expressed in the frame of the TCP pose at chunk start
(``T_rel = T_start^-1 @ T``): position R0^T (p - p0) followed by the 6-D rotation of
R0^T R (the first two columns of the matrix, column-major: r00, r10, r20, r01, r11, r21).
With A arms it is A*9 long.

``absolute_to_relative`` and ``relative_to_absolute`` are exact inverses (up to float
rounding and the Gram-Schmidt projection that makes any 6-D vector a rotation).

MuJoCo stores quaternions w, x, y, z; the helpers under "MuJoCo order" convert and compose
them (everything else here is x, y, z, w).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from slowfast_data.fields import check_ranges, described

POSE_DIM = 7
REL_DIM = 9


# ----------------------------------------------------------------------------- numpy

def quat_to_matrix(q: np.ndarray) -> np.ndarray:
    """(..., 4) quaternion x, y, z, w (normalised here) -> (..., 3, 3) rotation matrix."""
    q = np.asarray(q, dtype=np.float64)
    q = q / np.linalg.norm(q, axis=-1, keepdims=True)
    x, y, z, w = q[..., 0], q[..., 1], q[..., 2], q[..., 3]
    m = np.empty(q.shape[:-1] + (3, 3))
    m[..., 0, 0] = 1 - 2 * (y * y + z * z)
    m[..., 0, 1] = 2 * (x * y - z * w)
    m[..., 0, 2] = 2 * (x * z + y * w)
    m[..., 1, 0] = 2 * (x * y + z * w)
    m[..., 1, 1] = 1 - 2 * (x * x + z * z)
    m[..., 1, 2] = 2 * (y * z - x * w)
    m[..., 2, 0] = 2 * (x * z - y * w)
    m[..., 2, 1] = 2 * (y * z + x * w)
    m[..., 2, 2] = 1 - 2 * (x * x + y * y)
    return m


def matrix_to_quat(m: np.ndarray) -> np.ndarray:
    """(..., 3, 3) rotation matrix -> (..., 4) unit quaternion x, y, z, w with w >= 0."""
    m = np.asarray(m, dtype=np.float64)
    shape = m.shape[:-2]
    m = m.reshape(-1, 3, 3)
    q = np.empty((m.shape[0], 4))
    tr = m[:, 0, 0] + m[:, 1, 1] + m[:, 2, 2]
    for i in range(m.shape[0]):
        r = m[i]
        if tr[i] > 0:
            s = np.sqrt(tr[i] + 1.0) * 2
            q[i] = [(r[2, 1] - r[1, 2]) / s, (r[0, 2] - r[2, 0]) / s, (r[1, 0] - r[0, 1]) / s, 0.25 * s]
        elif r[0, 0] > r[1, 1] and r[0, 0] > r[2, 2]:
            s = np.sqrt(1.0 + r[0, 0] - r[1, 1] - r[2, 2]) * 2
            q[i] = [0.25 * s, (r[0, 1] + r[1, 0]) / s, (r[0, 2] + r[2, 0]) / s, (r[2, 1] - r[1, 2]) / s]
        elif r[1, 1] > r[2, 2]:
            s = np.sqrt(1.0 + r[1, 1] - r[0, 0] - r[2, 2]) * 2
            q[i] = [(r[0, 1] + r[1, 0]) / s, 0.25 * s, (r[1, 2] + r[2, 1]) / s, (r[0, 2] - r[2, 0]) / s]
        else:
            s = np.sqrt(1.0 + r[2, 2] - r[0, 0] - r[1, 1]) * 2
            q[i] = [(r[0, 2] + r[2, 0]) / s, (r[1, 2] + r[2, 1]) / s, 0.25 * s, (r[1, 0] - r[0, 1]) / s]
    q /= np.linalg.norm(q, axis=-1, keepdims=True)
    q *= np.where(q[:, 3:4] < 0, -1.0, 1.0)
    return q.reshape(shape + (4,))


def matrix_to_rot6d(m: np.ndarray) -> np.ndarray:
    """(..., 3, 3) -> (..., 6): first column then second column."""
    m = np.asarray(m)
    return np.concatenate([m[..., :, 0], m[..., :, 1]], axis=-1)


def rot6d_to_matrix(r: np.ndarray) -> np.ndarray:
    """(..., 6) -> (..., 3, 3) by Gram-Schmidt (Zhou et al. 2019)."""
    r = np.asarray(r, dtype=np.float64)
    a1, a2 = r[..., 0:3], r[..., 3:6]
    b1 = a1 / np.maximum(np.linalg.norm(a1, axis=-1, keepdims=True), 1e-12)
    a2 = a2 - np.sum(b1 * a2, axis=-1, keepdims=True) * b1
    b2 = a2 / np.maximum(np.linalg.norm(a2, axis=-1, keepdims=True), 1e-12)
    b3 = np.cross(b1, b2)
    return np.stack([b1, b2, b3], axis=-1)


def _split_arms(x: np.ndarray, width: int) -> np.ndarray:
    if x.shape[-1] % width:
        raise ValueError(f"pose vector of length {x.shape[-1]} is not a multiple of {width}")
    return x.reshape(x.shape[:-1] + (x.shape[-1] // width, width))


def pose_to_pos_rot6d(pose: np.ndarray) -> np.ndarray:
    """(..., A*7) absolute poses -> (..., A*9) position + 6-D rotation (same frame)."""
    p = _split_arms(np.asarray(pose, dtype=np.float64), POSE_DIM)
    out = np.concatenate([p[..., :3], matrix_to_rot6d(quat_to_matrix(p[..., 3:]))], axis=-1)
    return out.reshape(out.shape[:-2] + (-1,)).astype(np.float32)


def absolute_to_relative(poses: np.ndarray, start: np.ndarray) -> np.ndarray:
    """Poses (..., A*7) in the world frame -> (..., A*9) relative to ``start`` (A*7).

    ``start`` broadcasts against the leading dimensions of ``poses`` after adding the
    time axis: poses (B, H, A*7) with start (B, A*7), or poses (H, A*7) with start (A*7,).
    """
    p = _split_arms(np.asarray(poses, dtype=np.float64), POSE_DIM)   # (..., H, A, 7)
    s = _split_arms(np.asarray(start, dtype=np.float64), POSE_DIM)   # (..., A, 7)
    s = s[..., None, :, :]                                           # (..., 1, A, 7)
    r0 = quat_to_matrix(s[..., 3:])                                  # (..., 1, A, 3, 3)
    r = quat_to_matrix(p[..., 3:])
    r0t = np.swapaxes(r0, -1, -2)
    pos = np.einsum("...ij,...j->...i", r0t, p[..., :3] - s[..., :3])
    rot = matrix_to_rot6d(r0t @ r)
    out = np.concatenate([pos, rot], axis=-1)
    return out.reshape(out.shape[:-2] + (-1,)).astype(np.float32)


def relative_to_absolute(rel: np.ndarray, start: np.ndarray) -> np.ndarray:
    """Inverse of :func:`absolute_to_relative`: (..., A*9) and start (A*7) -> (..., A*7).

    Works for one step (rel (A*9,), start (A*7,)) as well as chunks (H, A*9).
    """
    rel = np.asarray(rel, dtype=np.float64)
    single = rel.ndim == 1
    if single:
        rel = rel[None]
    x = _split_arms(rel, REL_DIM)                                    # (..., H, A, 9)
    s = _split_arms(np.asarray(start, dtype=np.float64), POSE_DIM)[..., None, :, :]
    r0 = quat_to_matrix(s[..., 3:])
    pos = s[..., :3] + np.einsum("...ij,...j->...i", r0, x[..., :3])
    rot = r0 @ rot6d_to_matrix(x[..., 3:])
    out = np.concatenate([pos, matrix_to_quat(rot)], axis=-1)
    out = out.reshape(out.shape[:-2] + (-1,)).astype(np.float32)
    return out[0] if single else out


# ----------------------------------------------------------------------------- one pose, per tick
# The batched helpers above cost ~100 us per call on a single pose (broadcasting, moveaxis,
# einsum set-up). A control loop converts one pose per arm per tick: these do the same
# arithmetic on plain 3-vectors, checked against the batched ones in the tests.

def _unit_quat_matrix(x, y, z, w) -> np.ndarray:
    """3x3 rotation matrix of a unit quaternion's components."""
    return np.array([[1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
                     [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
                     [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)]])


def quat_to_matrix_one(q) -> np.ndarray:
    """Quaternion x, y, z, w (normalised here) -> 3x3 rotation matrix."""
    x, y, z, w = np.asarray(q, dtype=np.float64) / np.sqrt(np.dot(q, q))
    return _unit_quat_matrix(x, y, z, w)


def _sqrt(x: float) -> float:
    """``np.sqrt`` for one float: NaN (not an error) below zero."""
    return math.sqrt(x) if x >= 0.0 else math.nan


def _quat_of(m00, m01, m02, m10, m11, m12, m20, m21, m22) -> np.ndarray:
    """Quaternion x, y, z, w (w >= 0) of a rotation matrix given by its elements (Python
    floats: at the fast loop's rate numpy's per-element indexing costs more than the maths)."""
    tr = m00 + m11 + m22
    if tr > 0:
        s = 2.0 * _sqrt(tr + 1.0)
        q = ((m21 - m12) / s, (m02 - m20) / s, (m10 - m01) / s, 0.25 * s)
    elif m00 > m11 and m00 > m22:
        s = 2.0 * _sqrt(1.0 + m00 - m11 - m22)
        q = (0.25 * s, (m01 + m10) / s, (m02 + m20) / s, (m21 - m12) / s)
    elif m11 > m22:
        s = 2.0 * _sqrt(1.0 + m11 - m00 - m22)
        q = ((m01 + m10) / s, 0.25 * s, (m12 + m21) / s, (m02 - m20) / s)
    else:
        s = 2.0 * _sqrt(1.0 + m22 - m00 - m11)
        q = ((m02 + m20) / s, (m12 + m21) / s, 0.25 * s, (m10 - m01) / s)
    n = _sqrt(q[0] * q[0] + q[1] * q[1] + q[2] * q[2] + q[3] * q[3])
    k = -1.0 / n if q[3] < 0 else 1.0 / n
    return np.array((q[0] * k, q[1] * k, q[2] * k, q[3] * k))


def matrix_to_quat_one(m: np.ndarray) -> np.ndarray:
    """3x3 rotation matrix -> quaternion x, y, z, w (w >= 0), Shepperd's method."""
    (m00, m01, m02), (m10, m11, m12), (m20, m21, m22) = np.asarray(m, dtype=np.float64).tolist()
    return _quat_of(m00, m01, m02, m10, m11, m12, m20, m21, m22)


def _unit3(x: float, y: float, z: float) -> tuple[float, float, float]:
    n = _sqrt(x * x + y * y + z * z)
    if not n > 0.0:     # zero or NaN: no direction (numpy's division would give NaN or inf)
        return math.nan, math.nan, math.nan
    return x / n, y / n, z / n


def rel_to_abs_one(rel: np.ndarray, frames: list[tuple[np.ndarray, np.ndarray]]) -> np.ndarray:
    """One step of :func:`relative_to_absolute`: (A*9) relative action and the start frames
    [(p0 (3,), R0 (3, 3)) per arm] -> (A*7) absolute pose. The 6D rotation is
    orthonormalised in Python floats (Gram-Schmidt of its two columns, the third their cross
    product): this runs once or twice per tick of the 1 kHz loop."""
    out = np.empty(POSE_DIM * len(frames))
    for i, (p0, r0) in enumerate(frames):
        x, y, z, a0, a1, a2, c0, c1, c2 = rel[REL_DIM * i:REL_DIM * (i + 1)].tolist()
        b10, b11, b12 = _unit3(a0, a1, a2)
        d = b10 * c0 + b11 * c1 + b12 * c2
        b20, b21, b22 = _unit3(c0 - d * b10, c1 - d * b11, c2 - d * b12)
        b = np.array(((b10, b20, b11 * b22 - b12 * b21),
                      (b11, b21, b12 * b20 - b10 * b22),
                      (b12, b22, b10 * b21 - b11 * b20)))     # columns b1, b2, b1 x b2
        out[POSE_DIM * i:POSE_DIM * i + 3] = p0 + r0 @ np.array((x, y, z))
        out[POSE_DIM * i + 3:POSE_DIM * (i + 1)] = _quat_of(*(r0 @ b).ravel().tolist())
    return out


# ----------------------------------------------------------------------------- MuJoCo order (w, x, y, z)


def xyzw_to_wxyz(q) -> np.ndarray:
    q = np.asarray(q, float)
    return np.array([q[3], q[0], q[1], q[2]])


def wxyz_to_xyzw(q) -> np.ndarray:
    q = np.asarray(q, float)
    return np.array([q[1], q[2], q[3], q[0]])


def quat_angle(a, b):
    """Rotation angle (rad) between unit quaternions ``a`` and ``b`` (either order, x, y, z, w
    or w, x, y, z alike; q and -q are one rotation), over the last axis: a float for two
    quaternions, an array for stacks of them."""
    d = np.abs(np.sum(np.asarray(a, float) * np.asarray(b, float), axis=-1))
    ang = 2.0 * np.arccos(np.clip(d, 0.0, 1.0))
    return float(ang) if np.ndim(ang) == 0 else ang


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


def quat_wxyz_to_matrix(q) -> np.ndarray:
    """3x3 rotation matrix of a w, x, y, z quaternion (normalised here)."""
    w, x, y, z = np.asarray(q, float) / np.linalg.norm(q)
    return _unit_quat_matrix(x, y, z, w)


# ----------------------------------------------------------------------------- torch

def rot6d_to_matrix_torch(r):
    """Torch version of :func:`rot6d_to_matrix` ((..., 6) -> (..., 3, 3))."""
    import torch
    a1, a2 = r[..., 0:3], r[..., 3:6]
    b1 = torch.nn.functional.normalize(a1, dim=-1)
    a2 = a2 - (b1 * a2).sum(-1, keepdim=True) * b1
    b2 = torch.nn.functional.normalize(a2, dim=-1)
    b3 = torch.cross(b1, b2, dim=-1)
    return torch.stack([b1, b2, b3], dim=-1)


# ----------------------------------------------------------------------------- a mobile base's camera

#: A camera's OpenCV optical frame (x right, y down, z forward) in a base frame (x forward,
#: y left, z up) when it looks along the base's x. Columns: optical x = -base y, optical
#: y = -base z, optical z = base x.
R_BASE_FROM_OPTICAL = np.array([[0.0, 0.0, 1.0], [-1.0, 0.0, 0.0], [0.0, -1.0, 0.0]])


@dataclass(frozen=True)
class BaseCameraMount:
    """Where a mobile base's forward-looking camera sits: the one definition of the mount the
    nav sim renders from and ``streamvln_nav`` assumes (its ``camera.*`` parameters)."""

    x: float = described(0.1, "camera optical centre ahead of the base origin (m)", -1.0, 1.0)
    z: float = described(0.88, "camera optical centre above the base origin (m)", 0.0, 3.0)

    def __post_init__(self):
        check_ranges(self)


def base_camera_pose(x: float, y: float, yaw: float, mount: BaseCameraMount) -> np.ndarray:
    """4x4 pose of the camera's optical frame for the base at (x, y, yaw) on the floor."""
    c, s = math.cos(yaw), math.sin(yaw)
    rz = np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])
    T = np.eye(4)
    T[:3, :3] = rz @ R_BASE_FROM_OPTICAL
    T[:3, 3] = rz @ np.array([mount.x, 0.0, mount.z]) + np.array([x, y, 0.0])
    return T


# ---------------------------------------------------------------- URDF roll-pitch-yaw

def rpy_matrix(r: float, p: float, y: float) -> np.ndarray:
    """URDF's fixed-axis roll-pitch-yaw: R = Rz(yaw) Ry(pitch) Rx(roll)."""
    cr, sr, cp, sp, cy, sy = np.cos(r), np.sin(r), np.cos(p), np.sin(p), np.cos(y), np.sin(y)
    return np.array([[cy * cp, cy * sp * sr - sy * cr, cy * sp * cr + sy * sr],
                     [sy * cp, sy * sp * sr + cy * cr, sy * sp * cr - cy * sr],
                     [-sp, cp * sr, cp * cr]])


def matrix_rpy(m: np.ndarray) -> tuple[float, float, float]:
    """The inverse of :func:`rpy_matrix` (pitch in [-pi/2, pi/2])."""
    p = float(np.arcsin(np.clip(-m[2, 0], -1.0, 1.0)))
    if abs(np.cos(p)) > 1e-9:
        return float(np.arctan2(m[2, 1], m[2, 2])), p, float(np.arctan2(m[1, 0], m[0, 0]))
    return float(np.arctan2(-m[1, 2], m[1, 1])), p, 0.0      # gimbal lock: roll carries it all

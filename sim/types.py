"""Plain data types crossing the simulator's API boundary (quaternions are x, y, z, w); camera
intrinsics are :class:`slowfast_data.camera.CameraIntrinsics`."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Tuple

import numpy as np


@dataclass
class ArmState:
    """What a real arm reports over its topics, captured at ``stamp`` (sim seconds)."""

    stamp: float
    tcp_pos: np.ndarray      # (3,) world frame, m
    tcp_quat: np.ndarray     # (4,) x, y, z, w, world frame
    tcp_linvel: np.ndarray   # (3,) world frame, m/s
    tcp_angvel: np.ndarray   # (3,) world frame, rad/s
    wrench: np.ndarray       # (6,) fx, fy, fz, tx, ty, tz in the tool frame f"{arm}_tool"; N, N·m
    tactile: np.ndarray      # (n_markers, 4) float32: x, y, dx, dy in the pad frame, m
    gripper: Optional[Tuple[float, float]] = None   # (width m, force N); None: no gripper

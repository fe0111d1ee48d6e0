"""The one pinhole camera intrinsics type: the simulator's rendered cameras, the RealSense
driver and ROS CameraInfo messages all use :class:`CameraIntrinsics`."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class CameraIntrinsics:
    """Pinhole intrinsics in pixels, ROS CameraInfo style; ``model`` and ``coeffs``: the lens
    distortion (``"none"`` and zeros for an ideal camera, e.g. a rendered one)."""

    width: int
    height: int
    fx: float
    fy: float
    cx: float
    cy: float
    frame_id: str
    model: str = "none"
    coeffs: tuple = (0.0, 0.0, 0.0, 0.0, 0.0)

    @property
    def matrix(self) -> np.ndarray:
        """The 3x3 camera matrix K."""
        return np.array([[self.fx, 0.0, self.cx], [0.0, self.fy, self.cy], [0.0, 0.0, 1.0]])

"""Which camera frame a navigation turn sees, and where the camera was: no ROS.

A turn takes the newest colour image with its depth and intrinsics, and the base pose from
the odometry at the image's stamp, mounted as :class:`slowfast_data.geometry.BaseCameraMount`
says. :class:`FrameSync` decides, per candidate frame, whether it is usable, and counts why
one is not (in a ``Counter`` the caller shares with its other skip reasons):

* ``encoding``: not a 3-channel colour image (or, reported by the caller, not decodable);
* ``size_mismatch``: colour and depth, or colour and intrinsics, of different sizes;
* ``stamp_skew``: depth stamped more than ``max_stamp_skew`` from the colour image (the
  matching depth may still come: the frame is tried again);
* ``no_pose_at_stamp``: no odometry within ``pose_tolerance`` of the image stamp (tried again).

A frame rejected for its content is not tried again; a frame is new only when stamped after
the last one used or rejected.
"""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

import numpy as np

from slowfast_data.camera import CameraIntrinsics
from slowfast_data.geometry import BaseCameraMount, base_camera_pose


@dataclass
class SyncedFrame:
    rgb: np.ndarray            # H x W x 3 uint8
    depth: np.ndarray          # H x W float32, metres
    K: np.ndarray              # 3 x 3
    camera_pose: np.ndarray    # 4 x 4, world from the camera's optical frame
    base_pose: np.ndarray      # x, y, yaw of the base at the image stamp
    stamp: float               # the colour image's stamp


class FrameSync:
    def __init__(self, max_stamp_skew: float, pose_tolerance: float, mount: BaseCameraMount,
                 skips: Counter | None = None):
        self.max_stamp_skew = max_stamp_skew
        self.pose_tolerance = pose_tolerance
        self.mount = mount
        self.skips = Counter() if skips is None else skips
        self.last_stamp = -1.0     # the newest frame used or rejected

    def reset(self) -> None:
        """A new episode: any frame from now on is new."""
        self.last_stamp = -1.0

    def is_new(self, stamp: float) -> bool:
        return stamp > self.last_stamp

    def used(self, stamp: float) -> None:
        """The frame stamped ``stamp`` fed a turn: wait for a newer one."""
        self.last_stamp = stamp

    def reject(self, stamp: float, reason: str) -> None:
        """The frame cannot be used (counted under ``reason``) and is not tried again."""
        self.skips[reason] += 1
        self.last_stamp = stamp

    def match(self, stamp: float, rgb: np.ndarray, depth_m: np.ndarray, depth_stamp: float,
              intr: CameraIntrinsics, odom_hist) -> SyncedFrame | None:
        """The frame (colour image stamped ``stamp``, decoded, RGB order) with its depth and
        the base pose from ``odom_hist`` ([(stamp, (x, y, yaw)), ...]) nearest the image
        stamp, or None (counted)."""
        if rgb.ndim != 3 or rgb.shape[2] != 3:
            self.reject(stamp, "encoding")
            return None
        if rgb.shape[:2] != depth_m.shape:
            self.reject(stamp, "size_mismatch")
            return None
        if abs(depth_stamp - stamp) > self.max_stamp_skew:
            self.skips["stamp_skew"] += 1
            return None  # the matching depth may still come
        stamps = np.array([h[0] for h in odom_hist])
        k = int(np.argmin(np.abs(stamps - stamp)))
        if abs(stamps[k] - stamp) > self.pose_tolerance:
            self.skips["no_pose_at_stamp"] += 1
            return None
        base = odom_hist[k][1]
        if (intr.width, intr.height) != (rgb.shape[1], rgb.shape[0]):
            self.reject(stamp, "size_mismatch")
            return None
        return SyncedFrame(rgb, depth_m.astype(np.float32), intr.matrix,
                           base_camera_pose(base[0], base[1], base[2], self.mount), base, stamp)

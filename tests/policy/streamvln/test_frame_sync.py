"""Which frame a navigation turn sees (policy.streamvln.frame_sync), without ROS: each reason a
frame is skipped, which of them are tried again, and the camera pose at the image stamp."""
from __future__ import annotations

from collections import Counter

import numpy as np

from policy.streamvln.frame_sync import FrameSync
from slowfast_data.camera import CameraIntrinsics
from slowfast_data.geometry import BaseCameraMount, base_camera_pose

W, H = 8, 6
INTR = CameraIntrinsics(W, H, 5.0, 5.0, 4.0, 3.0, "cam")
HIST = [(9.0, np.array([0.0, 0.0, 0.0])), (10.0, np.array([1.0, 2.0, 0.5])), (11.0, np.array([3.0, 0.0, 0.0]))]


def _sync(skips=None):
    return FrameSync(max_stamp_skew=0.05, pose_tolerance=0.3, mount=BaseCameraMount(), skips=skips)


def _rgb():
    return np.zeros((H, W, 3), np.uint8)


def test_a_good_frame_takes_the_pose_nearest_its_stamp_and_the_mounted_camera():
    sync = _sync()
    f = sync.match(10.1, _rgb(), np.ones((H, W), np.float64), 10.12, INTR, HIST)
    assert f is not None and f.stamp == 10.1 and f.depth.dtype == np.float32
    assert np.array_equal(f.base_pose, HIST[1][1]) and np.array_equal(f.K, INTR.matrix)
    assert np.array_equal(f.camera_pose, base_camera_pose(1.0, 2.0, 0.5, BaseCameraMount()))
    assert not sync.skips
    assert sync.is_new(10.1)            # matched, not yet used by a turn
    sync.used(10.1)
    assert not sync.is_new(10.1) and sync.is_new(10.2)
    sync.reset()
    assert sync.is_new(0.0)


def test_content_faults_are_counted_once_timing_faults_are_retried():
    skips = Counter({"agent_error": 1})   # the node shares its counter
    sync = _sync(skips)
    assert sync.match(1.0, np.zeros((H, W), np.uint8), np.ones((H, W)), 1.0, INTR, HIST) is None
    assert skips["encoding"] == 1 and not sync.is_new(1.0)
    assert sync.match(2.0, _rgb(), np.ones((H + 1, W)), 2.0, INTR, HIST) is None
    assert skips["size_mismatch"] == 1 and not sync.is_new(2.0)
    other = CameraIntrinsics(W * 2, H * 2, 5.0, 5.0, 8.0, 6.0, "cam")
    assert sync.match(10.1, _rgb(), np.ones((H, W)), 10.1, other, HIST) is None
    assert skips["size_mismatch"] == 2 and not sync.is_new(10.1)
    # the depth of another instant: the matching one may still come
    assert sync.match(11.0, _rgb(), np.ones((H, W)), 11.2, INTR, HIST) is None
    assert skips["stamp_skew"] == 1 and sync.is_new(11.0)
    # no odometry near the image stamp (newest pose 11.0, tolerance 0.3 s)
    assert sync.match(11.4, _rgb(), np.ones((H, W)), 11.4, INTR, HIST) is None
    assert skips["no_pose_at_stamp"] == 1 and sync.is_new(11.4)
    sync.reject(12.0, "encoding")
    assert skips["encoding"] == 2 and skips["agent_error"] == 1

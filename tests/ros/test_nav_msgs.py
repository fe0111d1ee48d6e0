"""Twist and Odometry conversions of msgs.py."""
import math

import numpy as np
import pytest

from slowfast_ros import msgs


def test_odometry_round_trip_and_yaw():
    for yaw in (0.0, 1.0, -2.5, math.pi - 1e-6):
        m = msgs.odometry_msg(12.25, "odom", "base_link", (1.0, -2.0, yaw), (0.3, -0.2))
        stamp, pose, twist = msgs.odometry_from_msg(m)
        assert stamp == pytest.approx(12.25) and m.header.frame_id == "odom" and m.child_frame_id == "base_link"
        assert np.allclose(pose, [1.0, -2.0, yaw]) and np.allclose(twist, [0.3, -0.2])


def test_odometry_and_twist_reject_non_finite():
    m = msgs.odometry_msg(1.0, "odom", "base_link", (0.0, 0.0, 0.0), (0.0, 0.0))
    m.pose.pose.position.x = float("nan")
    with pytest.raises(ValueError, match="not finite"):
        msgs.odometry_from_msg(m)
    t = msgs.twist_msg(0.2, -0.1)
    assert msgs.twist_from_msg(t) == (0.2, -0.1)
    t.angular.z = float("inf")
    with pytest.raises(ValueError, match="cmd_vel"):
        msgs.twist_from_msg(t)

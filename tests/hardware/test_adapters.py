"""The command bridge's robot adapters without ROS (hardware.adapters): what each keeps of
the measurements, what a target and a hold send."""
from __future__ import annotations

import numpy as np

from hardware.adapters import CartesianTargetAdapter, GantryAdapter

Q = np.array([0.0, 0.0, 0.0, 1.0])


def test_cartesian_adapter_keeps_the_base_frame_pose_and_sends_targets_in_it():
    sent = []
    a = CartesianTargetAdapter("base_link", lambda *args: sent.append(args))
    assert not a.hold(1.0) and sent == []                       # no state yet: cannot hold
    a.on_pose("tool0", 1.0, np.array([9.0, 9.0, 9.0]), Q)      # another frame: counted, ignored
    a.on_pose("base_link", 1.0, np.array([np.nan, 0.0, 0.0]), Q)   # NaN: ignored
    assert a.foreign_frame == 1 and a.state().pos is None
    a.on_pose("", 2.0, np.array([0.1, 0.2, 0.3]), Q)            # '' is the base frame
    a.on_wrench("ft", 2.5, np.arange(6.0))
    a.on_wrench("ft", 3.0, np.full(6, np.inf))                  # ignored
    s = a.state()
    assert s.pose_stamp == 2.0 and np.array_equal(s.pos, [0.1, 0.2, 0.3])
    assert (s.wrench_stamp, s.wrench_frame) == (2.5, "ft") and np.array_equal(s.wrench, np.arange(6.0))
    a.send_target(4.0, np.array([0.0, 0.0, 0.5]), Q)
    assert a.hold(5.0)
    assert [(st, f) for st, f, _, _ in sent] == [(4.0, "base_link"), (5.0, "base_link")]
    assert np.array_equal(sent[1][2], [0.1, 0.2, 0.3])          # the hold is the measured pose


def test_gantry_adapter_is_three_joints_with_a_fixed_tool_orientation():
    sent = []
    a = GantryAdapter("world", ["tool_x", "tool_y", "tool_z"], [1.0, 0.0, 0.0, 0.0], sent.append)
    assert not a.hold(0.0)
    a.on_joint_positions(1.0, np.array([0.1, np.nan, 0.2]))    # ignored
    a.on_joint_positions(2.0, np.array([0.1, -0.1, 0.2]))
    s = a.state()
    assert s.pose_stamp == 2.0 and np.array_equal(s.quat, [1.0, 0.0, 0.0, 0.0]) and a.foreign_frame == 0
    a.send_target(3.0, np.array([0.2, 0.0, 0.3]), Q)            # the orientation is not applied
    assert a.hold(4.0)
    assert sent == [[0.2, 0.0, 0.3], [0.1, -0.1, 0.2]] and all(type(v) is float for v in sent[0])

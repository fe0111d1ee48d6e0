"""robot_bridge_node's logic without ROS (hardware.bridge.RobotBridge): the state in the world
frame, each reading published once, targets sent in the base frame or the robot held, the
activation restart, and the diagnostics' level and message."""
from __future__ import annotations

import numpy as np
import pytest

from hardware.adapters import CartesianTargetAdapter
from hardware.bridge import BridgeConfig, RobotBridge, base_transform
from hardware.robot import GateConfig

Q = np.array([1.0, 0.0, 0.0, 0.0])          # tool pointing down
BASE_IN_WORLD = [1.0, 0.0, 0.5, 0.0, 0.0, 0.0, 1.0]   # the base 1 m along x and 0.5 m up


def _bridge(**gate):
    b = RobotBridge(GateConfig(**gate), BASE_IN_WORLD)
    sent = []
    b.robot = CartesianTargetAdapter("base", lambda stamp, frame, pos, quat: sent.append((stamp, frame, pos, quat)))
    return b, sent


def test_base_transform_names_the_parameter():
    assert base_transform(BASE_IN_WORLD).apply(np.zeros(3), Q)[0].tolist() == [1.0, 0.0, 0.5]
    with pytest.raises(ValueError, match="base_in_world"):
        base_transform([0, 0, 0, 0, 0, 0, 0])


def test_state_in_the_world_frame_and_each_reading_once():
    b, _ = _bridge()
    s, pos, quat = b.state()
    assert pos is None and quat is None and not np.isfinite(s.pose_stamp)
    b.robot.on_pose("base", 10.0, np.array([-0.6, 0.0, -0.2]), Q)
    s, pos, quat = b.state()
    assert pos == pytest.approx([0.4, 0.0, 0.3]) and quat == pytest.approx(Q)
    assert b.is_new("pose", 10.0) and not b.is_new("pose", 10.0)
    assert b.is_new("wrench", 10.0)                # each kind on its own
    assert b.is_new("pose", 10.01)


def test_sends_in_the_base_frame_holds_on_a_bad_target_and_counts():
    b, sent = _bridge(deadline=0.1)
    b.robot.on_pose("base", 10.0, np.array([-0.6, 0.0, -0.2]), Q)
    s, pos, quat = b.state()
    d = b.forward(10.0, (10.0, np.array([0.41, 0.0, 0.3]), Q), 10.0, s, pos, quat)
    assert d.action == "send" and b.sent == 1
    assert sent[-1][1] == "base" and sent[-1][2] == pytest.approx([-0.59, 0.0, -0.2])
    d = b.forward(10.01, (10.01, np.array([np.nan, 0.0, 0.3]), Q), 10.01, s, pos, quat)
    assert d.action == "hold" and b.holds == 1
    assert sent[-1][2] == pytest.approx([-0.6, 0.0, -0.2])     # held where measured (base frame)
    assert b.gate.rejected == {"non_finite": 1}


def test_restart_holds_until_a_new_target():
    b, sent = _bridge()
    b.robot.on_pose("base", 10.0, np.array([-0.6, 0.0, -0.2]), Q)
    s, pos, quat = b.state()
    b.forward(10.0, (10.0, pos, Q), 10.0, s, pos, quat)
    assert not b.gate.holding
    b.restart()
    assert b.gate.holding and b.gate.reason == "no target yet"
    assert b.forward(10.01, None, float("nan"), s, pos, quat).action == "idle" and len(sent) == 1


def test_diagnostics_level_and_message():
    b, _ = _bridge(max_state_age=0.1)
    values, level, message = b.diagnostics(10.0, True, {"target_tcp": 0.0, "tcp_pose": 0.0}, 2)
    assert (values["mode"], level, message) == ("holding", "warn", "holding: no target yet")
    assert values["target_frame_mismatch"] == 2 and values["rate/tcp_pose"] == 0.0
    b.robot.on_pose("elsewhere", 10.0, np.zeros(3), Q)
    b.robot.on_pose("base", 10.0, np.array([-0.6, 0.0, -0.2]), Q)
    s, pos, quat = b.state()
    b.forward(10.0, (10.0, pos, Q), 10.0, s, pos, quat)
    values, level, message = b.diagnostics(10.0, True, {}, 0)
    assert (values["mode"], level, message, values["targets_sent"]) == ("commanding", "ok", "", 1)
    assert values["state_frame_mismatch"] == 1
    b.forward(10.5, None, 10.0, s, pos, quat)                  # the robot's state is 0.5 s old
    values, level, message = b.diagnostics(10.5, True, {}, 0)
    assert level == "error" and message.startswith("holding: robot state 0.500 s old")
    # inactive: only whether the robot's state still comes matters
    assert b.diagnostics(10.05, False, {}, 0)[1:] == ("warn", "inactive: holding")
    assert b.diagnostics(10.5, False, {}, 0)[1:] == ("error", "inactive: holding, robot state 0.500 s old")
    assert b.diagnostics(10.5, False, {}, 0)[0]["mode"] == "inactive"
    fresh, _ = _bridge()
    assert fresh.diagnostics(1.0, False, {}, 0)[1:] == ("error", "inactive: holding, no robot state")


@pytest.mark.parametrize(("kw", "field"), [
    ({"base_in_world": [0.0] * 6}, "base_in_world"), ({"gantry_joints": ["x", "y"]}, "gantry_joints"),
    ({"tool_quat": [1.0, 0.0, 0.0, 0.1]}, "tool_quat"), ({"rate_hz": 2000.0}, "rate_hz")])
def test_bridge_config_names_the_bad_setting(kw, field):
    BridgeConfig()                              # the defaults are valid
    with pytest.raises(ValueError, match=f"^{field}:"):
        BridgeConfig(**kw)

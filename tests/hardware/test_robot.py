"""The command gate of the robot bridge and the base<->world transform."""
import numpy as np
import pytest

from hardware.robot import CommandGate, GateConfig, RigidTransform, quat_angle

Q = np.array([1.0, 0.0, 0.0, 0.0])         # tool pointing down
TCP = np.array([0.4, 0.0, 0.3])


def _gate(**kw):
    return CommandGate(GateConfig(**kw))


def test_starts_held_sends_good_targets_and_holds_when_the_topic_goes_silent():
    g = _gate(deadline=0.1)
    assert g.holding
    d = g.decide(10.0, None, float("nan"), 10.0, TCP, Q)
    assert d.action == "idle" and g.holding                                    # nothing yet: stays held
    d = g.decide(10.0, (10.0, TCP + 0.01, Q), 10.0, 10.0, TCP, Q)
    assert d.action == "send" and not g.holding
    assert g.decide(10.05, None, 10.0, 10.05, TCP, Q).action == "idle"          # within the deadline
    d = g.decide(10.2, None, 10.0, 10.2, TCP, Q)
    assert d.action == "hold" and "silent" in d.reason
    assert g.decide(10.3, None, 10.0, 10.3, TCP, Q).action == "idle"            # hold is sent once
    assert g.decide(10.4, (10.4, TCP, Q), 10.4, 10.4, TCP, Q).action == "send"  # targets flow again


@pytest.mark.parametrize("target, kind", [
    ((10.0, [np.nan, 0.0, 0.3], Q), "non_finite"),
    ((10.0, TCP, [0.0, 0.0, 0.5, 0.5]), "quaternion"),
    ((10.0, [3.0, 0.0, 0.3], Q), "workspace"),
    ((9.0, TCP, Q), "stale"),
    ((10.0, TCP + [0.2, 0.0, 0.0], Q), "step"),
    ((10.0, TCP, [0.0, 1.0, 0.0, 0.0]), "rotation"),
])
def test_bad_targets_are_rejected_counted_and_hold_the_robot(target, kind):
    g = _gate()
    assert g.decide(10.0, (10.0, TCP, Q), 10.0, 10.0, TCP, Q).action == "send"
    d = g.decide(10.0, target, 10.0, 10.0, TCP, Q)
    assert d.action == "hold" and d.reason.startswith("rejected")
    assert g.rejected == {kind: 1} and g.holding


def test_no_motion_without_fresh_robot_state():
    g = _gate(max_state_age=0.1)
    d = g.decide(10.0, (10.0, TCP, Q), 10.0, float("nan"), TCP, Q)
    assert g.holding and d.reason == "no robot state"
    g = _gate(max_state_age=0.1)
    g.decide(10.0, (10.0, TCP, Q), 10.0, 10.0, TCP, Q)
    d = g.decide(10.5, (10.5, TCP, Q), 10.5, 10.0, TCP, Q)
    assert d.action == "hold" and "robot state" in d.reason


def test_transform_round_trip_and_inverse():
    s = np.sqrt(0.5)
    base_in_world = RigidTransform((0.1, -0.2, 0.75), (0.0, 0.0, s, s))      # base rotated 90 deg about z
    pos_w, q_w = base_in_world.apply([0.5, 0.0, 0.0], [0.0, 0.0, 0.0, 1.0])
    np.testing.assert_allclose(pos_w, [0.1, 0.3, 0.75], atol=1e-12)
    pos_b, q_b = base_in_world.inverse().apply(pos_w, q_w)
    np.testing.assert_allclose(pos_b, [0.5, 0.0, 0.0], atol=1e-12)
    assert quat_angle(q_b, [0.0, 0.0, 0.0, 1.0]) < 1e-9


def test_bad_settings_name_the_field():
    with pytest.raises(ValueError, match="deadline"):
        GateConfig(deadline=0.0)
    with pytest.raises(ValueError, match="workspace_min, workspace_max"):
        GateConfig(workspace_min=(0, 0, 0), workspace_max=(1, 1, 0))
    with pytest.raises(ValueError, match="unit quaternion"):
        RigidTransform((0, 0, 0), (0, 0, 0, 2))

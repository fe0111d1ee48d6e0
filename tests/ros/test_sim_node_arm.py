"""The sim node with the Panda arm (``embodiment: arm``) over real DDS: joint states published,
a good target moves the TCP through the arm's controller, and a target beyond the arm's reach
(inside the task workspace, so accepted) makes the controller saturate and say so in
/diagnostics."""
import time

import numpy as np
import pytest
from diagnostic_msgs.msg import DiagnosticArray
from geometry_msgs.msg import PoseStamped
from sensor_msgs.msg import JointState

from slowfast_ros import msgs
from slowfast_app import stack
from slowfast_ros.topic_probe import TopicProbe

pytestmark = pytest.mark.dds


@pytest.fixture(scope="module")
def arm_stack(tmp_path_factory):
    overrides = {"sim_node": {"task": "wipe", "embodiment": "arm", "camera_hz": 0.0, "episode_seconds": 120.0,
                              "perturb": False, "start_delay": 0.2}}
    logs = tmp_path_factory.mktemp("sim_arm_logs")
    probe = TopicProbe({"/arm/tcp_pose": PoseStamped, "/arm/joint_states": JointState,
                        "/diagnostics": DiagnosticArray})
    with stack.Stack(stack.load_profile("sim"), overrides, log_dir=logs) as s:
        assert probe.wait_for(["/arm/tcp_pose", "/arm/joint_states"], timeout=60.0, count=3), s.last_line("sim_node")
        yield s, probe
    probe.close()


def _diag(probe, key, ok, timeout: float = 15.0):
    """The sim node's /diagnostics status once ``ok(values)`` holds (or the last one seen)."""
    end = time.monotonic() + timeout
    st = {}
    while time.monotonic() < end:
        st = probe.diagnostics("sim_node", timeout=3.0).get("sim_node", {})
        if key in st and ok(st):
            break
    return st


def test_joint_states_and_controller_counters_are_published(arm_stack):
    _, probe = arm_stack
    js = probe.latest("/arm/joint_states", JointState)
    assert list(js.name) == [f"arm_joint{i}" for i in range(1, 8)]
    assert len(js.position) == len(js.velocity) == len(js.effort) == 7
    assert np.all(np.isfinite(js.position)) and np.all(np.abs(js.effort) <= 80.0)
    st = _diag(probe, "controller/arm/steps", lambda v: int(v["controller/arm/steps"]) > 0)
    assert int(st["controller/arm/steps"]) > 0 and int(st["controller/arm/nonfinite"]) == 0


def test_good_target_moves_the_arm_far_target_saturates_and_is_reported(arm_stack):
    _, probe = arm_stack
    node = probe.node
    pub = probe.matched_publisher("/arm/target_tcp", PoseStamped)
    now = probe.now
    _, pos0, quat0 = msgs.pose_from_msg(probe.latest("/arm/tcp_pose", PoseStamped))
    goal = pos0 + np.array([0.03, 0.0, 0.02])
    for _ in range(150):  # stream the command at 100 Hz, as a controller would
        pub.publish(msgs.pose_msg(now(), "world", goal, quat0))
        time.sleep(0.01)
    _, pos1, _ = msgs.pose_from_msg(probe.latest("/arm/tcp_pose", PoseStamped))
    assert np.linalg.norm(pos1 - goal) < 0.01, (pos1, goal)

    far = [0.35, 0.25, 0.35]   # the workspace's far corner: accepted, but out of the arm's reach
    for _ in range(100):
        pub.publish(msgs.pose_msg(now(), "world", far, quat0))
        time.sleep(0.01)
    st = _diag(probe, "controller/arm/wrench_saturated", lambda v: int(v["controller/arm/wrench_saturated"]) > 0)
    assert int(st["controller/arm/wrench_saturated"]) > 0, st
    assert int(st["controller/arm/nonfinite"]) == 0
    js = probe.latest("/arm/joint_states", JointState)
    assert np.all(np.isfinite(js.effort)) and np.all(np.abs(js.effort) <= 80.0)
    node.destroy_publisher(pub)

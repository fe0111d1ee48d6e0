"""safety_node between a command source and the sim over DDS: unsafe requests are shaped or
refused, the e-stop holds, and nothing unsafe reaches the arm."""
import time

import numpy as np
import pytest
from geometry_msgs.msg import PoseStamped
from std_msgs.msg import Bool

from slowfast_ros import msgs, qos
from slowfast_app import stack
from slowfast_ros.topic_probe import TopicProbe

pytestmark = pytest.mark.dds


def test_requests_are_filtered_before_they_reach_the_sim(tmp_path):
    profile = stack.Profile("t", "", [
        stack.NodeSpec("sim_node", "slowfast_ros.nodes.sim_node", ["sim_node.yaml"]),
        stack.NodeSpec("safety_node", "slowfast_ros.nodes.safety_node", ["safety_node.yaml"])])
    overrides = {"sim_node": {"camera_hz": 0.0, "episode_seconds": 120.0, "perturb": False, "start_delay": 0.2},
                 "safety_node": {"safety.max_speed": 0.1, "safety.max_accel": 2.0}}
    probe = TopicProbe({"/arm/target_tcp": PoseStamped, "/arm/tcp_pose": PoseStamped})
    node = probe.node
    req = node.create_publisher(PoseStamped, "/arm/target_tcp_unsafe", qos.COMMAND)
    estop = node.create_publisher(Bool, "/safety/estop", qos.LATCHED)
    now = lambda: node.get_clock().now().nanoseconds * 1e-9  # noqa: E731
    try:
        with stack.Stack(profile, overrides, log_dir=tmp_path) as s:
            assert probe.wait_for(["/arm/target_tcp", "/arm/tcp_pose"], timeout=60, abort=s.any_exited), \
                s.last_line("safety_node") + s.last_line("sim_node")
            time.sleep(0.3)
            home = np.array(msgs.pose_from_msg(probe.latest("/arm/tcp_pose", PoseStamped))[1])
            q = [0.0, 0.0, 0.0, 1.0]
            # A request 1 m away and below the table: outside the workspace, far too fast.
            far = home + np.array([1.0, 0.0, -0.5])
            got = []
            sub = node.create_subscription(PoseStamped, "/arm/target_tcp", got.append, qos.RECORD_SUB)
            for _ in range(100):
                req.publish(msgs.pose_msg(now(), "world", far, q))
                time.sleep(0.01)
            node.destroy_subscription(sub)
            out = got
            cmds = np.array([msgs.pose_from_msg(m)[1] for m in got])
            assert cmds[:, 0].max() <= 0.35 + 1e-6 and cmds[:, 2].min() >= -0.08 - 1e-6   # workspace
            stamps = np.array([msgs.stamp_of(m) for m in got])
            speed = np.linalg.norm(np.diff(cmds, axis=0), axis=1) / np.diff(stamps)
            assert speed.max() <= 0.1 * 1.01                                                # the speed limit
            assert len(out) > 100 and np.linalg.norm(cmds[-1] - home) > 0.02                # and it did move
            # NaN requests: the output holds still.
            for _ in range(30):
                req.publish(msgs.pose_msg(now(), "world", [np.nan, 0, 0.1], q))
                time.sleep(0.01)
            held = np.array([msgs.pose_from_msg(m)[1] for m in probe.collect("/arm/target_tcp", PoseStamped, 0.15)])
            assert np.ptp(held, axis=0).max() < 1e-9
            # E-stop: a good request is not followed.
            estop.publish(Bool(data=True))
            time.sleep(0.2)
            for _ in range(30):
                req.publish(msgs.pose_msg(now(), "world", home, q))
                time.sleep(0.01)
            held = np.array([msgs.pose_from_msg(m)[1] for m in probe.collect("/arm/target_tcp", PoseStamped, 0.15)])
            assert np.ptp(held, axis=0).max() < 1e-9
            assert s.procs["safety_node"].poll() is None
    finally:
        probe.close()

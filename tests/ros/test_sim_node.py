"""The sim node over real DDS (this test run's own ROS domain, localhost only): every topic
at its configured rate with monotonic capture stamps while the camera renders; bad targets
rejected and counted, never applied; a good target moves the tool."""
import time

import numpy as np
import pytest
from diagnostic_msgs.msg import DiagnosticArray
from geometry_msgs.msg import PoseStamped, WrenchStamped
from sensor_msgs.msg import CameraInfo, Image, PointCloud2
from std_msgs.msg import String

from slowfast_ros import msgs, qos
from slowfast_app import stack
from slowfast_ros.topic_probe import TopicProbe

pytestmark = pytest.mark.dds

RATES = {"/arm/tcp_pose": 200.0, "/arm/tcp_wrench": 200.0, "/arm/tactile/markers": 200.0,
         "/camera/color/image_raw": 30.0, "/camera/color/camera_info": 30.0}
TYPES = {"/arm/tcp_pose": PoseStamped, "/arm/tcp_wrench": WrenchStamped, "/arm/tactile/markers": PointCloud2,
         "/camera/color/image_raw": Image, "/camera/color/camera_info": CameraInfo}


@pytest.fixture(scope="module")
def sim_stack(tmp_path_factory):
    overrides = {"sim_node": {"task": "wipe", "camera_hz": 30.0, "episode_seconds": 120.0, "perturb": True,
                              "start_delay": 0.2, "render_process": True}}
    logs = tmp_path_factory.mktemp("sim_logs")
    probe = TopicProbe({**TYPES, "/diagnostics": DiagnosticArray, "/sim/episode": String})
    with stack.Stack(stack.load_profile("sim"), overrides, log_dir=logs) as s:
        assert probe.wait_for(list(TYPES), timeout=60.0, count=3), s.last_line("sim_node")
        yield s, probe
    probe.close()


def test_every_topic_on_its_sim_time_cadence_with_monotonic_stamps(sim_stack):
    """Each stream is stamped on its own cadence of sim time (the median stamp interval is its
    period; a camera frame dropped under load makes one interval a multiple of it). Whether
    the machine keeps up in wall time is a benchmark's question (`slowfast bench sim`), not a
    test's: this holds on a loaded machine too."""
    _, probe = sim_stack
    time.sleep(0.5)
    probe.clear()
    time.sleep(4.0)
    stats = probe.stats()
    for name, hz in RATES.items():
        st = stats[name]
        assert st["count"] >= 10, (name, st)
        assert st["stamps_monotonic"], name
        period = 1e3 / hz
        ratio = st["stamp_period_ms_p50"] / period
        assert round(ratio) >= 1 and abs(ratio - round(ratio)) < 0.05, (name, st)


def _diag_value(probe, key, at_least: int, timeout: float = 15.0):
    """The newest value of ``key`` in the sim node's /diagnostics status, polled until it
    reaches ``at_least`` or ``timeout`` (a loaded CI machine delivers /diagnostics late)."""
    end = time.monotonic() + timeout
    value = None
    while time.monotonic() < end:
        value = probe.diagnostics("sim_node", timeout=3.0).get("sim_node", {}).get(key)
        if value is not None and int(value) >= at_least:
            break
    return value


def test_bad_targets_are_rejected_and_counted_good_targets_move_the_tool(sim_stack):
    _, probe = sim_stack
    node = probe.node
    pub = probe.matched_publisher("/arm/target_tcp", PoseStamped)
    now = probe.now
    _, pos0, quat0 = msgs.pose_from_msg(probe.latest("/arm/tcp_pose", PoseStamped))

    for bad in ([np.nan, 0.0, 0.3], [5.0, 5.0, 5.0]):
        for _ in range(5):
            pub.publish(msgs.pose_msg(now(), "world", bad, quat0))
            time.sleep(0.02)
    pub.publish(msgs.pose_msg(now(), "world", pos0, [0.0, 0.0, 0.5, 0.5]))  # not a unit quaternion
    time.sleep(1.5)
    _, pos1, _ = msgs.pose_from_msg(probe.latest("/arm/tcp_pose", PoseStamped))
    assert np.isfinite(pos1).all()
    assert np.linalg.norm(pos1 - pos0) < 0.02  # nothing was applied
    rejected = _diag_value(probe, "rejected/arm/target_tcp", at_least=10)
    assert rejected is not None and int(rejected) >= 10

    goal = pos0 + np.array([0.03, 0.0, 0.02])
    for _ in range(100):  # stream the command at 100 Hz for 1 s, as a controller would
        pub.publish(msgs.pose_msg(now(), "world", goal, quat0))
        time.sleep(0.01)
    _, pos2, _ = msgs.pose_from_msg(probe.latest("/arm/tcp_pose", PoseStamped))
    assert np.linalg.norm(pos2 - goal) < 0.01, (pos2, goal)
    node.destroy_publisher(pub)


def test_episode_start_event_is_latched_with_the_task_plan(sim_stack):
    _, probe = sim_stack
    # a subscriber that joins late still gets the start event (latched)
    event = msgs.json_from_msg(probe.latest("/sim/episode", String, timeout=15.0,
                                                   profile=qos.EVENTS))
    assert event["event"] == "start" and event["task"] == "wipe" and event["arms"] == ["arm"]
    assert "path_xy" in event["task_spec"] and event["task_spec"]["force_band"] == [5.0, 15.0]


def test_cameras_come_from_the_render_process_and_diagnostics_count_them(sim_stack):
    """render_process (true here): one publisher per camera topic, the render process's own node
    (not a second "sim_node": it must not take the sim node's --ros-args), and the sim node's
    /diagnostics still report the camera rate."""
    _, probe = sim_stack
    for name in ("/camera/color/image_raw", "/camera/color/camera_info"):
        pubs = probe.node.get_publishers_info_by_topic(name)
        assert [p.node_name for p in pubs] == ["sim_node_render"], name
    rate = probe.diagnostics("sim_node", timeout=15.0).get("sim_node", {}).get("rate/camera/image")
    assert rate is not None and float(rate) > 0.0, probe.diagnostics("sim_node", timeout=5.0)

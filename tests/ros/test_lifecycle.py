"""The nodes that command arms are lifecycle nodes: over DDS, `deactivate` leaves the arm held
where it is measured, with nothing commanded after the transition returns, and `activate`
resumes from the measured pose (no lunge toward a request made while inactive)."""
import threading
import time

import numpy as np
import pytest
from geometry_msgs.msg import PoseStamped

from slowfast_ros import msgs, qos
from slowfast_app import stack
from slowfast_app.cli import lifecycle
from slowfast_ros.topic_probe import TopicProbe, wait_until

pytestmark = pytest.mark.dds


def test_deactivate_holds_the_arm_and_activate_resumes_without_a_lunge(tmp_path):
    profile = stack.Profile("t", "", [
        stack.NodeSpec("sim_node", "slowfast_ros.nodes.sim_node", ["sim_node.yaml"]),
        stack.NodeSpec("safety_node", "slowfast_ros.nodes.safety_node", ["safety_node.yaml"])])
    # The Franka arm: it lags its command, so the hold (a measured pose) is told from a command.
    overrides = {"sim_node": {"camera_hz": 0.0, "episode_seconds": 120.0, "perturb": False, "start_delay": 0.2,
                              "embodiment": "arm"}}
    probe = TopicProbe({"/arm/target_tcp": PoseStamped, "/arm/tcp_pose": PoseStamped})
    node = probe.node
    req = node.create_publisher(PoseStamped, "/arm/target_tcp_unsafe", qos.COMMAND)
    now = lambda: node.get_clock().now().nanoseconds * 1e-9  # noqa: E731
    got: list = []          # (receipt time, target position)
    node.create_subscription(PoseStamped, "/arm/target_tcp",
                             lambda m: got.append((now(), msgs.pose_from_msg(m)[1])), qos.RECORD_SUB)
    measured: list = []     # every TCP position the sim published
    node.create_subscription(PoseStamped, "/arm/tcp_pose",
                             lambda m: measured.append(msgs.pose_from_msg(m)[1]), qos.RECORD_SUB)
    goal = {"pos": None}
    stop = threading.Event()

    def command():   # a request that keeps the arm moving (4 cm circle), or a fixed far one
        q = [0.0, 0.0, 0.0, 1.0]
        while not stop.is_set():
            g = goal["pos"]
            if callable(g):
                g = g(now())
            if g is not None:
                req.publish(msgs.pose_msg(now(), "world", g, q))
            time.sleep(0.01)

    sender = threading.Thread(target=command, daemon=True)
    try:
        with stack.Stack(profile, overrides, log_dir=tmp_path) as s:
            assert probe.wait_for(["/arm/target_tcp", "/arm/tcp_pose"], timeout=60, abort=s.any_exited), \
                s.last_line("safety_node") + s.last_line("sim_node")
            assert lifecycle.call("safety_node") == "active"
            time.sleep(0.3)
            home = np.array(msgs.pose_from_msg(probe.latest("/arm/tcp_pose", PoseStamped))[1])
            goal["pos"] = lambda t: home + 0.04 * np.array([np.cos(3 * t) - 1, np.sin(3 * t), 0.0])
            sender.start()
            time.sleep(1.5)
            moving = [p for _, p in got[-50:]]
            assert np.ptp(np.array(moving), axis=0).max() > 0.005, "the arm should be moving before deactivation"

            assert lifecycle.call("safety_node", "deactivate") == "inactive"
            returned = now()
            time.sleep(0.5)                      # requests keep coming: none may pass
            after = [p for t, p in got if t > returned + 0.05]
            assert after == [], f"{len(after)} commands after deactivation"
            last = got[-1][1]
            # The last command is the hold: exactly a pose the sim measured (a filtered command
            # toward the moving request is not), and the arm stays there.
            assert min(np.abs(np.array(measured[-400:]) - last).max(axis=1)) < 1e-9
            tcp = np.array(msgs.pose_from_msg(probe.latest("/arm/tcp_pose", PoseStamped))[1])
            assert np.linalg.norm(last - tcp) < 0.005, (last, tcp)
            settled = np.array([msgs.pose_from_msg(m)[1] for m in probe.collect("/arm/tcp_pose", PoseStamped, 0.3)])
            assert np.ptp(settled, axis=0).max() < 0.002                  # and it stays there
            assert lifecycle.call("safety_node") == "inactive"

            # A request 10 cm away, made while inactive: activation starts from the measured pose.
            goal["pos"] = tcp + np.array([0.10, 0.0, 0.0])
            time.sleep(0.2)
            n0 = len(got)
            assert lifecycle.call("safety_node", "activate") == "active"
            assert wait_until(lambda: len(got) > n0 + 40, timeout=10.0)
            first = got[n0][1]
            assert np.linalg.norm(first - tcp) < 0.005                    # no lunge
            cmds = np.array([p for _, p in got[n0:]])
            assert cmds[-1][0] > first[0] + 0.005                         # and it follows again
            assert s.procs["safety_node"].poll() is None
    finally:
        stop.set()
        probe.close()


def test_a_node_without_autostart_waits_unconfigured_and_the_cli_says_so(tmp_path):
    profile = stack.Profile("t", "", [
        stack.NodeSpec("safety_node", "slowfast_ros.nodes.safety_node", ["safety_node.yaml"])])
    probe = TopicProbe({"/arm/target_tcp": PoseStamped})
    try:
        with stack.Stack(profile, {"safety_node": {"autostart": False}}, log_dir=tmp_path) as s:
            assert lifecycle.call("safety_node", timeout=30) == "unconfigured"
            with pytest.raises(ValueError, match="refused in state unconfigured"):
                lifecycle.call("safety_node", "activate")
            assert lifecycle.call("safety_node", "configure") == "inactive"
            assert lifecycle.call("safety_node", "activate") == "active"
            assert s.procs["safety_node"].poll() is None
        with pytest.raises(ValueError, match="no /safety_node/get_state service"):
            lifecycle.call("safety_node", timeout=0.5)
    finally:
        probe.close()


def _marker_video(path, frames=60):
    """A short lossless video of a rendered 5 x 6 marker grid (it loops in the node)."""
    import cv2

    from hardware.markers import grid_centres, render_markers

    size = (160, 120)
    img = render_markers(grid_centres(5, 6, size), size).astype(np.uint8)[:, :, ::-1]
    w = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"FFV1"), 30, size)
    for _ in range(frames):
        w.write(img)
    w.release()
    return path


def test_a_deactivated_sensor_publishes_nothing_says_so_and_resumes_when_activated(tmp_path):
    """gelsight_node (as realsense_node, tested with the SDK's software device in
    test_hardware_nodes): deactivate -> no marker field and no image after the transition
    returns, /diagnostics says inactive; activate -> both flow again."""
    from diagnostic_msgs.msg import DiagnosticArray
    from sensor_msgs.msg import Image, PointCloud2

    video = _marker_video(tmp_path / "markers.avi")
    profile = stack.Profile("t", "", [
        stack.NodeSpec("gelsight_node", "slowfast_ros.nodes.gelsight_node", ["gelsight_node.yaml"])])
    overrides = {"gelsight_node": {"source": str(video), "loop": True, "fps": 30.0, "grid_rows": 5, "grid_cols": 6}}
    probe = TopicProbe({"/arm/tactile/markers": PointCloud2, "/arm/tactile/image_raw": Image})
    node = probe.node
    now = lambda: node.get_clock().now().nanoseconds * 1e-9  # noqa: E731
    got: list = []          # (receipt time, topic)
    for name, cls in (("/arm/tactile/markers", PointCloud2), ("/arm/tactile/image_raw", Image)):
        node.create_subscription(cls, name, lambda m, n=name: got.append((now(), n)), qos.RECORD_SUB)
    diags: list = []
    node.create_subscription(DiagnosticArray, "/diagnostics",
                             lambda m: diags.extend(st for st in m.status if st.name.startswith("gelsight_node")), 10)
    try:
        with stack.Stack(profile, overrides, log_dir=tmp_path) as s:
            assert probe.wait_for(["/arm/tactile/markers", "/arm/tactile/image_raw"], timeout=60,
                                  abort=s.any_exited), s.last_line("gelsight_node")
            assert lifecycle.call("gelsight_node") == "active"

            assert lifecycle.call("gelsight_node", "deactivate") == "inactive"
            returned = now()
            time.sleep(1.0)                         # 30 frames/s keep coming from the file
            after = [n for t, n in got if t > returned + 0.1]
            assert after == [], f"{len(after)} messages after deactivation"
            assert wait_until(lambda: any(st.message.startswith("inactive") for st in diags[-3:]), 5.0), \
                [st.message for st in diags[-3:]]
            assert "inactive: no marker field" in (tmp_path / "gelsight_node.log").read_text()   # its log says so

            assert lifecycle.call("gelsight_node", "activate") == "active"
            activated = now()
            assert wait_until(lambda: {n for t, n in got if t > activated} == {"/arm/tactile/markers",
                                                                              "/arm/tactile/image_raw"}, 10.0)
            assert s.procs["gelsight_node"].poll() is None
    finally:
        probe.close()

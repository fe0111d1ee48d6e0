"""streamvln_nav over real DDS (this test run's own ROS domain, localhost only).

With the navigation sim, `slowfast up sim-nav` as shipped: the small trained model
(checkpoints/vln, the profile's default) drives the sim base on a held-out layout; a new
instruction resets the episode, an empty one cancels it; the sim scores the episode and writes
its metrics, path and camera video. A stub that always answers FORWARD shows the base does not
stop between turns when it plans ahead (plan_ahead_actions 2; a property of the node's
plan-ahead, not of a model's answers). Without the
sim (the test publishes grey frames and odometry), the same stub: stale odometry or images stop
the base; mismatched, skewed or unknown-encoding frames and pose jumps are skipped and counted.
"""
import json
import math
import os
import time
from pathlib import Path

import numpy as np
import pytest
from diagnostic_msgs.msg import DiagnosticArray
from geometry_msgs.msg import Twist
from nav_msgs.msg import Odometry
from sensor_msgs.msg import CameraInfo, Image
from std_msgs.msg import String

from policy.streamvln.actions import Action
from policy.streamvln.nav_control import TrackerConfig
from slowfast_ros import msgs, qos
from slowfast_app import stack
from slowfast_ros.topic_probe import TopicProbe

pytestmark = pytest.mark.dds

HERE = Path(__file__).resolve().parent
SHIPPED = HERE.parents[1] / "checkpoints" / "vln"    # the sim-nav profile's default checkpoint


class _Stats:
    def __init__(self):
        self.turns = 0
        self.resets = 0

    def as_dict(self):
        return {"turns": self.turns, "resets": self.resets, "window_tokens": 0, "memory_tokens": 0,
                "pruning_ratio": 0.0}


class ForwardStub:
    """Always answers four FORWARD actions, after a model-like delay."""

    def __init__(self):
        self.stats = _Stats()

    def reset(self, instruction):
        self.stats.resets += 1
        self.stats.turns = 0

    def step(self, rgb, depth, intrinsics, pose):
        assert rgb.dtype == np.uint8 and depth.dtype == np.float32 and rgb.shape[:2] == depth.shape
        time.sleep(0.15)
        self.stats.turns += 1
        return [Action.MOVE_FORWARD] * 4


STUB = {"agent_factory": "test_nav_node:ForwardStub"}
ENV = {"PYTHONPATH": os.pathsep.join([str(HERE), os.environ.get("PYTHONPATH", "")])}


def _clear_seed(first=0):
    """An episode whose start faces >= 3 m of free floor (so FORWARD can drive)."""
    from sim.nav import make_episode

    for seed in range(first, first + 100):
        ep = make_episode(seed)
        x, y, yaw = ep.start
        from sim.nav.layout import generate_layout
        lay = generate_layout(ep.layout_seed)
        if lay.segment_free((x, y), (x + 3.0 * math.cos(yaw), y + 3.0 * math.sin(yaw))):
            return seed, ep
    raise AssertionError("no clear start")


class _Collect:
    def __init__(self, node, mtype, topic, profile):
        self.items = []
        self.sub = node.create_subscription(mtype, topic, lambda m: self.items.append((time.monotonic(), m)), profile)


def _diag(collector, name="streamvln_nav"):
    for _, msg in reversed(collector.items):
        for st in msg.status:
            if st.name == name:
                return msgs.diagnostics_values(st)
    return {}


def _probe_and_overrides(out, seed, streamvln_nav, episode_seconds):
    overrides = {"nav_sim_node": {"seed": seed, "nav.camera_width": 160, "nav.camera_height": 120, "camera_hz": 10.0,
                                  "episode_seconds": episode_seconds, "start_delay": 0.3, "out_dir": str(out),
                                  "episodes": 1},
                 "streamvln_nav": streamvln_nav}
    probe = TopicProbe({"/odom": Odometry, "/camera/color/image_raw": Image})
    cmd = _Collect(probe.node, Twist, "/cmd_vel", qos.COMMAND)
    odom = _Collect(probe.node, Odometry, "/odom", qos.SENSOR_SUB)
    status = _Collect(probe.node, String, "/nav/status", qos.LATCHED)
    diag = _Collect(probe.node, DiagnosticArray, "/diagnostics", 10)
    return probe, cmd, odom, status, diag, overrides


@pytest.fixture(scope="module")
def nav_stack(tmp_path_factory):
    """The sim-nav profile with the shipped model (its default checkpoint), on a held-out layout."""
    seed, ep = _clear_seed(first=100000)
    out = tmp_path_factory.mktemp("nav_out")
    probe, cmd, odom, status, diag, overrides = _probe_and_overrides(
        out, seed, {"checkpoint": str(SHIPPED)}, episode_seconds=20.0)
    with stack.Stack(stack.load_profile("sim-nav"), overrides, log_dir=out / "logs") as s:
        assert probe.wait_for(["/odom", "/camera/color/image_raw"], timeout=60.0, count=3), s.last_line("nav_sim_node")
        yield s, probe, ep, out, cmd, odom, status, diag
    probe.close()


def test_the_shipped_model_drives_the_base(nav_stack):
    s, probe, ep, out, cmd, odom, status, diag = nav_stack
    end = time.monotonic() + 30.0
    while time.monotonic() < end and not any(json.loads(m.data).get("event") == "start" for _, m in status.items):
        time.sleep(0.1)
    assert status.items, s.last_line("streamvln_nav")
    time.sleep(6.0)
    values = _diag(diag)
    assert int(float(values.get("turns", 0))) >= 3, values          # the model answers, turn after turn
    assert any(m.linear.x > 0.05 for _, m in cmd.items), s.last_line("streamvln_nav")
    limits = TrackerConfig()
    assert all(abs(m.linear.x) <= limits.max_linear + 1e-9 and abs(m.angular.z) <= limits.max_angular + 1e-9
               for _, m in cmd.items)
    # the base moved as commanded: driven or turned (where a trained model steers, or a wall
    # stops it, is the model's business: its success rate is measured by `slowfast nav eval`)
    poses = np.array([msgs.odometry_from_msg(m)[1] for _, m in odom.items])
    steps = np.diff(poses, axis=0)
    assert np.linalg.norm(steps[:, :2], axis=1).sum() + np.abs(steps[:, 2]).sum() > 0.05, poses[[0, -1]]


def test_the_sim_scores_the_episode_and_writes_metrics(nav_stack):
    s, probe, ep, out, *_ = nav_stack
    end = time.monotonic() + 30.0
    while time.monotonic() < end and not (out / "summary.json").is_file():
        time.sleep(0.2)
    summary = json.loads((out / "summary.json").read_text())
    rec = json.loads((out / "episode_000.json").read_text())
    assert summary["episodes"] == 1 and set(("NE", "SR", "OS", "SPL", "nDTW")) <= set(rec)
    assert rec["path_length"] >= 0.0 and rec["end"] in ("time_limit", "stop"), rec
    assert (out / "episode_000.png").stat().st_size > 10_000
    import cv2
    video = cv2.VideoCapture(str(out / "camera_000.mp4"))   # what the model saw
    assert video.isOpened() and int(video.get(cv2.CAP_PROP_FRAME_COUNT)) >= 10


def test_new_instruction_resets_the_episode_and_empty_cancels(nav_stack):
    s, probe, ep, out, cmd, odom, status, diag = nav_stack
    pub = probe.node.create_publisher(String, "/instruction", qos.COMMAND)
    time.sleep(0.5)
    before = int(float(_diag(diag)["turns"]))        # the sim's episode, 20 s and more of turns
    pub.publish(String(data="Go past the red sofa and stop by the blue lamp."))
    end = time.monotonic() + 5.0
    while time.monotonic() < end and not any(json.loads(m.data).get("instruction", "").startswith("Go past the red")
                                             for _, m in status.items):
        time.sleep(0.05)
    events = [json.loads(m.data) for _, m in status.items]
    assert events[-1] == {"event": "start", "instruction": "Go past the red sofa and stop by the blue lamp."}
    time.sleep(1.5)
    pub.publish(String(data=""))
    time.sleep(1.0)
    ev = json.loads(status.items[-1][1].data)
    assert ev["event"] == "cancel"
    assert len(ev["turn_latency_s"]) == ev["turns"] >= 1 and min(ev["turn_latency_s"]) > 0.0
    assert ev["turns"] < before, (ev["turns"], before)          # counted from the new episode
    assert all(m.linear.x == 0.0 and m.angular.z == 0.0 for t, m in cmd.items[-10:])
    probe.node.destroy_publisher(pub)


@pytest.fixture(scope="module")
def forward_stack(tmp_path_factory, nav_stack):
    """The sim-nav profile with the FORWARD stub, after the model's stack has stopped."""
    nav_stack[0].stop()
    seed, ep = _clear_seed()
    out = tmp_path_factory.mktemp("nav_forward")
    probe, cmd, odom, status, diag, overrides = _probe_and_overrides(out, seed, {**STUB, "plan_ahead_actions": 2},
                                                                      episode_seconds=14.0)
    with stack.Stack(stack.load_profile("sim-nav"), overrides, log_dir=out / "logs", env=ENV) as s:
        assert probe.wait_for(["/odom", "/camera/color/image_raw"], timeout=60.0, count=3), s.last_line("nav_sim_node")
        yield s, probe, ep, out, cmd, odom, status, diag
    probe.close()


def test_forward_stub_drives_the_base_without_stopping_between_turns(forward_stack):
    s, probe, ep, out, cmd, odom, status, diag = forward_stack
    end = time.monotonic() + 30.0
    while time.monotonic() < end and not any(json.loads(m.data).get("event") == "start" for _, m in status.items):
        time.sleep(0.1)
    assert status.items, s.last_line("streamvln_nav")
    time.sleep(4.0)
    t0 = time.monotonic()
    n0 = len(cmd.items)
    time.sleep(3.0)
    window = [m for t, m in cmd.items[n0:] if t >= t0]
    assert len(window) >= 3  # cmd_vel flows (its rate is `slowfast bench nav`'s business)
    speeds = np.array([m.linear.x for m in window])
    assert speeds.min() > 0.05, speeds  # four FORWARDs per turn, turn after turn: never stops
    # the base went where the goals lead: straight along its start heading
    poses = [msgs.odometry_from_msg(m)[1] for _, m in odom.items]
    x0, y0, yaw0 = ep.start
    d = np.array(poses[-1][:2]) - [x0, y0]
    assert d @ [math.cos(yaw0), math.sin(yaw0)] > 1.0, (poses[-1], ep.start)
    assert abs(d @ [-math.sin(yaw0), math.cos(yaw0)]) < 0.15
    values = _diag(diag)
    assert int(float(values.get("turns", 0))) >= 3
    # the node's own count of FORWARD-to-FORWARD joins between turns, and of stops at them
    assert int(float(values["forward_joins"])) >= 1 and int(float(values["forward_join_stops"])) == 0, values


# ---------------------------------------------------------------- the node alone


@pytest.fixture(scope="module")
def lone_nav(tmp_path_factory, forward_stack):
    # The sim-nav stacks (module-scoped, alive until the module ends) would keep publishing
    # images and a second node's cmd_vel on the same topics: the stale-input test then saw
    # fresh images and counted no stop, depending on timing. Stop them first.
    forward_stack[0].stop()
    prof = stack.load_profile("sim-nav")
    solo = stack.Profile("nav-only", "", [n for n in prof.nodes if n.name == "streamvln_nav"])
    logs = tmp_path_factory.mktemp("nav_lone")
    probe = TopicProbe({"/cmd_vel_dummy": Twist})
    cmd = _Collect(probe.node, Twist, "/cmd_vel", qos.COMMAND)
    status = _Collect(probe.node, String, "/nav/status", qos.LATCHED)
    diag = _Collect(probe.node, DiagnosticArray, "/diagnostics", 10)
    with stack.Stack(solo, {"streamvln_nav": {**STUB, "odom_timeout": 0.3, "image_timeout": 0.6, "plan_ahead_actions": 16}},
                     log_dir=logs, env=ENV) as s:
        end = time.monotonic() + 30
        while time.monotonic() < end and not cmd.items:
            time.sleep(0.1)
        assert cmd.items, s.last_line("streamvln_nav")
        yield s, probe, cmd, status, diag
    probe.close()


class _Sensors:
    """Publishes what the sim would: odometry of a base that moves as commanded, images.
    (The node plans whenever fewer than 16 actions are queued, so it looks at every frame.)"""

    def __init__(self, node, cmd):
        self.node = node
        self.cmd = cmd
        self.odom = node.create_publisher(Odometry, "/odom", qos.SENSOR_PUB)
        self.color = node.create_publisher(Image, "/camera/color/image_raw", qos.SENSOR_PUB)
        self.depth = node.create_publisher(Image, "/camera/aligned_depth_to_color/image_raw", qos.SENSOR_PUB)
        self.info = node.create_publisher(CameraInfo, "/camera/color/camera_info", qos.SENSOR_PUB)
        self.pose = np.zeros(3)

    def now(self):
        return self.node.get_clock().now().nanoseconds * 1e-9

    def publish_odom(self, jump=0.0):
        self.pose[0] += jump
        self.odom.publish(msgs.odometry_msg(self.now(), "odom", "base_link", self.pose, (0.0, 0.0)))

    def publish_frame(self, depth_size=(48, 64), skew=0.0, encoding="rgb8"):
        t = self.now()
        rgb = np.full((48, 64, 3), 128, np.uint8)
        if encoding == "rgb8":
            self.color.publish(msgs.image_msg(t, "cam", rgb, "rgb8"))
        else:
            m = msgs.image_msg(t, "cam", rgb, "rgb8")
            m.encoding = encoding
            self.color.publish(m)
        self.depth.publish(msgs.depth_msg_mm(t + skew, "cam", np.full(depth_size, 2.0)))
        self.info.publish(msgs.camera_info_msg(t, msgs.CameraIntrinsics(64, 48, 40.0, 40.0, 32.0, 24.0, "cam")))

    def run(self, seconds, frames=True, odom=True, **frame_kw):
        end = time.monotonic() + seconds
        k = 0
        while time.monotonic() < end:
            if odom:
                v, w = (self.cmd.items[-1][1].linear.x, self.cmd.items[-1][1].angular.z) if self.cmd.items else (0, 0)
                self.pose += [v * 0.02 * math.cos(self.pose[2]), v * 0.02 * math.sin(self.pose[2]), w * 0.02]
                self.publish_odom()
            if frames and k % 5 == 0:
                self.publish_frame(**frame_kw)
            k += 1
            time.sleep(0.02)


def test_stale_inputs_stop_the_base_and_bad_frames_are_counted(lone_nav):
    s, probe, cmd, status, diag = lone_nav
    sensors = _Sensors(probe.node, cmd)
    pub = probe.node.create_publisher(String, "/instruction", qos.COMMAND)
    time.sleep(0.5)
    pub.publish(String(data="Walk forward."))
    sensors.run(2.5)
    moving = [m.linear.x for _, m in cmd.items[-15:]]
    assert max(moving) > 0.05, moving  # fresh inputs: the stub's FORWARDs move the base

    n = len(cmd.items)
    sensors.run(1.5, frames=False)  # images stop: stale after image_timeout
    tail = [m.linear.x for _, m in cmd.items[n:]][-10:]
    assert tail and all(v == 0.0 for v in tail), tail
    sensors.run(1.0)
    n = len(cmd.items)
    sensors.run(1.0, odom=False, frames=False)  # odometry stops too
    tail = [m.linear.x for _, m in cmd.items[n:]][-10:]
    assert tail and all(v == 0.0 for v in tail), tail

    pub.publish(String(data="Walk forward again."))  # a new episode: an empty queue, every frame is looked at
    time.sleep(0.3)
    sensors.run(1.0, depth_size=(24, 32))        # colour and depth of different sizes
    sensors.run(1.0, skew=0.3)                   # stamps too far apart
    sensors.run(1.0, encoding="yuv422")          # unknown encoding
    sensors.publish_odom(jump=2.0)               # a pose that jumps
    keys = ("skipped/size_mismatch", "skipped/stamp_skew", "skipped/encoding", "pose_jumps")
    end = time.monotonic() + 5.0
    while True:  # diagnostics come at 1 Hz
        sensors.run(0.3)
        d = _diag(diag)
        if all(int(d.get(k, 0)) > 0 for k in keys) or time.monotonic() > end:
            break
    assert int(d.get("stopped/stale_image", 0)) > 0 and int(d.get("stopped/stale_odom", 0)) > 0, d
    assert int(d.get("skipped/size_mismatch", 0)) > 0, d
    assert int(d.get("skipped/stamp_skew", 0)) > 0, d
    assert int(d.get("skipped/encoding", 0)) > 0, d
    assert int(d.get("pose_jumps", 0)) >= 1, d
    assert float(d["rate/cmd_vel"]) > 0.0, d   # still commanding (stopped, at zero speed) throughout
    probe.node.destroy_publisher(pub)


def test_deactivate_stops_the_base_once_and_commands_nothing_until_activated(lone_nav):
    """`slowfast lifecycle streamvln_nav deactivate` while the base drives: the last cmd_vel is
    a zero, the episode is cancelled, nothing follows on cmd_vel (an instruction is ignored);
    `activate`: cmd_vel again, and a new instruction drives."""
    import threading

    from slowfast_app.cli import lifecycle
    from slowfast_ros.topic_probe import wait_until

    s, probe, cmd, status, diag = lone_nav
    sensors = _Sensors(probe.node, cmd)
    pub = probe.node.create_publisher(String, "/instruction", qos.COMMAND)
    stop = threading.Event()

    def feed():
        while not stop.is_set():
            sensors.run(0.2)

    feeder = threading.Thread(target=feed, daemon=True)
    feeder.start()
    try:
        pub.publish(String(data="Walk forward again."))
        assert wait_until(lambda: any(m.linear.x > 0.05 for _, m in cmd.items[-5:]), timeout=20), \
            s.last_line("streamvln_nav")
        assert lifecycle.call("streamvln_nav", "deactivate") == "inactive"
        # the zero arrives, and the episode's cancel
        assert wait_until(lambda: cmd.items[-1][1].linear.x == 0.0 and cmd.items[-1][1].angular.z == 0.0)
        assert wait_until(lambda: json.loads(status.items[-1][1].data).get("reason") == "deactivated")
        assert json.loads(status.items[-1][1].data)["event"] == "cancel"
        n = len(cmd.items)
        pub.publish(String(data="Walk forward while inactive."))       # ignored
        # two of the node's reports later (sensors publishing all along): nothing on cmd_vel
        reports = lambda: sum(any(st.name == "streamvln_nav" for st in m.status) for _, m in diag.items)  # noqa: E731
        r0 = reports()
        assert wait_until(lambda: reports() >= r0 + 2, timeout=10)
        assert len(cmd.items) == n, f"{len(cmd.items) - n} cmd_vel while inactive"
        values = _diag(diag)
        assert values["active"] == "False" and int(values["skipped/instruction_while_inactive"]) == 1, values

        assert lifecycle.call("streamvln_nav", "activate") == "active"
        assert wait_until(lambda: len(cmd.items) > n + 5)                  # zeros: no episode runs
        assert all(m.linear.x == 0.0 for _, m in cmd.items[n:])
        pub.publish(String(data="Walk forward once more."))
        assert wait_until(lambda: any(m.linear.x > 0.05 for _, m in cmd.items[-5:]), timeout=20)
        assert s.procs["streamvln_nav"].poll() is None, s.last_line("streamvln_nav")
    finally:
        stop.set()
        feeder.join(timeout=5)

"""rdp_fast and rdp_slow over real DDS with a small model trained here.

The test process plays the robot: it publishes TCP pose and wrench at 200 Hz, with a step
in the contact force; the nodes run as separate processes exactly as on a robot."""
import json
import threading
import time

import numpy as np
import pytest
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus
from geometry_msgs.msg import PoseStamped, WrenchStamped
from sensor_msgs.msg import Image, PointCloud2
from std_msgs.msg import Bool
from trajectory_msgs.msg import JointTrajectory

from slowfast_ros import msgs, qos
from slowfast_app import stack

pytestmark = pytest.mark.dds

POSE = np.array([0.5, 0.0, 0.3, 0.0, 0.0, 0.0, 1.0])


@pytest.fixture(scope="module")
def export(tmp_path_factory):
    """A tokenizer + latent diffusion policy trained on a synthetic task where the arm yields
    along -z in proportion to the force it feels (5 cm per 10 N), exported to ONNX."""
    import torch

    from policy.rdp.config import PolicyConfig, preset
    from policy.rdp.export import export_checkpoint
    from policy.rdp.synthetic import make_dataset
    from policy.rdp.train import train

    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("rdp")
    ds = make_dataset(root / "ds", episodes=6, length=48, seed=0, force_gain=0.05, image_size=(32, 48))

    def cfg(model_type, epochs):
        d = preset("sim", model_type).to_dict()
        d["data"].update(horizon=16, image_size=[32, 48])
        d["unet"].update(down_dims=[16, 32], step_embed_dim=16)
        d["obs"].update(image_width=8, image_feature_dim=16)
        d["train"].update(epochs=epochs, batch_size=32, lr=3e-3, warmup_steps=0)
        return PolicyConfig.from_dict(d)

    train("tokenizer", ds, root / "tok", cfg("rdp_tokenizer", 20), progress=False)
    train("ldp", ds, root / "ldp", cfg("rdp_ldp", 2), tokenizer=root / "tok", progress=False)
    export_checkpoint(root / "ldp", root / "onnx")
    return root / "onnx"


class Robot:
    """Publishes right/tcp_pose and right/tcp_wrench at 200 Hz from a thread."""

    def __init__(self, node, fz=0.0):
        self.node, self.fz, self.stop = node, fz, False
        self.paused = False     # True: publishes nothing (a robot whose state stopped coming)
        self.pose_pub = node.create_publisher(PoseStamped, "/right/tcp_pose", qos.SENSOR_PUB)
        self.wrench_pub = node.create_publisher(WrenchStamped, "/right/tcp_wrench", qos.SENSOR_PUB)
        self.tactile_pub = node.create_publisher(PointCloud2, "/right/tactile/markers", qos.SENSOR_PUB)
        self.wrench_log: list[tuple[float, float]] = []
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def now(self):
        return self.node.get_clock().now().nanoseconds * 1e-9

    def _run(self):
        while not self.stop:
            if self.paused:
                time.sleep(0.005)
                continue
            t = self.now()
            self.pose_pub.publish(msgs.pose_msg(t, "world", POSE[:3], POSE[3:]))
            fz = self.fz
            self.wrench_pub.publish(msgs.wrench_msg(t, "right_tool", [0.0, 0.0, fz, 0.0, 0.0, 0.0]))
            self.tactile_pub.publish(msgs.markers_msg(t, "pad", np.zeros((8, 4), np.float32)))
            self.wrench_log.append((t, fz))
            time.sleep(0.005)


def _fast_overrides(export_dir, **kw):
    return {"rdp_fast": {"export_dir": str(export_dir), "arms": ["right"], "control_hz": 200.0,
                         "safety.workspace_lo": [-2.0, -2.0, -2.0],
                         "safety.workspace_hi": [2.0, 2.0, 2.0], "safety.max_speed": 3.0, "safety.max_accel": 50.0, "blend_s": 0.0, **kw}}


def _publish_images(node, robot) -> threading.Event:
    """Random 30 Hz wrist-camera frames stamped on the robot's clock, until the returned event is set."""
    img_pub = node.create_publisher(Image, "/wrist/color/image_raw", qos.SENSOR_PUB)
    stop = threading.Event()

    def images():
        rng = np.random.default_rng(0)
        while not stop.is_set():
            img_pub.publish(msgs.image_msg(robot.now(), "wrist", rng.integers(0, 255, (32, 48, 3), dtype=np.uint8)))
            time.sleep(1 / 30)

    threading.Thread(target=images, daemon=True).start()
    return stop


def _profile(*names):
    specs = {"rdp_fast": stack.NodeSpec("rdp_fast", "slowfast_ros.nodes.rdp_fast", ["rdp_fast.yaml"]),
             "rdp_slow": stack.NodeSpec("rdp_slow", "slowfast_ros.nodes.rdp_slow", ["rdp_slow.yaml"])}
    return stack.Profile("test", "", [specs[n] for n in names])


def test_fast_node_reacts_to_a_contact_step_at_the_next_tick(export, tmp_path):
    from slowfast_ros.topic_probe import TopicProbe, wait_until

    meta = json.loads((export / "runtime.json").read_text())
    probe = TopicProbe({"/right/target_tcp": PoseStamped, "/diagnostics": DiagnosticArray})
    node = probe.node
    robot = Robot(node, fz=-8.0)
    chunk_pub = node.create_publisher(JointTrajectory, "/policy/latent_chunk", qos.COMMAND)
    try:
        with stack.Stack(_profile("rdp_fast"), _fast_overrides(export), log_dir=tmp_path) as s:
            assert probe.wait_for(["/right/target_tcp"], timeout=60, abort=s.any_exited), s.last_line("rdp_fast")
            time.sleep(0.3)
            # A latent chunk computed from an observation 20 ms old (the prior mean, zeros).
            latent = np.zeros((meta["latent_steps"], meta["latent_dim"]), np.float32)
            obs = robot.now() - 0.02
            chunk_pub.publish(msgs.chunk_msg(obs, "world", "latent", latent, 4 / meta["fps"]))
            time.sleep(0.08)
            cmds = []
            sub = node.create_subscription(PoseStamped, "/right/target_tcp",
                                           lambda m: cmds.append((robot.now(),) + msgs.pose_from_msg(m)), qos.SENSOR_SUB)
            # Counts, not durations: enough commands on each side of the step, however loaded
            # the machine is (the loop's rate is `slowfast bench fastloop`'s business).
            assert wait_until(lambda: len(cmds) >= 6)
            robot.fz = 8.0                                  # the contact force steps up
            t_step = robot.now()
            assert wait_until(lambda: sum(c[1] > t_step for c in cmds) >= 6)
            node.destroy_subscription(sub)
            assert s.procs["rdp_fast"].poll() is None, s.last_line("rdp_fast")
    finally:
        robot.stop = True
        probe.close()
    # A command is stamped with the capture time of the reading it used: look up that reading.
    log_t = np.array([t for t, _ in robot.wrench_log])
    log_f = np.array([f for _, f in robot.wrench_log])

    def force_used(stamp):
        i = int(np.argmin(np.abs(log_t - stamp)))
        assert abs(log_t[i] - stamp) < 1e-6
        return log_f[i]

    before = [c for c in cmds if force_used(c[1]) < 0]     # commands that used a pre-step reading
    after = [c for c in cmds if force_used(c[1]) > 0]      # ... a post-step reading
    assert len(before) >= 5 and len(after) >= 5
    z_before = np.array([c[2][2] for c in before[-5:]])
    z_after = np.array([c[2][2] for c in after[:5]])
    # Before the step the command drifts only with the chunk's own motion; the first command
    # that used the new reading already yields along -z, by far more than that drift.
    # (The safety filter's acceleration limit spreads the 6 cm yield over several ticks.)
    drift = np.abs(np.diff(z_before)).max()
    assert z_before[-1] - z_after[0] > max(2 * drift, 1e-3), (z_before, z_after)
    assert np.all(np.diff(z_after) < 0), z_after
    # ... and it is the very next command: no command after the step still used old data.
    first_after_step_publish = min(c[0] for c in after)
    stale_after = [c for c in before if c[0] > first_after_step_publish]
    assert not stale_after


@pytest.mark.parametrize("handover", ["blend", "inpaint"])
def test_slow_and_fast_nodes_close_the_loop_and_estop_holds(export, tmp_path, handover):

    from slowfast_ros.topic_probe import TopicProbe, wait_until

    probe = TopicProbe({"/right/target_tcp": PoseStamped, "/policy/latent_chunk": JointTrajectory,
                        "/diagnostics": DiagnosticArray})
    node = probe.node
    robot = Robot(node, fz=0.0)
    estop_pub = node.create_publisher(Bool, "/safety/estop", qos.LATCHED)
    stop_images = _publish_images(node, robot)
    overrides = {**_fast_overrides(export),
                 "rdp_slow": {"export_dir": str(export), "arms": ["right"], "rate_hz": 6.0, "handover": handover}}
    try:
        with stack.Stack(_profile("rdp_slow", "rdp_fast"), overrides, log_dir=tmp_path) as s:
            assert probe.wait_for(["/policy/latent_chunk"], timeout=90, count=3, abort=s.any_exited), \
                s.last_line("rdp_slow") + s.last_line("rdp_fast")
            _, kind, data = msgs.chunk_from_msg(probe.latest("/policy/latent_chunk", JointTrajectory))
            assert kind == "latent"
            time.sleep(0.3)
            estop_pub.publish(Bool(data=True))
            time.sleep(0.3)
            held = [msgs.pose_from_msg(m)[1] for m in probe.collect("/right/target_tcp", PoseStamped, 0.5)]
            assert len(held) >= 5                                   # a few, however loaded the machine
            assert np.ptp(np.array(held), axis=0).max() < 1e-9     # e-stop: the command stands still
            diag = diag_values(probe, "rdp_fast")
            assert int(diag["right/interventions/estop"]) > 0
            assert int(diag["chunks_received"]) >= 2
            assert int(diag["chunk_publishers"]) == 1               # the DDS match each side reports
            slow = diag_values(probe, "rdp_slow")
            assert int(slow["chunk_subscribers"]) == 2              # rdp_fast and this probe
            assert float(slow["inference_ms_p50"]) > 0
            assert slow["handover"] == handover
            # inpainting: every chunk after the first continues the one before it
            assert (int(slow["chunks_inpainted"]) >= 1) == (handover == "inpaint"), slow
            # each node once in the graph: the raw-input helper nodes carry names of their own
            # (a process-wide `-r __node:=` used to give them their parent's)
            names = [n for n, _ in node.get_node_names_and_namespaces()]
            assert sorted(n for n in names if n.startswith("rdp_")) == \
                ["rdp_fast", "rdp_fast_inputs", "rdp_slow", "rdp_slow_inputs"], names
    finally:
        stop_images.set()
        robot.stop = True
        probe.close()


def diag_values(probe, name, timeout=3.0):
    got = probe.diagnostics(name, timeout=timeout)
    assert name in got, f"no diagnostics from {name}"
    return got[name]


def test_nan_contact_readings_are_rejected_counted_and_the_command_holds(export, tmp_path):
    from slowfast_ros.topic_probe import TopicProbe, wait_until

    meta = json.loads((export / "runtime.json").read_text())
    probe = TopicProbe({"/right/target_tcp": PoseStamped})
    node = probe.node
    robot = Robot(node, fz=0.0)
    chunk_pub = node.create_publisher(JointTrajectory, "/policy/latent_chunk", qos.COMMAND)
    try:
        with stack.Stack(_profile("rdp_fast"), _fast_overrides(export), log_dir=tmp_path) as s:
            assert probe.wait_for(["/right/target_tcp"], timeout=60, abort=s.any_exited), s.last_line("rdp_fast")
            latent = np.zeros((meta["latent_steps"], meta["latent_dim"]), np.float32)
            chunk_pub.publish(msgs.chunk_msg(robot.now() - 0.01, "world", "latent", latent, 4 / meta["fps"]))
            time.sleep(0.2)
            robot.fz = float("nan")                        # the F/T sensor starts sending NaN
            time.sleep(0.2)
            held = np.array([msgs.pose_from_msg(m)[1] for m in probe.collect("/right/target_tcp", PoseStamped, 0.5)])
            diag = diag_values(probe, "rdp_fast")
    finally:
        robot.stop = True
        probe.close()
    assert len(held) >= 5 and np.ptp(held, axis=0).max() < 1e-9    # holds still
    assert int(diag["sensor_messages_rejected"]) > 0
    assert int(diag["right/interventions/stale_contact"]) > 0


def test_stopping_the_fast_node_mid_chunk_leaves_the_arm_holding_where_it_is(export, tmp_path):
    """SIGINT while a chunk is moving the command: the node's last word is a target at the
    measured pose, so the robot's controller does not keep a point mid-chunk as its target."""
    from slowfast_ros.topic_probe import TopicProbe, wait_until

    meta = json.loads((export / "runtime.json").read_text())
    probe = TopicProbe({"/right/target_tcp": PoseStamped})
    node = probe.node
    robot = Robot(node, fz=8.0)                     # a force the policy yields to: the command moves
    chunk_pub = node.create_publisher(JointTrajectory, "/policy/latent_chunk", qos.COMMAND)
    cmds = []
    node.create_subscription(PoseStamped, "/right/target_tcp", lambda m: cmds.append(msgs.pose_from_msg(m)[1]),
                             qos.COMMAND)
    try:
        with stack.Stack(_profile("rdp_fast"), _fast_overrides(export), log_dir=tmp_path) as s:
            assert probe.wait_for(["/right/target_tcp"], timeout=60, abort=s.any_exited), s.last_line("rdp_fast")
            latent = np.zeros((meta["latent_steps"], meta["latent_dim"]), np.float32)
            chunk_pub.publish(msgs.chunk_msg(robot.now() - 0.01, "world", "latent", latent, 4 / meta["fps"]))
            assert wait_until(lambda: any(np.abs(c - POSE[:3]).max() > 1e-3 for c in list(cmds)))  # moving
            s.stop()                                 # SIGINT to the node, as Ctrl-C or SIGTERM to slowfast does
            assert s.procs["rdp_fast"].returncode == 0, s.last_line("rdp_fast")
        assert wait_until(lambda: np.allclose(cmds[-1], POSE[:3], atol=1e-9), timeout=2.0), cmds[-3:]
    finally:
        robot.stop = True
        probe.close()


def test_deactivating_the_fast_node_mid_chunk_holds_the_arm_and_activate_restarts(export, tmp_path):
    """`slowfast lifecycle rdp_fast deactivate` while a chunk moves the command: the node's
    last command before the transition returns is the measured pose, nothing follows it while
    inactive; `activate` restarts from the measured pose (the old chunk is forgotten)."""
    from slowfast_app.cli import lifecycle
    from slowfast_ros.topic_probe import TopicProbe, wait_until

    meta = json.loads((export / "runtime.json").read_text())
    probe = TopicProbe({"/right/target_tcp": PoseStamped})
    node = probe.node
    robot = Robot(node, fz=8.0)                     # a force the policy yields to: the command moves
    chunk_pub = node.create_publisher(JointTrajectory, "/policy/latent_chunk", qos.COMMAND)
    cmds = []
    node.create_subscription(PoseStamped, "/right/target_tcp",
                             lambda m: cmds.append((robot.now(), msgs.pose_from_msg(m)[1])), qos.COMMAND)
    moving = lambda: any(np.abs(c - POSE[:3]).max() > 1e-3 for _, c in list(cmds)[-5:])  # noqa: E731
    try:
        with stack.Stack(_profile("rdp_fast"), _fast_overrides(export), log_dir=tmp_path) as s:
            assert probe.wait_for(["/right/target_tcp"], timeout=60, abort=s.any_exited), s.last_line("rdp_fast")
            latent = np.zeros((meta["latent_steps"], meta["latent_dim"]), np.float32)
            chunk_pub.publish(msgs.chunk_msg(robot.now() - 0.01, "world", "latent", latent, 4 / meta["fps"]))
            assert wait_until(moving)
            assert lifecycle.call("rdp_fast", "deactivate") == "inactive"
            # The hold was published before the transition returned; its delivery to this probe
            # is asynchronous (a loaded machine may take a while), so wait for it, then for quiet.
            assert wait_until(lambda: np.allclose(cmds[-1][1], POSE[:3], atol=1e-9), timeout=3.0), cmds[-3:]
            held = len(cmds)
            time.sleep(0.3)
            assert cmds[held:] == []                                            # nothing after it
            n0 = len(cmds)
            assert lifecycle.call("rdp_fast", "activate") == "active"
            assert wait_until(lambda: len(cmds) > n0 + 10)
            # The chunk from before deactivation is forgotten: the filter holds at the measured pose.
            assert all(np.allclose(c, POSE[:3], atol=1e-9) for _, c in cmds[n0:n0 + 10])
            # cleanup releases the model and the control thread; configure builds them again
            for step, state in (("deactivate", "inactive"), ("cleanup", "unconfigured"),
                                ("configure", "inactive"), ("activate", "active")):
                assert lifecycle.call("rdp_fast", step) == state, step
            n1 = len(cmds)
            assert wait_until(lambda: len(cmds) > n1 + 10), s.last_line("rdp_fast")
            assert s.procs["rdp_fast"].poll() is None, s.last_line("rdp_fast")
    finally:
        robot.stop = True
        probe.close()


def test_an_inactive_slow_node_publishes_no_chunk_and_plans_from_fresh_observations_when_activated(export, tmp_path):
    """`slowfast lifecycle rdp_slow deactivate`: no chunk after the transition returns, however
    long the observations keep coming; `activate`: chunks again, none from an observation made
    before the activation (its robot state stopped meanwhile, and a state 5 s old would still
    be fresh enough for this node's max_obs_age)."""

    from slowfast_app.cli import lifecycle
    from slowfast_ros.topic_probe import TopicProbe, wait_until

    probe = TopicProbe({"/diagnostics": DiagnosticArray})
    node = probe.node
    robot = Robot(node, fz=0.0)
    chunks: list = []      # (receipt time, observation stamp)
    node.create_subscription(JointTrajectory, "/policy/latent_chunk",
                             lambda m: chunks.append((robot.now(), msgs.chunk_from_msg(m)[0])), qos.COMMAND)
    slow_reports: list = []
    node.create_subscription(DiagnosticArray, "/diagnostics",
                             lambda m: slow_reports.extend(st for st in m.status if st.name == "rdp_slow"), 10)
    reports = lambda: len(slow_reports)  # noqa: E731
    stop_images = _publish_images(node, robot)
    overrides = {"rdp_slow": {"export_dir": str(export), "arms": ["right"], "rate_hz": 10.0, "max_obs_age": 5.0}}
    try:
        with stack.Stack(_profile("rdp_slow"), overrides, log_dir=tmp_path) as s:
            assert wait_until(lambda: len(chunks) >= 2, timeout=90), s.last_line("rdp_slow")
            assert lifecycle.call("rdp_slow", "deactivate") == "inactive"
            # (a chunk on its way when the transition returned has come by the next report)
            n = reports()
            assert wait_until(lambda: reports() >= n + 1, timeout=10), s.last_line("rdp_slow")
            n_inactive = len(chunks)
            # two more reports, observations coming all along: no chunk
            assert wait_until(lambda: reports() >= n + 3, timeout=10), s.last_line("rdp_slow")
            assert len(chunks) == n_inactive, f"{len(chunks) - n_inactive} chunk(s) while inactive"
            assert msgs.diagnostics_values(slow_reports[-1])["active"] == "False"

            robot.paused = True                          # the robot state stops: the newest is old
            time.sleep(0.1)
            activated = robot.now()
            n0 = len(chunks)
            assert lifecycle.call("rdp_slow", "activate") == "active"
            n = reports()
            assert wait_until(lambda: reports() >= n + 1, timeout=10)
            robot.paused = False
            assert wait_until(lambda: len(chunks) >= n0 + 2, timeout=30), s.last_line("rdp_slow")
            stale = [stamp for _, stamp in chunks[n0:] if stamp < activated]
            assert stale == [], f"{len(stale)} chunk(s) from observations made before the activation"
            # cleanup releases the model and the input reader; configure builds them again
            for step, state in (("deactivate", "inactive"), ("cleanup", "unconfigured"),
                                ("configure", "inactive"), ("activate", "active")):
                assert lifecycle.call("rdp_slow", step) == state, (step, s.last_line("rdp_slow"))
            n1 = len(chunks)
            assert wait_until(lambda: len(chunks) >= n1 + 2, timeout=60), s.last_line("rdp_slow")
            assert s.procs["rdp_slow"].poll() is None, s.last_line("rdp_slow")
    finally:
        stop_images.set()
        robot.stop = True
        probe.close()


def test_a_slow_node_that_plans_nothing_says_why(export, tmp_path):
    """Robot state but no camera image: no chunk can be planned. The node must not fail
    silently: /diagnostics turns to WARN with the reason counted since the last chunk, and
    the log says it (a starved planner looked like a policy that does nothing)."""
    from slowfast_ros.topic_probe import TopicProbe, wait_until

    probe = TopicProbe({"/diagnostics": DiagnosticArray})
    node = probe.node
    robot = Robot(node, fz=0.0)
    reports: list = []
    node.create_subscription(DiagnosticArray, "/diagnostics",
                             lambda m: reports.extend(st for st in m.status if st.name == "rdp_slow"), 10)
    overrides = {"rdp_slow": {"export_dir": str(export), "arms": ["right"], "rate_hz": 10.0}}
    try:
        with stack.Stack(_profile("rdp_slow"), overrides, log_dir=tmp_path) as s:
            starved = lambda: [r for r in reports if "no chunk for" in r.message]  # noqa: E731
            assert wait_until(lambda: starved(), timeout=90), s.last_line("rdp_slow")
            r = starved()[-1]
            assert r.level == DiagnosticStatus.WARN and "image" in r.message, r.message
            assert msgs.diagnostics_values(r)["chunks_published"] == "0"
            assert wait_until(lambda: "no chunk for" in (tmp_path / "rdp_slow.log").read_text(), timeout=15), s.last_line("rdp_slow")
    finally:
        robot.stop = True
        probe.close()

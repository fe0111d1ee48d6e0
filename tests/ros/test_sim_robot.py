"""The robot-side control path against the sim (profile ``sim-robot``) over real DDS:
sim_node offers the simulated Panda behind a real arm's ros2_control topics, robot_bridge_node
drives it through its ``cartesian_controllers`` adapter as it would a robot, and the scripted
expert wipes the path on the stack topics the bridge serves."""
import json
from pathlib import Path

import numpy as np
import pytest
import yaml
from diagnostic_msgs.msg import DiagnosticArray
from geometry_msgs.msg import PoseStamped, WrenchStamped
from sensor_msgs.msg import JointState
from std_msgs.msg import String

from slowfast_ros import msgs, qos
from slowfast_app import stack
from slowfast_ros.topic_probe import TopicProbe, wait_until

pytestmark = pytest.mark.dds


def test_bridge_config_puts_the_base_where_the_sim_arm_stands():
    """robot_bridge_sim.yaml's base_in_world is the sim arm's base (sim/arm.py ARM_BASES)."""
    from sim import SimConfig, SimEnv

    prof = stack.load_profile("sim-robot")
    spec = next(s for s in prof.nodes if s.name == "robot_bridge_node")
    params = {}
    for f in spec.param_files():
        params.update(yaml.safe_load(f.read_text())["robot_bridge_node"]["ros__parameters"])
    pos, quat = SimEnv(SimConfig(task="wipe", embodiment="arm", render=False)).arm_base("arm")
    np.testing.assert_allclose(params["base_in_world"], np.concatenate([pos, quat]), atol=1e-9)


def test_expert_wipes_through_robot_bridge_and_ros2_control_topics(tmp_path):
    ends = []
    probe = TopicProbe({"/tcp_pose_broadcaster/pose": PoseStamped, "/force_torque_sensor_broadcaster/wrench": WrenchStamped,
                        "/joint_states": JointState, "/arm/tcp_pose": PoseStamped,
                        "/cartesian_compliance_controller/target_frame": PoseStamped,
                        "/diagnostics": DiagnosticArray}, keep=("/tcp_pose_broadcaster/pose", "/arm/tcp_pose"))
    probe.node.create_subscription(String, "/sim/episode", lambda m: ends.append(json.loads(m.data)), qos.EVENTS)
    overrides = {"sim_node": {"camera_hz": 0.0, "episodes": 1, "start_delay": 1.0}}
    try:
        with stack.Stack(stack.load_profile("sim-robot"), overrides, log_dir=tmp_path) as s:
            assert probe.wait_for(["/tcp_pose_broadcaster/pose", "/arm/tcp_pose", "/joint_states"], timeout=60.0,
                                  count=3), s.last_line("sim_node")
            # the bridge's pose (world frame) against the broadcaster's (base frame) of the same
            # moment: the arm may already move, so the latest of each can be a few cm apart, and
            # either stream can lag the other in the probe
            def pair():
                base = {round(msgs.stamp_of(m), 3): m for m in probe.kept("/tcp_pose_broadcaster/pose")}
                for w in reversed(probe.kept("/arm/tcp_pose")):
                    for dt in (0.0, -0.001, 0.001):
                        if round(msgs.stamp_of(w) + dt, 3) in base:
                            return base[round(msgs.stamp_of(w) + dt, 3)], w
                return None
            assert wait_until(lambda: pair() is not None, timeout=30.0), "no bridge pose of a broadcaster pose's stamp"
            pose, world = pair()
            assert pose.header.frame_id == "base_link" and world.header.frame_id == "world"
            p_base = np.array([pose.pose.position.x, pose.pose.position.y, pose.pose.position.z])
            p_world = np.array([world.pose.position.x, world.pose.position.y, world.pose.position.z])
            # the base stands at world (-0.6, 0, 0)
            np.testing.assert_allclose(p_base + [-0.6, 0.0, 0.0], p_world, atol=0.005)
            assert len(probe.latest("/joint_states", JointState).name) == 7
            assert probe.wait_for(["/cartesian_compliance_controller/target_frame"], timeout=30.0, count=10), \
                s.last_line("robot_bridge_node")
            assert wait_until(lambda: any(e.get("event") == "end" for e in ends), timeout=90.0), \
                (s.last_line("sim_node"), s.last_line("robot_bridge_node"), s.last_line("expert_node"))
            diag = probe.diagnostics(["sim_node"], timeout=5.0).get("sim_node", {})
    finally:
        probe.close()
    end = next(e for e in ends if e.get("event") == "end")
    m = end["metrics"]
    # driven along the whole path, in contact, through bridge and controller topics. Not the
    # task's success threshold (time in band 0.8): three processes on a loaded 2-core machine
    # add latency to the expert's 200 Hz force loop (seen: 0.78-0.9), a benchmark's question
    info = {k: m.get(k) for k in ("coverage", "time_in_band", "peak_force", "slip_events")}
    assert m["coverage"] >= 0.9 and m["time_in_band"] >= 0.5, info
    assert int(diag.get("controller/arm/nonfinite", 0)) == 0


def test_the_policy_drives_the_sim_arm_through_the_robot_rdp_path(tmp_path):
    """Profile sim-robot-rdp: rdp_slow + rdp_fast + robot_bridge_node as robot-rdp starts them,
    the sim standing in for the arm's ros2_control stack and the sensors. The shipped wipe export
    was trained on the floating tool (it does not wipe on the arm): this checks the path, not the
    policy: chunks reach the fast loop, its targets reach the Cartesian controller's topic in
    base_link, the episode ends with its metrics."""
    ends = []
    target = "/cartesian_compliance_controller/target_frame"
    probe = TopicProbe({target: PoseStamped, "/arm/target_tcp": PoseStamped})
    probe.node.create_subscription(String, "/sim/episode", lambda m: ends.append(json.loads(m.data)), qos.EVENTS)
    export = str(Path(__file__).resolve().parents[2] / "checkpoints" / "wipe")
    overrides = {"sim_node": {"episodes": 1, "episode_seconds": 3.0, "out_dir": str(tmp_path / "out")},
                 "rdp_slow": {"export_dir": export}, "rdp_fast": {"export_dir": export}}
    try:
        with stack.Stack(stack.load_profile("sim-robot-rdp"), overrides, log_dir=tmp_path) as s:
            assert probe.wait_for([target, "/arm/target_tcp"], timeout=120.0, count=20), \
                (s.last_line("rdp_fast"), s.last_line("robot_bridge_node"), s.last_line("sim_node"))
            assert probe.latest(target, PoseStamped).header.frame_id == "base_link"
            assert probe.latest("/arm/target_tcp", PoseStamped).header.frame_id == "world"
            assert wait_until(lambda: any(e.get("event") == "end" for e in ends), timeout=60.0), \
                (s.last_line("sim_node"), s.last_line("robot_bridge_node"), s.last_line("rdp_slow"))
    finally:
        probe.close()
    m = next(e for e in ends if e.get("event") == "end")["metrics"]
    assert m["embodiment"] == "arm" and m["policy_chunks"] > 0, m


def test_tcp_pose_node_computes_the_sims_tcp_pose_from_its_joint_states(tmp_path):
    """tcp_pose_node, given the arm's URDF on the latched /robot_description (as
    robot_state_publisher serves it), turns the sim's /joint_states into the TCP pose the sim
    itself publishes on /tcp_pose_broadcaster/pose: same stamps, same pose, while the expert
    moves the arm through the bridge."""
    import dataclasses

    from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy

    from sim.urdf import arm_urdf
    from slowfast_ros import msgs
    from slowfast_ros.profiles import NodeSpec

    base = stack.load_profile("sim-robot")
    spec = NodeSpec("tcp_pose_node", "slowfast_ros.nodes.tcp_pose_node", ["tcp_pose_node.yaml"],
                    overrides={"pose_topic": "/tcp_pose_from_joints"})
    profile = dataclasses.replace(base, name="sim-robot+tcp_pose", nodes=[*base.nodes, spec])
    topics = ("/tcp_pose_broadcaster/pose", "/tcp_pose_from_joints")
    probe = TopicProbe({t: PoseStamped for t in topics}, keep=topics)   # kept from the start
    latched = QoSProfile(depth=1, durability=DurabilityPolicy.TRANSIENT_LOCAL, reliability=ReliabilityPolicy.RELIABLE)
    probe.node.create_publisher(String, "/robot_description", latched).publish(String(data=arm_urdf("wipe")))
    overrides = {"sim_node": {"camera_hz": 0.0, "episodes": 1, "start_delay": 0.5}}

    def poses(topic):                    # stamp -> pose, of what the probe kept so far
        return {round(msgs.stamp_of(m), 6): msgs.pose_from_msg(m) for m in probe.kept(topic)}

    def moved_enough():                  # 100 poses of common stamps, the episode under way (slow on a
        ref = poses(topics[0])           # loaded machine, where the probe may also match one publisher late)
        first = next(iter(ref.values()), None)
        return (len(probe.kept(topics[1])) >= 200 and len(set(ref) & set(poses(topics[1]))) >= 100
                and max(np.linalg.norm(p[1] - first[1]) for p in ref.values()) > 0.02)

    try:
        with stack.Stack(profile, overrides, log_dir=tmp_path) as s:
            assert probe.wait_for([topics[1]], timeout=60.0, count=20), s.last_line("tcp_pose_node")
            assert wait_until(moved_enough, timeout=90.0, poll=0.2), s.last_line("sim_node")
            got = {t: poses(t) for t in topics}
            diag = probe.diagnostics(["tcp_pose_node"], timeout=10.0).get("tcp_pose_node", {})
    finally:
        probe.close()
    ref, mine = got["/tcp_pose_broadcaster/pose"], got["/tcp_pose_from_joints"]
    common = sorted(set(ref) & set(mine))
    assert len(common) >= 100, (len(ref), len(mine))
    moved = max(np.linalg.norm(ref[t][1] - ref[common[0]][1]) for t in common)
    assert moved > 0.01                                             # the arm moved meanwhile
    # The sim's pose comes from the kinematics of the physics step before its joint positions
    # (MuJoCo integrates after computing them): one 1 ms step of motion apart at most, under
    # 0.5 mm at the arm's speeds here. The chain itself matches MuJoCo to 1e-6 m
    # (tests/hardware/test_arm_urdf.py).
    for t in common:
        _, p_ref, q_ref = ref[t]
        _, p, q = mine[t]
        np.testing.assert_allclose(p, p_ref, atol=5e-4)
        assert 2 * np.arccos(min(1.0, abs(float(np.dot(q, q_ref))))) < 5e-3
    assert int(diag["skipped/joints_missing"]) == 0 and int(diag["skipped/non_finite"]) == 0, diag

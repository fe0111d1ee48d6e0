"""The sim's Panda as a URDF (sim/urdf.py) and the chain kinematics that read it
(hardware/kinematics.py): the URDF's TCP and F/T frames are the MuJoCo sim's at any joint
configuration, its limits are the sim's, and a robot description a chain cannot be read
from is refused with a clear error."""
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import mujoco
import numpy as np
import pytest

from hardware.kinematics import UrdfChain
from slowfast_data.geometry import matrix_rpy, rpy_matrix
from sim import SimConfig, SimEnv
from sim.arm import joint_names
from sim.urdf import arm_urdf


@pytest.fixture(scope="module")
def urdf():
    return arm_urdf("wipe")


@pytest.fixture(scope="module")
def env():
    return SimEnv(SimConfig(task="wipe", embodiment="arm", render=False))


def _site_in_base(env, q, site):
    m = env.model
    d = mujoco.MjData(m)
    for name, v in zip(joint_names("arm"), q):
        d.qpos[m.jnt_qposadr[mujoco.mj_name2id(m, mujoco.mjtObj.mjOBJ_JOINT, name)]] = v
    mujoco.mj_kinematics(m, d)
    b = mujoco.mj_name2id(m, mujoco.mjtObj.mjOBJ_BODY, "arm_base")
    s = mujoco.mj_name2id(m, mujoco.mjtObj.mjOBJ_SITE, site)
    rb = d.xmat[b].reshape(3, 3)
    return rb.T @ (d.site_xpos[s] - d.xpos[b]), rb.T @ d.site_xmat[s].reshape(3, 3)


@pytest.mark.parametrize("link,site", [("arm_tool", "arm_tcp"), ("arm_ft_sensor", "arm_ft")])
def test_the_urdf_frames_are_the_sims_at_any_joint_configuration(urdf, env, link, site):
    chain = UrdfChain.from_urdf(urdf, "base_link", link)
    assert chain.joint_names == joint_names("arm")
    m = env.model
    ranges = [m.jnt_range[mujoco.mj_name2id(m, mujoco.mjtObj.mjOBJ_JOINT, n)] for n in chain.joint_names]
    rng = np.random.default_rng(0)
    for _ in range(25):
        q = np.array([rng.uniform(lo, hi) for lo, hi in ranges])
        pos, rot = _site_in_base(env, q, site)
        t = chain.transform(q)
        np.testing.assert_allclose(t[:3, 3], pos, atol=1e-6)
        np.testing.assert_allclose(t[:3, :3], rot, atol=1e-6)


def test_the_base_stands_where_the_sim_puts_it_and_the_limits_are_the_sims(urdf, env):
    root = ET.fromstring(urdf)
    chain = UrdfChain.from_urdf(urdf, "world", "base_link")
    pos, quat = chain.pose(np.zeros(0))
    want_pos, want_quat = env.arm_base("arm")
    np.testing.assert_allclose(pos, want_pos, atol=1e-9)
    np.testing.assert_allclose(np.abs(np.dot(quat, want_quat)), 1.0, atol=1e-9)
    m = env.model
    from sim.arm_control import ArmControlConfig

    for i, name in enumerate(joint_names("arm")):
        limit = root.find(f"joint[@name='{name}']/limit")
        jid = mujoco.mj_name2id(m, mujoco.mjtObj.mjOBJ_JOINT, name)
        act = mujoco.mj_name2id(m, mujoco.mjtObj.mjOBJ_ACTUATOR, f"arm_torq_j{i + 1}")
        np.testing.assert_allclose([float(limit.get("lower")), float(limit.get("upper"))], m.jnt_range[jid])
        assert float(limit.get("effort")) == pytest.approx(np.abs(m.actuator_ctrlrange[act]).min())
        assert float(limit.get("velocity")) == pytest.approx(ArmControlConfig().velocity_limits[i])


def test_ros2_control_declares_the_joints_at_the_sims_home_and_the_wrist_sensor(urdf, env):
    root = ET.fromstring(urdf)
    rc = root.find("ros2_control")
    assert rc.findtext("hardware/plugin") == "gz_ros2_control/GazeboSimSystem"
    env.reset()
    home = env.joint_state("arm")["position"]
    joints = rc.findall("joint")
    assert [j.get("name") for j in joints] == list(joint_names("arm"))
    for j, q0 in zip(joints, home):
        assert float(j.find("state_interface[@name='position']/param[@name='initial_value']").text) == pytest.approx(q0)
    sensor = rc.find("sensor")
    assert [s.get("name") for s in sensor.findall("state_interface")] == [
        "force.x", "force.y", "force.z", "torque.x", "torque.y", "torque.z"]
    gz = next(g for g in root.findall("gazebo") if g.get("reference") == "arm_ft_joint")
    assert gz.findtext("preserveFixedJoint") == "true"
    assert gz.find("sensor").get("name") == sensor.get("name") and gz.find("sensor").get("type") == "force_torque"
    # every mesh named exists; the pad is the one collision body
    for mesh in root.iter("mesh"):
        assert mesh.get("filename").startswith("file://")
        assert Path(mesh.get("filename")[len("file://"):]).is_file()
    assert [link.get("name") for link in root.findall("link") if link.find("collision") is not None] == ["arm_tool"]


def test_the_gazebo_plugin_loads_the_given_controllers(tmp_path):
    f = tmp_path / "c.yaml"
    root = ET.fromstring(arm_urdf("wipe", controllers=f))
    plugin = root.find("gazebo/plugin")
    assert plugin.get("name") == "gz_ros2_control::GazeboSimROS2ControlPlugin"
    assert plugin.findtext("parameters") == str(f.resolve())


def test_rpy_roundtrip():
    rng = np.random.default_rng(1)
    for _ in range(50):
        r, p, y = rng.uniform(-3, 3), rng.uniform(-1.5, 1.5), rng.uniform(-3, 3)
        np.testing.assert_allclose(rpy_matrix(*matrix_rpy(rpy_matrix(r, p, y))), rpy_matrix(r, p, y), atol=1e-9)


_TWO = """<robot name="r"><link name="a"/><link name="b"/><link name="c"/>
<joint name="j" type="{kind}"><parent link="a"/><child link="b"/><axis xyz="0 0 1"/>{extra}</joint></robot>"""


@pytest.mark.parametrize("text,base,tip,match", [
    ("<robot", "a", "b", "not valid XML"),
    ("<model name='x'/>", "a", "b", "not <robot>"),
    (_TWO.format(kind="revolute", extra=""), "a", "x", "TCP link 'x' is not a link"),
    (_TWO.format(kind="revolute", extra=""), "a", "c", "does not hang below"),
    (_TWO.format(kind="floating", extra=""), "a", "b", "type 'floating'"),
    (_TWO.format(kind="revolute", extra="<mimic joint='k'/>"), "a", "b", "mimic"),
    (_TWO.format(kind="revolute", extra="<origin xyz='0 nan 0'/>"), "a", "b", "finite"),
])
def test_a_chain_that_cannot_be_read_is_refused(text, base, tip, match):
    with pytest.raises(ValueError, match=match):
        UrdfChain.from_urdf(text, base, tip)


def test_prismatic_and_wrong_joint_count():
    chain = UrdfChain.from_urdf(_TWO.format(kind="prismatic", extra="<origin xyz='1 0 0'/>"), "a", "b")
    pos, _ = chain.pose([0.25])
    np.testing.assert_allclose(pos, [1.0, 0.0, 0.25])
    with pytest.raises(ValueError, match="1 joint positions"):
        chain.pose([0.0, 1.0])


def test_the_command_writes_the_urdf_and_refuses_a_bad_arm(tmp_path):
    out = tmp_path / "panda.urdf"
    r = subprocess.run([sys.executable, "-m", "sim.urdf", "--out", str(out)], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert ET.parse(out).getroot().get("name") == "panda_wipe"
    r = subprocess.run([sys.executable, "-m", "sim.urdf", "--task", "lift", "--arm", "middle"],
                       capture_output=True, text=True)
    assert r.returncode == 2 and "Traceback" not in r.stderr and len(r.stderr.strip().splitlines()) == 1
    assert "left, right" in r.stderr

"""The Gazebo wipe world and its ros_gz_bridge configuration parse and name the topics the
stack uses (Gazebo itself cannot run here: no gz sim in this environment)."""
import importlib
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
SDF = ROOT / "gazebo" / "wipe.sdf"
BRIDGE = ROOT / "gazebo" / "bridge.yaml"
BRIDGE_GANTRY = ROOT / "gazebo" / "bridge_gantry.yaml"
CONFIG = ROOT / "ros2_ws" / "src" / "slowfast_ros" / "slowfast_ros" / "config"


def _world():
    root = ET.parse(SDF).getroot()
    assert root.tag == "sdf" and float(root.get("version")) >= 1.9
    worlds = root.findall("world")
    assert len(worlds) == 1 and worlds[0].get("name") == "wipe"
    return worlds[0]


def _bridge(*files):
    """The entries of the bridge files (default: the world's and the gantry's, as robot:=gantry runs them)."""
    entries = []
    for f in files or (BRIDGE, BRIDGE_GANTRY):
        got = yaml.safe_load(f.read_text())
        assert isinstance(got, list) and got, f
        entries += got
    return entries


def _gz_topics_published_by_the_world(world) -> set[str]:
    topics = {"/clock"}
    for plugin in world.iter("plugin"):
        for t in plugin.findall("topic"):
            topics.add(t.text)
    for sensor in world.iter("sensor"):
        t = sensor.findtext("topic")
        if sensor.get("type") == "rgbd_camera":
            base = "/" + t.strip("/")
            topics |= {f"{base}/image", f"{base}/depth_image", f"{base}/camera_info", f"{base}/points"}
        else:
            topics.add(t)
    return topics


def test_world_has_the_table_gantry_sensors_and_systems():
    world = _world()
    models = {m.get("name"): m for m in world.findall("model")}
    assert {"table", "wipe_gantry", "camera"} <= set(models)
    joints = {j.get("name"): j.get("type") for j in models["wipe_gantry"].findall("joint")}
    assert joints["tool_x"] == joints["tool_y"] == joints["tool_z"] == "prismatic"
    sensors = {s.get("type") for s in world.iter("sensor")}
    assert {"force_torque", "rgbd_camera"} <= sensors
    systems = {p.get("name") for p in world.iter("plugin")}
    assert {"gz::sim::systems::Physics", "gz::sim::systems::Sensors", "gz::sim::systems::ForceTorque",
            "gz::sim::systems::JointPositionController", "gz::sim::systems::JointStatePublisher"} <= systems
    # The table top is at z = 0, as in the MuJoCo scene.
    top = models["table"].find("link[@name='top']")
    z, h = float(top.findtext("pose").split()[2]), float(top.find("collision/geometry/box/size").text.split()[2])
    assert abs(z + h / 2) < 1e-9


def test_bridge_maps_world_topics_to_the_stack_topics_with_valid_types():
    world = _world()
    gz_topics = _gz_topics_published_by_the_world(world)
    entries = _bridge()
    ros = {e["ros_topic_name"]: e for e in entries}
    # Camera topics of the RealSense wrapper, /clock, and the gantry's state and commands.
    assert {"/camera/color/image_raw", "/camera/color/camera_info", "/camera/aligned_depth_to_color/image_raw",
            "/clock", "/wipe/gantry/joint_states", "/wipe/tool/wrench"} <= set(ros)
    # the world's own file (the Panda runs with it alone) bridges no gantry topic
    assert not any("gantry" in e["gz_topic_name"] or "/wipe/" in e["gz_topic_name"] for e in _bridge(BRIDGE))
    for e in entries:
        assert e["direction"] in ("GZ_TO_ROS", "ROS_TO_GZ", "BIDIRECTIONAL"), e
        assert e["gz_type_name"].startswith("gz.msgs."), e
        pkg, kind, name = e["ros_type_name"].split("/")
        assert kind == "msg" and hasattr(importlib.import_module(f"{pkg}.msg"), name), e   # a real ROS type
        assert e["gz_topic_name"] in gz_topics, f"{e['gz_topic_name']} is not a topic of wipe.sdf"
    # Every joint position controller of the world is commanded through the bridge.
    controllers = [p for p in world.iter("plugin") if p.get("name") == "gz::sim::systems::JointPositionController"]
    commanded = {e["gz_topic_name"] for e in entries if e["direction"] == "ROS_TO_GZ"}
    assert {p.findtext("topic") for p in controllers} == commanded


def test_the_gazebo_bridge_node_config_matches_the_world_and_the_bridge():
    world = _world()
    from slowfast_app import stack

    given = yaml.safe_load((CONFIG / "robot_bridge_gazebo.yaml").read_text())["robot_bridge_node"]["ros__parameters"]
    assert given["use_sim_time"] is True
    # what the node runs with: its defaults, robot_bridge_node.yaml, then this file
    params = stack.node_params("robot_bridge_node", "slowfast_ros.nodes.robot_bridge_node",
                               {k: v for k, v in given.items() if k != "use_sim_time"})
    p = {f: (list(v) if isinstance(v, tuple) else v) for f, v in vars(params).items()}
    assert p["adapter"] == "gz_gantry"
    controllers = {p_.findtext("joint_name"): p_.findtext("topic") for p_ in world.iter("plugin")
                   if p_.get("name") == "gz::sim::systems::JointPositionController"}
    for joint in p["gantry_joints"]:
        assert controllers[joint] == f"{p['joint_command_prefix']}/{joint}/cmd_pos"
    ros = {e["ros_topic_name"] for e in _bridge()}
    assert p["joint_state_topic"] in ros and p["state_wrench_topic"] in ros
    publisher = [p_ for p_ in world.iter("plugin") if p_.get("name") == "gz::sim::systems::JointStatePublisher"][0]
    assert [j.text for j in publisher.findall("joint_name")] == p["gantry_joints"]
    # The workspace box lies inside the gantry's joint limits.
    limits = {j.get("name"): (float(j.findtext("axis/limit/lower")), float(j.findtext("axis/limit/upper")))
              for j in world.iter("joint") if j.get("type") == "prismatic"}
    for k, joint in enumerate(p["gantry_joints"]):
        lo, hi = limits[joint]
        assert lo <= p["gate"].workspace_min[k] < p["gate"].workspace_max[k] <= hi


def _launch_module():
    import importlib.util

    spec = importlib.util.spec_from_file_location("sim_gazebo_launch", ROOT / "launch" / "sim_gazebo.launch.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)          # needs no `launch` package until generate_launch_description()
    return mod


def test_the_launch_file_finds_the_world_in_a_source_checkout(monkeypatch):
    mod = _launch_module()
    monkeypatch.delenv("SLOWFAST_GAZEBO_DIR", raising=False)
    assert mod.gazebo_dir() == ROOT / "gazebo"
    monkeypatch.setenv("SLOWFAST_GAZEBO_DIR", str(ROOT / "gazebo"))
    assert (mod.gazebo_dir() / "bridge.yaml").is_file()


def test_the_panda_world_is_the_wipe_world_without_the_gantry(tmp_path):
    from slowfast_ros.gazebo import world_file

    assert world_file("gantry", ROOT / "gazebo", tmp_path) == SDF
    world = ET.parse(world_file("panda", ROOT / "gazebo", tmp_path)).getroot().find("world")
    models = {m.get("name") for m in world.findall("model")}
    assert models == {m.get("name") for m in _world().findall("model")} - {"wipe_gantry"}
    systems = {p.get("name") for p in world.findall("plugin")}
    assert {"gz::sim::systems::Physics", "gz::sim::systems::Sensors", "gz::sim::systems::ForceTorque"} <= systems
    with pytest.raises(ValueError, match="robot: 'ur5e'"):
        world_file("ur5e", ROOT / "gazebo", tmp_path)


def test_the_panda_controllers_drive_the_urdf_as_the_robot_path_expects():
    """gazebo/panda_controllers.yaml names the URDF's joints, links and F/T sensor, its
    Cartesian controller is the one robot_bridge_node commands, its stiffness the MuJoCo
    task's, and the compliance controller's wrench comes from the broadcaster the bridge reads."""
    from sim.scene import GAINS
    from sim.urdf import arm_urdf
    from slowfast_ros.arm_io import ROS2_CONTROL

    cfg = yaml.safe_load((ROOT / "gazebo" / "panda_controllers.yaml").read_text())
    urdf = ET.fromstring(arm_urdf("wipe"))
    links = {el.get("name") for el in urdf.findall("link")}
    rc = urdf.find("ros2_control")
    rc_joints = [j.get("name") for j in rc.findall("joint")]
    cm = cfg["controller_manager"]["ros__parameters"]
    assert cm["update_rate"] == 1000 and cm["use_sim_time"] is True
    name = ROS2_CONTROL["controller"]
    assert cm[name]["type"] == "cartesian_compliance_controller/CartesianComplianceController"
    cc = cfg[name]["ros__parameters"]
    assert cc["joints"] == rc_joints
    assert {cc[k] for k in ("end_effector_link", "robot_base_link", "ft_sensor_ref_link", "compliance_ref_link")} <= links
    assert cc["robot_base_link"] == ROS2_CONTROL["base_frame"]
    assert all({"position"} == {c.get("name") for c in j.findall("command_interface")} for j in rc.findall("joint"))
    assert cc["command_interfaces"] == ["position"]
    g = GAINS["wipe"]
    assert [cc["stiffness"][f"trans_{a}"] for a in "xyz"] == [g["kp"]] * 3
    assert [cc["stiffness"][f"rot_{a}"] for a in "xyz"] == [g["kr"]] * 3
    ft = cfg["force_torque_sensor_broadcaster"]["ros__parameters"]
    assert ft["sensor_name"] == rc.find("sensor").get("name") and ft["frame_id"] in links
    assert cm["force_torque_sensor_broadcaster"]["type"].startswith("force_torque_sensor_broadcaster/")
    from slowfast_ros.gazebo import CONTROLLERS, FT_REMAP, panda_description

    src, dst = FT_REMAP.split(":=")
    assert src == f"/{name}/ft_sensor_wrench" and dst == ROS2_CONTROL["wrench_topic"]
    assert set(CONTROLLERS) == {k for k, v in cm.items() if isinstance(v, dict)}
    plugin = ET.fromstring(panda_description(ROOT / "gazebo")).find("gazebo/plugin")
    assert plugin.findtext("parameters") == str(ROOT / "gazebo" / "panda_controllers.yaml")
    assert [r.text for r in plugin.findall("ros/remapping")] == [FT_REMAP]

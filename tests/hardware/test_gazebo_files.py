"""The Gazebo wipe world and its ros_gz_bridge configuration parse and name the topics the
stack uses (Gazebo itself cannot run here: no gz sim in this environment)."""
import importlib
import xml.etree.ElementTree as ET
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]
SDF = ROOT / "gazebo" / "wipe.sdf"
BRIDGE = ROOT / "gazebo" / "bridge.yaml"
CONFIG = ROOT / "ros2_ws" / "src" / "slowfast_ros" / "slowfast_ros" / "config"


def _world():
    root = ET.parse(SDF).getroot()
    assert root.tag == "sdf" and float(root.get("version")) >= 1.9
    worlds = root.findall("world")
    assert len(worlds) == 1 and worlds[0].get("name") == "wipe"
    return worlds[0]


def _bridge():
    entries = yaml.safe_load(BRIDGE.read_text())
    assert isinstance(entries, list) and entries
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


def test_the_launch_file_finds_the_world_in_a_source_checkout(monkeypatch):
    import importlib.util

    spec = importlib.util.spec_from_file_location("sim_gazebo_launch", ROOT / "launch" / "sim_gazebo.launch.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)          # needs no `launch` package until generate_launch_description()
    monkeypatch.delenv("SLOWFAST_GAZEBO_DIR", raising=False)
    assert mod.gazebo_dir() == ROOT / "gazebo"
    monkeypatch.setenv("SLOWFAST_GAZEBO_DIR", str(ROOT / "gazebo"))
    assert (mod.gazebo_dir() / "bridge.yaml").is_file()

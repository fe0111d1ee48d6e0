"""The Foxglove layout shipped in foxglove/ (cameras, TCP force plot, tactile field, latent
chunk timeline, diagnostics) reads topics a recorded bag has.

- It is a Foxglove layout (configById, layout tree, globalVariables, userNodes), every panel
  in the tree is configured and every configured panel is in the tree.
- Every topic a panel reads is either a user script's output (scripts in the layout, the
  same text as foxglove/scripts/*.ts) or a topic of the architecture's topic table.
- Over DDS: a bag recorded by the project's recorder (`slowfast record --operator
  scripted`, the recorder's default topics: everything), with a latent chunk published as
  rdp_slow does, has every one of those topics with the type the panel needs, and each
  carries its schema (ros2msg) and CDR encoding in the MCAP, so Foxglove opens it as is.
"""
import json
import re
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[2]
LAYOUT = ROOT / "foxglove" / "slowfast_layout.json"
SCRIPTS = ROOT / "foxglove" / "scripts"
PANEL_TYPES = {"Image", "Plot", "3D", "StateTransitions", "DiagnosticSummary", "DiagnosticStatusPanel", "RawMessages"}
# what each read topic must be in a bag for its panel to draw it
NEEDS = {"/camera/color/image_raw": "sensor_msgs/msg/Image", "/camera/color/camera_info": "sensor_msgs/msg/CameraInfo",
         "/arm/tcp_wrench": "geometry_msgs/msg/WrenchStamped", "/arm/tactile/markers": "sensor_msgs/msg/PointCloud2",
         "/policy/latent_chunk": "trajectory_msgs/msg/JointTrajectory", "/sim/episode": "std_msgs/msg/String",
         "/diagnostics": "diagnostic_msgs/msg/DiagnosticArray"}


def _layout():
    return json.loads(LAYOUT.read_text())


def _leaves(node):
    if isinstance(node, str):
        return [node]
    assert set(node) >= {"first", "second", "direction"} and node["direction"] in ("row", "column"), node
    return _leaves(node["first"]) + _leaves(node["second"])


def _path_topic(path: str) -> str:
    """'/arm/tcp_wrench.wrench.force.x' -> '/arm/tcp_wrench' (Foxglove message path syntax)."""
    m = re.match(r"(/[A-Za-z0-9_/]+)", path)
    assert m, path
    return m.group(1)


def _script_io(source: str):
    inputs = json.loads(re.search(r"export const inputs = (\[.*?\]);", source, re.S).group(1))
    output = re.search(r'export const output = "([^"]+)";', source).group(1)
    return inputs, output


def read_topics(doc) -> dict:
    """topic -> the panels (or scripts) reading it; script outputs left out."""
    reads: dict = {}
    outputs = set()
    for nid, node in doc["userNodes"].items():
        inputs, output = _script_io(node["sourceCode"])
        outputs.add(output)
        for t in inputs:
            reads.setdefault(t, []).append(f"script {nid}")
    for pid, cfg in doc["configById"].items():
        kind = pid.split("!")[0]
        topics = []
        if kind == "Image":
            topics += [cfg["imageMode"]["imageTopic"], cfg["imageMode"].get("calibrationTopic")]
        elif kind in ("Plot", "StateTransitions"):
            topics += [_path_topic(p["value"]) for p in cfg["paths"]]
        elif kind == "3D":
            topics += list(cfg.get("topics", {}))
        elif kind.startswith("Diagnostic"):
            topics.append(cfg["topicToRender"])
        elif kind == "RawMessages":
            topics.append(_path_topic(cfg["topicPath"]))
        for t in filter(None, topics):
            if t in outputs:
                continue
            reads.setdefault(t, []).append(pid)
    return reads


def test_layout_is_a_foxglove_layout_with_the_issue_panels():
    doc = _layout()
    assert set(doc) >= {"configById", "globalVariables", "userNodes", "layout"}
    leaves = _leaves(doc["layout"])
    assert sorted(leaves) == sorted(doc["configById"]), "every panel in the tree is configured, and only those"
    kinds = [p.split("!")[0] for p in leaves]
    assert set(kinds) <= PANEL_TYPES, kinds
    for want in ("Image", "Plot", "3D", "DiagnosticSummary"):
        assert want in kinds
    for pid, cfg in doc["configById"].items():
        if pid.startswith(("Plot!", "StateTransitions!")):
            assert cfg["paths"] and all(p["value"] and p["timestampMethod"] in ("receiveTime", "headerStamp")
                                        for p in cfg["paths"]), pid
        if pid.startswith("Plot!"):
            assert all(p["enabled"] for p in cfg["paths"]), pid
    reads = read_topics(doc)
    # the issue's panels: cameras, TCP force, tactile field, latent chunks, diagnostics
    assert {"/camera/color/image_raw", "/arm/tcp_wrench", "/arm/tactile/markers", "/policy/latent_chunk",
            "/diagnostics"} <= set(reads)
    force = [p["value"] for p in doc["configById"]["Plot!tcp_force"]["paths"]]
    assert force == [f"/arm/tcp_wrench.wrench.force.{a}" for a in "xyz"]


def test_user_scripts_are_the_shipped_sources_and_feed_their_panels():
    doc = _layout()
    files = {p.stem: p.read_text() for p in SCRIPTS.glob("*.ts")}
    assert files and set(files) == set(doc["userNodes"])
    outputs = set()
    for nid, node in doc["userNodes"].items():
        assert node["sourceCode"] == files[nid], f"foxglove/scripts/{nid}.ts and the layout's copy differ"
        inputs, output = _script_io(node["sourceCode"])
        assert output.startswith("/studio_script/") and inputs
        assert "export default function script" in node["sourceCode"]
        outputs.add(output)
    used = set()
    for cfg in _layout()["configById"].values():
        used |= set(cfg.get("topics", {})) | {_path_topic(p["value"]) for p in cfg.get("paths", [])}
    assert outputs <= used, "a script nobody reads"


def test_every_read_topic_is_in_the_architecture_topic_table():
    table = (ROOT / "docs" / "architecture.md").read_text().split("## Topics", 1)[1].split("\n## ", 1)[0]
    names = set()
    for line in table.splitlines():
        if line.startswith("| `"):
            first = line.split("|")[1]
            names |= {"/" + n.replace("<arm>", "arm").replace("<cam>", "camera").lstrip("/")
                      for n in re.findall(r"`([^`]+)`", first)}
    for topic, panels in read_topics(_layout()).items():
        assert topic in names, f"{topic} (read by {panels}) is not a topic of the stack"
        assert topic in NEEDS, topic


@pytest.mark.dds
def test_a_recorded_bag_has_every_topic_the_layout_reads(tmp_path, free_port):
    from mcap.reader import make_reader
    from trajectory_msgs.msg import JointTrajectory

    from slowfast_ros import msgs, qos
    from slowfast_ros.topic_probe import TopicProbe
    from teleop_tactar.bag import open_bag

    bags = tmp_path / "bags"
    cmd = [sys.executable, "-m", "slowfast_app.cli", "record", "--operator", "scripted", "--episodes", "1",
           "--task", "wipe", "--out", str(bags), "--port", str(free_port()),
           "--set", "sim_node.episode_seconds=3.0", "--set", "sim_node.camera_width=64",
           "--set", "sim_node.camera_height=48", "--set", "sim_node.camera_hz=10.0"]
    probe = TopicProbe({})
    chunk_pub = probe.node.create_publisher(JointTrajectory, "/policy/latent_chunk", qos.COMMAND)   # as rdp_slow
    stop = threading.Event()

    def publish_chunks():
        rng = np.random.default_rng(0)
        while not stop.is_set():
            chunk_pub.publish(msgs.chunk_msg(time.time(), "world", "latent", rng.normal(size=(8, 4)), 0.05))
            stop.wait(0.1)

    th = threading.Thread(target=publish_chunks, daemon=True)
    th.start()
    try:
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=180)
    finally:
        stop.set()
        th.join(2)
        probe.close()
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    bag = bags / "episode_0000"
    info = open_bag(bag)
    reads = read_topics(_layout())
    for topic, panels in reads.items():
        assert info.topics.get(topic) == NEEDS[topic], (topic, panels, sorted(info.topics))
    with open(next(bag.glob("*.mcap")), "rb") as f:
        summary = make_reader(f).get_summary()
    channels = {c.topic: c for c in summary.channels.values()}
    counts = summary.statistics.channel_message_counts
    for topic in reads:
        ch = channels[topic]
        schema = summary.schemas[ch.schema_id]
        assert ch.message_encoding == "cdr" and schema.encoding == "ros2msg" and schema.data, topic
        assert schema.name == NEEDS[topic], (topic, schema.name)
        assert counts.get(ch.id, 0) > 0, f"{topic}: no messages"

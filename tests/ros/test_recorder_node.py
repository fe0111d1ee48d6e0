"""recorder_node over DDS: a commanded episode reads back with every message intact (count
and content), a discarded one leaves nothing, and a recorder killed mid-episode leaves a
bag that still opens with everything up to its last flush."""
import json
import signal
import time

import numpy as np
import pytest
from geometry_msgs.msg import PoseStamped
from rclpy.serialization import deserialize_message
from sensor_msgs.msg import Image
from std_msgs.msg import String

from slowfast_ros import msgs, qos
from slowfast_app import stack
from slowfast_ros.topic_probe import TopicProbe, wait_until
from teleop_tactar.bag import iter_bag, open_bag

pytestmark = pytest.mark.dds
TYPES = {"/arm/tcp_pose": PoseStamped, "/camera/color/image_raw": Image}


def _profile():
    return stack.Profile("t", "", [stack.NodeSpec("recorder_node", "slowfast_ros.nodes.recorder_node",
                                                  ["recorder_node.yaml"])])


def _setup(probe):
    node = probe.node
    pose_pub = node.create_publisher(PoseStamped, "/arm/tcp_pose", qos.SENSOR_PUB)
    img_pub = node.create_publisher(Image, "/camera/color/image_raw", qos.SENSOR_PUB)
    cmd_pub = node.create_publisher(String, "/recorder/command", qos.COMMAND)
    return pose_pub, img_pub, cmd_pub


def _wait_subscribed(pubs, s, timeout=30):
    end = time.monotonic() + timeout
    while time.monotonic() < end and not s.any_exited():
        if all(p.get_subscription_count() > 0 for p in pubs):
            return True
        time.sleep(0.1)
    return False


class _RecorderState:
    """The recorder's latched state topic, newest message kept: tests wait for states (the
    episode is recording, every message sent has been counted), not for durations."""

    def __init__(self, node):
        self.latest: dict = {}
        self._sub = node.create_subscription(String, "/recorder/state", self._on, qos.LATCHED)

    def _on(self, msg) -> None:
        self.latest = json.loads(msg.data)

    def recorded(self) -> int:
        return sum(self.latest.get("counts", {}).values()) if self.latest.get("state") == "recording" else -1

    def wait(self, cond, timeout: float = 20.0) -> None:
        assert wait_until(lambda: cond(self), timeout), self.latest


def _send(pose_pub, img_pub, n, rng, sent, t0=1000.0):
    for i in range(n):
        m = msgs.pose_msg(t0 + i * 0.005, "world", rng.normal(size=3), [0, 0, 0, 1])
        pose_pub.publish(m)
        sent["/arm/tcp_pose"].append(m)
        if i % 10 == 0:
            im = msgs.image_msg(t0 + i * 0.005, "cam", rng.integers(0, 255, (48, 64, 3), dtype=np.uint8))
            img_pub.publish(im)
            sent["/camera/color/image_raw"].append(im)
        time.sleep(0.004)


def _start_and_send(s, state, pose_pub, img_pub, cmd_pub, rng):
    """Once the recorder listens: start an episode and send 300 poses and 30 images; returns
    once the recorder has counted all 330."""
    assert _wait_subscribed([pose_pub, img_pub, cmd_pub], s), s.last_line("recorder_node")
    cmd_pub.publish(msgs.json_msg({"cmd": "start"}))
    state.wait(lambda st: st.recorded() == 0)
    sent = {"/arm/tcp_pose": [], "/camera/color/image_raw": []}
    _send(pose_pub, img_pub, 300, rng, sent)
    state.wait(lambda st: st.recorded() == 330)
    return sent


def test_recorded_episode_reads_back_intact_and_discard_leaves_nothing(tmp_path):
    out = tmp_path / "bags"
    probe = TopicProbe({})
    pose_pub, img_pub, cmd_pub = _setup(probe)
    rng = np.random.default_rng(0)
    try:
        state = _RecorderState(probe.node)
        with stack.Stack(_profile(), {"recorder_node": {"out_dir": str(out), "task": "wipe the table",
                                                        "progress_period": 0.1,
                                                        "topics": ["/arm/tcp_pose", "/camera/color/image_raw"]}},
                         log_dir=tmp_path / "log") as s:
            sent = _start_and_send(s, state, pose_pub, img_pub, cmd_pub, rng)
            from slowfast_app.cli import main
            assert main(["record", "--command", "success"]) == 0     # `slowfast record --command`
            state.wait(lambda st: st.latest.get("state") == "idle")
            cmd_pub.publish(msgs.json_msg({"cmd": "start"}))               # a second one, discarded
            state.wait(lambda st: st.recorded() == 0)
            _send(pose_pub, img_pub, 20, rng, {"/arm/tcp_pose": [], "/camera/color/image_raw": []})
            cmd_pub.publish(msgs.json_msg({"cmd": "discard"}))
            state.wait(lambda st: st.latest.get("state") == "idle")
            assert s.procs["recorder_node"].poll() is None
        bags = sorted(p for p in out.iterdir() if p.is_dir())
        assert [b.name for b in bags] == ["episode_0000"]
        info = open_bag(bags[0])
        assert info.custom_data["task"] == "wipe the table" and info.custom_data["success"] == "True"
        got = {"/arm/tcp_pose": [], "/camera/color/image_raw": []}
        for topic, _, data, tname in iter_bag(bags[0], info=info):
            got[topic].append(deserialize_message(bytes(data), TYPES[topic]))
        assert not info.truncated
        for topic in got:
            assert got[topic] == sent[topic], (topic, len(got[topic]), len(sent[topic]))
        meta = info.metadata
        assert meta["storage_identifier"] == "mcap" and meta["message_count"] == 330
        types = {t["topic_metadata"]["name"]: t["topic_metadata"]["type"] for t in meta["topics_with_message_count"]}
        assert types == {"/arm/tcp_pose": "geometry_msgs/msg/PoseStamped", "/camera/color/image_raw": "sensor_msgs/msg/Image"}
        # the MCAP opens with the standard reader and decodes with its ros2msg schemas
        from mcap.reader import make_reader
        from mcap_ros2.decoder import DecoderFactory
        with open(bags[0] / info.metadata["relative_file_paths"][0], "rb") as f:
            decoded = [m for _, _, _, m in make_reader(f, decoder_factories=[DecoderFactory()]).iter_decoded_messages()]
        assert len(decoded) == 330 and decoded[0].header.frame_id == "world"
    finally:
        probe.close()


def test_killed_recorder_leaves_a_bag_that_opens_up_to_the_last_flush(tmp_path):
    out = tmp_path / "bags"
    probe = TopicProbe({})
    pose_pub, img_pub, cmd_pub = _setup(probe)
    rng = np.random.default_rng(1)
    try:
        state = _RecorderState(probe.node)
        with stack.Stack(_profile(), {"recorder_node": {"out_dir": str(out), "bag.flush_period": 0.2,
                                                        "progress_period": 0.1,
                                                        "topics": ["/arm/tcp_pose", "/camera/color/image_raw"]}},
                         log_dir=tmp_path / "log") as s:
            sent = _start_and_send(s, state, pose_pub, img_pub, cmd_pub, rng)
            time.sleep(0.8)                                                 # > flush_period: all flushed
            _send(pose_pub, img_pub, 50, rng, {"/arm/tcp_pose": [], "/camera/color/image_raw": []}, t0=2000.0)
            s.procs["recorder_node"].send_signal(signal.SIGKILL)
            s.procs["recorder_node"].wait(5)
        bag = out / "episode_0000"
        info = open_bag(bag)
        got = {"/arm/tcp_pose": [], "/camera/color/image_raw": []}
        for topic, _, data, _ in iter_bag(bag, info=info):
            got[topic].append(deserialize_message(bytes(data), TYPES[topic]))
        assert info.truncated
        for topic in got:   # everything sent before the last flush, in order, intact
            assert got[topic][:len(sent[topic])] == sent[topic], topic
        # the standard reader opens it too (linear read, no summary)
        from mcap.reader import NonSeekingReader
        with open(bag / info.metadata["relative_file_paths"][0], "rb") as f:
            n = 0
            try:
                for _ in NonSeekingReader(f).iter_messages(log_time_order=False):
                    n += 1
            except Exception:  # noqa: BLE001 - the cut-off tail
                pass
        assert n >= 330
        # a recorder started again over the same folder repairs the bag for indexed readers
        with stack.Stack(_profile(), {"recorder_node": {"out_dir": str(out)}}, log_dir=tmp_path / "log2") as s:
            assert wait_until(lambda: "repaired" in s.last_line("recorder_node") or s.any_exited(), 30), \
                s.last_line("recorder_node")
        from mcap.reader import make_reader
        with open(bag / info.metadata["relative_file_paths"][0], "rb") as f:
            assert sum(1 for _ in make_reader(f).iter_messages()) == len(list(iter_bag(bag)))
    finally:
        probe.close()


def test_sim_episode_events_start_and_end_once_with_latched_state_and_offered_qos(tmp_path):
    """Following sim episodes: the bag holds the start event first and the end event (with
    the metrics) last, each once; a latched topic's state at the start is in it; the offered
    QoS is recorded, so a replay serves latched topics latched."""
    from rosbags.highlevel import AnyReader
    from rosbags.interfaces import QosDurability
    from rosbags.typesys import Stores, get_typestore

    out = tmp_path / "bags"
    probe = TopicProbe({})
    node = probe.node
    pose_pub, _, _ = _setup(probe)
    ev_pub = node.create_publisher(String, "/sim/episode", qos.EVENTS)
    estop_pub = node.create_publisher(String, "/safety/estop", qos.LATCHED)
    estop_pub.publish(String(data="released"))                 # latched before the recorder starts
    try:
        state = _RecorderState(node)
        with stack.Stack(_profile(), {"recorder_node": {"out_dir": str(out), "progress_period": 0.1,
                                                        "follow_episodes": True,
                                                        "topics": ["/arm/tcp_pose", "/safety/estop", "/sim/episode"]}},
                         log_dir=tmp_path / "log") as s:
            assert _wait_subscribed([pose_pub, ev_pub, estop_pub], s), s.last_line("recorder_node")
            assert wait_until(lambda: estop_pub.get_subscription_count() > 0, 10)
            time.sleep(0.5)
            now = node.get_clock().now().nanoseconds * 1e-9
            ev_pub.publish(msgs.json_msg({"event": "start", "episode": 3, "task": "wipe", "seed": 7, "start_stamp": now}))
            state.wait(lambda st: st.recorded() >= 1)
            for i in range(50):
                pose_pub.publish(msgs.pose_msg(now + i * 0.005, "world", [0.0, 0.0, 0.1], [0, 0, 0, 1]))
                time.sleep(0.004)
            state.wait(lambda st: st.latest.get("counts", {}).get("/arm/tcp_pose") == 50)
            ev_pub.publish(msgs.json_msg({"event": "end", "episode": 3, "metrics": {"success": True, "coverage": 0.97}}))
            state.wait(lambda st: st.latest.get("state") == "idle")
        (bag,) = [p for p in out.iterdir() if p.is_dir()]
        events = [(json.loads(deserialize_message(bytes(d), String).data), t) for topic, t, d, _ in iter_bag(bag)
                  if topic == "/sim/episode"]
        assert [e["event"] for e, _ in events] == ["start", "end"]
        assert events[1][0]["metrics"]["coverage"] == 0.97
        order = [topic for topic, *_ in iter_bag(bag)]
        assert order[0] == "/sim/episode" and order[-1] == "/sim/episode"
        with AnyReader([bag], default_typestore=get_typestore(Stores.ROS2_KILTED)) as reader:
            conns = {c.topic: c for c in reader.connections}
            for latched in ("/safety/estop", "/sim/episode"):
                assert conns[latched].ext.offered_qos_profiles[0].durability == QosDurability.TRANSIENT_LOCAL, latched
            assert conns["/arm/tcp_pose"].ext.offered_qos_profiles[0].durability == QosDurability.VOLATILE
            estop = [reader.deserialize(raw, c.msgtype).data for c, _, raw in reader.messages([conns["/safety/estop"]])]
            assert estop == ["released"]
            assert sum(1 for _ in reader.messages([conns["/arm/tcp_pose"]])) == 50
    finally:
        probe.close()

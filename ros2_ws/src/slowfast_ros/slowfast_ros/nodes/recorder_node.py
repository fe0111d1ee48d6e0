"""recorder_node: demonstration episodes as rosbag2 folders (metadata.yaml + MCAP, CDR). It
orchestrates: the queue, the writer thread and the episode bookkeeping live without ROS in
``teleop_tactar.recorder_session``.

Subscribes raw (no deserialization) to every topic in ``topics`` ([''] = every topic it
discovers, less ``exclude``), reliable with a deep queue; callbacks only put the bytes and
the receipt time on a bounded queue (a full queue counts a drop); a writer thread writes
them. Commands arrive as JSON ``{"cmd": start|stop|success|failure|discard, "task": ...}``
on ``recorder/command`` (from the headset buttons, the web page, `slowfast record`); with
``follow_episodes`` the sim's ``sim/episode`` events start and stop episodes (success from
the sim's metrics). Progress (elapsed, messages per topic, drops) goes to the log and the
latched ``recorder/state`` JSON once per ``progress_period``. Each episode event goes out
once on ``recorder/events`` (JSON ``{"event": started|saved|discarded|error, "episode",
"outcome", "text", "stamp"}``): the teleop node tells the operator.

Crash safety: the bag is flushed (chunk closed, file and metadata.yaml written) every
``bag.flush_period`` s; a killed recorder leaves a bag readable up to the last flush. A full
disk stops the episode with a clear message and keeps what was written.
"""
from __future__ import annotations

import dataclasses
import importlib

from rclpy.node import Node
from std_msgs.msg import String

from slowfast_ros import msgs, qos
from slowfast_ros.node_util import declare_params, node_now_ns, param, run_node
from teleop_tactar.recorder import EpisodeRecorder, RecorderConfig
from teleop_tactar.recorder_session import EPISODE_TOPIC, RecorderSession


@dataclasses.dataclass
class RecorderNodeParams:
    out_dir: str = param("bags", "folder of the episode bags (created)")
    topics: list = param([""], "topics to record ([''] = every discovered topic except exclude)")
    exclude: list = param(["/rosout", "/parameter_events", "/recorder/state", "/recorder/events"],
                          "topics never recorded")
    task: str = param("", "task description stored with each episode")
    follow_episodes: bool = param(False, "start/stop with the sim's sim/episode events")
    queue_size: int = param(20000, "messages buffered between the callbacks and the writer")
    dds_depth: int = param(2000, "DDS history depth of each recording subscription (reliable, keep last)")
    bag: RecorderConfig = param(RecorderConfig(), "how episodes are written (teleop_tactar.recorder.RecorderConfig)")
    progress_period: float = param(1.0, "progress line period (s)")
    discovery_period: float = param(0.5, "how often new topics are looked for (s)")

    def __post_init__(self):
        if not 10 <= self.queue_size <= 1_000_000:
            raise ValueError(f"queue_size: {self.queue_size} outside 10..1000000")
        if not 10 <= self.dds_depth <= 100_000:
            raise ValueError(f"dds_depth: {self.dds_depth} outside 10..100000")
        if not 0.1 <= self.progress_period <= 60.0:
            raise ValueError(f"progress_period: {self.progress_period} outside 0.1..60 s")
        if not 0.05 <= self.discovery_period <= 10.0:
            raise ValueError(f"discovery_period: {self.discovery_period} outside 0.05..10 s")
        if not self.out_dir:
            raise ValueError("out_dir: must not be empty")


def _msg_class(type_name: str):
    pkg, _, name = type_name.split("/")
    return getattr(importlib.import_module(f"{pkg}.msg"), name)


class RecorderNode(Node):
    def __init__(self):
        super().__init__("recorder_node")
        p = self.p = declare_params(self, RecorderNodeParams)
        rec = EpisodeRecorder(p.out_dir, p.bag)
        for line in rec.repair_unfinished():   # bags a killed recorder left behind
            self.get_logger().warning(line)
        self.wanted = {self._abs(t) for t in p.topics if t}
        self.exclude = {self._abs(t) for t in p.exclude if t}
        self.subs: dict[str, object] = {}
        self.state_pub = self.create_publisher(String, "recorder/state", qos.LATCHED)
        self.events_pub = self.create_publisher(String, "recorder/events", qos.EVENTS)
        self.session = RecorderSession(rec, p.task, p.queue_size, self._now_ns, self, self.get_logger())
        self.create_subscription(String, "recorder/command", self._on_command, qos.COMMAND)
        if p.follow_episodes:
            self.create_subscription(String, "sim/episode", self._on_episode, qos.EVENTS)
        self.create_timer(p.discovery_period, self._discover)
        self.create_timer(p.progress_period, self.session.progress)
        self.session.start()
        self._discover()
        self.get_logger().info(f"recording into {p.out_dir} ({'following sim episodes' if p.follow_episodes else 'on command'})")

    def _abs(self, name: str) -> str:
        return name if name.startswith("/") else "/" + name

    # ------------------------------------------------------------ callbacks (store only)

    def _discover(self) -> None:
        for name, types in self.get_topic_names_and_types():
            if name in self.subs or name in self.exclude or (self.wanted and name not in self.wanted):
                continue
            if name == EPISODE_TOPIC and self.p.follow_episodes:
                continue   # the episode handler writes each event once, inside its episode
            if len(types) != 1:
                continue
            try:
                cls = _msg_class(types[0])
            except (ImportError, AttributeError, ValueError):
                continue
            offers = qos.offered(self, name)
            self.subs[name] = self.create_subscription(
                cls, name, lambda data, n=name: self.session.message(n, data, self._now_ns()),
                qos.record_profile(offers, self.p.dds_depth), raw=True)
            self.session.topic(name, types[0], offers)

    _now_ns = node_now_ns

    def _on_command(self, msg: String) -> None:
        try:
            cmd = msgs.json_from_msg(msg)
        except ValueError as exc:
            self.get_logger().warning(f"recorder/command: {exc}")
            return
        self.session.command(cmd)

    def _on_episode(self, msg: String) -> None:
        try:
            ev = msgs.json_from_msg(msg)
        except ValueError:
            return
        self.session.episode(ev, lambda: self._event(msg))

    def _event(self, msg: String) -> tuple:
        from rclpy.serialization import serialize_message  # noqa: PLC0415
        return serialize_message(msg), self._now_ns(), qos.offered(self, EPISODE_TOPIC)

    # ------------------------------------------------------------ the session's outputs

    def publish_event(self, event: dict) -> None:
        self.events_pub.publish(msgs.json_msg(event))

    def publish_state(self, progress: dict) -> None:
        self.state_pub.publish(msgs.json_msg(progress))

    def close(self) -> None:
        self.session.close()


#: the parameters this node declares (checked by `slowfast` before anything starts)
PARAMS = RecorderNodeParams


def main(args=None) -> int:
    return run_node(RecorderNode, args, events_executor=True)


if __name__ == "__main__":
    raise SystemExit(main())

"""recorder_node: demonstration episodes as rosbag2 folders (metadata.yaml + MCAP, CDR).

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
import queue
import threading

from rclpy.node import Node
from std_msgs.msg import String

from slowfast_ros import msgs, qos
from slowfast_ros.node_util import declare_params, param, run_node
from teleop_tactar.recorder import EpisodeRecorder, RecorderConfig


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


EPISODE_TOPIC = "/sim/episode"


def _msg_class(type_name: str):
    pkg, _, name = type_name.split("/")
    return getattr(importlib.import_module(f"{pkg}.msg"), name)


class RecorderNode(Node):
    def __init__(self):
        super().__init__("recorder_node")
        p = self.p = declare_params(self, RecorderNodeParams)
        self.rec = EpisodeRecorder(p.out_dir, p.bag)
        for line in self.rec.repair_unfinished():   # bags a killed recorder left behind
            self.get_logger().warning(line)
        self.wanted = {self._abs(t) for t in p.topics if t}
        self.exclude = {self._abs(t) for t in p.exclude if t}
        self.q: queue.Queue = queue.Queue(maxsize=p.queue_size)
        self.subs: dict[str, object] = {}
        self.state_pub = self.create_publisher(String, "recorder/state", qos.LATCHED)
        self.events_pub = self.create_publisher(String, "recorder/events", qos.EVENTS)
        self.create_subscription(String, "recorder/command", self._on_command, qos.COMMAND)
        if p.follow_episodes:
            self.create_subscription(String, "sim/episode", self._on_episode, qos.EVENTS)
        self.create_timer(p.discovery_period, self._discover)
        self.create_timer(p.progress_period, self._progress)
        self._stop = threading.Event()
        self._writer = threading.Thread(target=self._write_loop, name="recorder-writer", daemon=True)
        self._writer.start()
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
                cls, name, lambda data, n=name: self._on_message(n, data),
                qos.record_profile(offers, self.p.dds_depth), raw=True)
            self._put(("topic", name, types[0], offers))

    def _now_ns(self) -> int:
        return self.get_clock().now().nanoseconds

    def _on_message(self, name: str, data: bytes) -> None:
        try:
            self.q.put_nowait(("msg", name, data, self._now_ns()))
        except queue.Full:
            self.rec.drops[name] += 1

    def _put(self, item) -> None:
        self.q.put(item)   # control items are never dropped

    def _on_command(self, msg: String) -> None:
        try:
            cmd = msgs.json_from_msg(msg)
        except ValueError as exc:
            self.get_logger().warning(f"recorder/command: {exc}")
            return
        if cmd.get("cmd") not in ("start", "stop", "success", "failure", "discard"):
            self.get_logger().warning(f"recorder/command: unknown command {cmd.get('cmd')!r}")
            return
        self._put(("cmd", cmd))

    def _on_episode(self, msg: String) -> None:
        try:
            ev = msgs.json_from_msg(msg)
        except ValueError:
            return
        if ev.get("event") == "start":
            if self._now_ns() * 1e-9 > float(ev.get("start_stamp", 0.0)) + 0.5:
                self.get_logger().warning(f"episode {ev.get('episode')} was already running: not recorded")
                return
            # the start event itself goes into the bag first: the converter aligns on it
            self._put(("cmd", {"cmd": "start", "task": ev.get("task"), "sim_episode": ev.get("episode"),
                               "seed": ev.get("seed"), "_event": self._event(msg)}))
        elif ev.get("event") == "end":
            # ... and the end event (with the episode's metrics) last, before the bag closes
            success = (ev.get("metrics") or {}).get("success")
            self._put(("cmd", {"cmd": "stop" if success is None else ("success" if success else "failure"),
                               "_event": self._event(msg)}))

    def _event(self, msg: String) -> tuple:
        from rclpy.serialization import serialize_message  # noqa: PLC0415
        return serialize_message(msg), self._now_ns(), qos.offered(self, EPISODE_TOPIC)

    # ------------------------------------------------------------ writer thread

    def _write_loop(self) -> None:
        while not self._stop.is_set() or not self.q.empty():
            try:
                item = self.q.get(timeout=0.05)
            except queue.Empty:
                if self.rec.recording:
                    self.rec.flush()
                    self._report_error()
                continue
            kind = item[0]
            if kind == "msg":
                self.rec.write(item[1], item[2], item[3])
                if not self.rec.recording and self.rec.error:
                    self._report_error()
            elif kind == "topic":
                self.rec.add_topic(item[1], item[2], item[3])
            elif kind == "cmd":
                self._command(item[1])
        if self.rec.recording:
            self.rec.stop()

    def _report_error(self) -> None:
        if self.rec.error and not getattr(self, "_reported", "") == self.rec.error:
            self._reported = self.rec.error
            self.get_logger().error(self.rec.error)
            self._tell("error", text=self.rec.error)
            self._progress()

    def _command(self, cmd: dict) -> None:
        c = cmd["cmd"]
        try:
            if c == "start":
                if "_event" in cmd and self.rec.recording:
                    # a sim episode starts before the last one's end was seen: close that bag
                    # without an outcome rather than run two episodes into one
                    folder = self.rec.stop(None)
                    self.get_logger().warning(f"episode {folder.name}: its end event never came; "
                                              "saved without an outcome")
                    self._tell("saved", folder)
                extra = {k: v for k, v in cmd.items() if k not in ("cmd", "source", "_event")}
                if not extra.get("task"):
                    extra["task"] = self.p.task
                folder = self.rec.start(**extra)
                self._write_event(cmd)
                self.rec.write_latched(cmd["_event"][1] if "_event" in cmd else self._now_ns())
                self.get_logger().info(f"recording {folder}")
                self._tell("started", folder)
            elif c in ("stop", "success", "failure"):
                self._write_event(cmd)
                folder = self.rec.stop({"stop": None, "success": True, "failure": False}[c])
                if folder is not None:
                    self.get_logger().info(f"episode {folder.name} saved ({c})")
                    if self.rec.error:
                        self._report_error()
                    else:
                        self._tell("saved", folder, None if c == "stop" else c)
            elif c == "discard":
                folder = self.rec.discard()
                if folder is not None:
                    self.get_logger().info(f"episode {folder.name} discarded")
                    self._tell("discarded", folder)
        except OSError as exc:
            self.get_logger().error(str(exc))
            self._tell("error", text=str(exc))
        self._progress()

    def _tell(self, kind: str, folder=None, outcome: str | None = None, text: str = "") -> None:
        """One episode event on ``recorder/events`` (the operator's log lines come from these)."""
        self.events_pub.publish(msgs.json_msg({"event": kind, "episode": folder.name if folder else "",
                                               "outcome": outcome, "text": text,
                                               "stamp": self._now_ns() * 1e-9}))

    def _write_event(self, cmd: dict) -> None:
        if "_event" in cmd and self.rec.recording:
            data, stamp, offers = cmd["_event"]
            self.rec.add_topic(EPISODE_TOPIC, "std_msgs/msg/String", offers, keep_latched=False)
            self.rec.write(EPISODE_TOPIC, data, stamp)

    def _progress(self) -> None:
        prog = self.rec.progress()
        prog["queued"] = self.q.qsize()
        if prog["state"] == "recording":
            self.get_logger().info(prog["line"])
        self.state_pub.publish(msgs.json_msg(prog))

    def close(self) -> None:
        self._stop.set()
        self._writer.join(timeout=10.0)


#: the parameters this node declares (checked by `slowfast` before anything starts)
PARAMS = RecorderNodeParams


def main(args=None) -> int:
    return run_node(RecorderNode, args, events_executor=True)


if __name__ == "__main__":
    raise SystemExit(main())

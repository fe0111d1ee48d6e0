"""streamvln_nav: vision-language navigation with StreamVLN, over ROS 2.

Subscribes ``camera/color/image_raw``, ``camera/aligned_depth_to_color/image_raw`` (16UC1 mm
or 32FC1 m), ``camera/color/camera_info``, ``odom`` (nav_msgs/Odometry) and ``instruction``
(std_msgs/String: a new instruction starts a new episode, an empty one cancels it). Publishes
``cmd_vel`` (Twist) at ``control_hz``, ``nav/status`` (latched JSON: the navigator's episode
events, start, stop, cancel; an end carries the episode's per-turn latencies and speeds through
the joins of two turns) and ``/diagnostics`` (turn latency, window and memory tokens, skips, stops).

The navigation itself is ``policy.streamvln.navigator.Navigator``, without ROS: when a turn
runs the model and how its actions become pose goals, when the base must stop (stale odometry
or images, a pose jump of more than ``max_pose_jump``, no episode), which frames are skipped
and counted, and what an episode reports. This node converts messages for it; besides the
executor, the navigator's turn thread runs a turn whenever a colour image or an instruction
arrives (and every 50 ms), and the node's control loop (``PacedLoop``) publishes the
navigator's ``cmd_vel`` at ``control_hz`` and ends the episode on STOP.

A lifecycle node (``slowfast_ros.lifecycle``): configure builds the agent and starts both
threads, activate lets it take instructions and command the base, deactivate publishes one
zero ``cmd_vel`` (the base stops), ends a running episode (``nav/status`` event ``cancel``,
``"reason": "deactivated"``), says so in its log and publishes nothing on ``cmd_vel`` until
activated; an instruction received while inactive is ignored (counted in ``skipped/``).
cleanup stops the threads and releases the model.
"""
from __future__ import annotations

import dataclasses
import threading
import time

from diagnostic_msgs.msg import DiagnosticArray
from geometry_msgs.msg import Twist
from nav_msgs.msg import Odometry
from sensor_msgs.msg import CameraInfo, Image
from std_msgs.msg import String

from policy.streamvln.navigator import AgentSpec, Navigator, NavigatorConfig, build_agent
from slowfast_ros import msgs, qos
from slowfast_ros.lifecycle import ManagedNode, ManagedParams
from slowfast_ros.node_util import PacedLoop, RateMeter, declare_params, node_now, run_node


@dataclasses.dataclass
class StreamVLNNavParams(NavigatorConfig, AgentSpec, ManagedParams):
    """The agent's and the navigator's values, under their flat names (``control_hz``, ...)."""

    def __post_init__(self):
        AgentSpec.__post_init__(self)
        NavigatorConfig.__post_init__(self)


class StreamVLNNav(ManagedNode):
    active_note = "taking instructions and commanding the base"
    inactive_note = "base stopped (one zero cmd_vel sent), episode cancelled; no command until activated"

    def __init__(self):
        super().__init__("streamvln_nav")
        self.p: StreamVLNNavParams = declare_params(self, StreamVLNNavParams())
        self._lock = threading.Lock()
        self._color: Image | None = None
        self._depth: Image | None = None
        self._info: CameraInfo | None = None
        self.cmd_meter = RateMeter()
        self._tick_lock = threading.Lock()   # a control tick and a transition never overlap
        self.loop: PacedLoop | None = None

        sub = qos.SENSOR_SUB
        self.create_subscription(Image, "camera/color/image_raw", self._on_color, sub)
        self.create_subscription(Image, "camera/aligned_depth_to_color/image_raw", self._on_depth, sub)
        self.create_subscription(CameraInfo, "camera/color/camera_info", self._on_info, sub)
        self.create_subscription(Odometry, "odom", self._on_odom, sub)
        self.create_subscription(String, "instruction", self._on_instruction, qos.COMMAND)
        self.cmd_pub = self.create_publisher(Twist, "cmd_vel", qos.COMMAND)
        self.status_pub = self.create_publisher(String, "nav/status", qos.LATCHED)
        self.diag_pub = self.create_publisher(DiagnosticArray, "/diagnostics", 10)
        self.nav = Navigator(self.p, lambda ev: self.status_pub.publish(msgs.json_msg(ev)), log=self.get_logger())
        self.create_timer(1.0, self._publish_diagnostics)
        self.autostart(self.p.autostart)

    # ------------------------------------------------------------ lifecycle

    def _configure(self) -> None:
        p = self.p
        self.nav.agent = build_agent(p)
        if not p.checkpoint and not p.agent_factory:
            self.get_logger().warning("no checkpoint: a small RANDOM model drives (plumbing only)")
        self.nav.start_turns(self._latest_frame)
        self.loop = PacedLoop(p.control_hz, self._control_tick, name="vln-control").start()
        self.get_logger().info(f"streamvln_nav: cmd_vel at {p.control_hz} Hz, waiting for an instruction")

    def _cleanup(self) -> None:
        if self.loop is not None:
            self.loop.stop()
            self.loop = None
        self.nav.stop_turns(timeout=5.0)
        self.nav.agent = None

    def _deactivate(self) -> None:
        with self._tick_lock:   # waits for a tick in progress: the zero below is the last command
            self.active = False
            try:
                self.cmd_pub.publish(msgs.twist_msg(0.0, 0.0))
            except Exception:  # noqa: BLE001 - on the way out, the context may be down
                pass
        self.nav.cancel(reason="deactivated")

    # ------------------------------------------------------------ callbacks (store only)

    def _on_color(self, msg: Image) -> None:
        with self._lock:
            self._color = msg
        self.nav.image_received(time.monotonic())

    def _on_depth(self, msg: Image) -> None:
        with self._lock:
            self._depth = msg

    def _on_info(self, msg: CameraInfo) -> None:
        with self._lock:
            self._info = msg

    def _on_odom(self, msg: Odometry) -> None:
        try:
            stamp, pose, twist = msgs.odometry_from_msg(msg)
        except ValueError:
            self.nav.skips["odom_invalid"] += 1
            return
        self.nav.odometry(stamp, pose, float(twist[0]), time.monotonic())

    def _on_instruction(self, msg: String) -> None:
        if not self.active:
            self.nav.skips["instruction_while_inactive"] += 1
            self.get_logger().warning(f"inactive: instruction ignored ({msg.data!r}); "
                                      f"`slowfast lifecycle {self.get_name()} activate` first")
            return
        self.nav.instruct(msg.data)

    # ------------------------------------------------------------ frames for the turns, control loop

    def _latest_frame(self):
        """The newest colour image's stamp and how to decode it with its depth and intrinsics
        (the navigator decodes only a frame it has not seen)."""
        with self._lock:
            color, depth, info = self._color, self._depth, self._info
        if color is None or depth is None or info is None:
            return None

        def decode():
            _, rgb = msgs.image_from_msg(color)
            _, depth_m = msgs.depth_from_msg(depth)
            intr = msgs.intrinsics_from_msg(info)
            return (rgb[:, :, ::-1] if color.encoding == "bgr8" else rgb), depth_m, msgs.stamp_of(depth), intr
        return msgs.stamp_of(color), decode

    def _control_tick(self) -> None:
        with self._tick_lock:
            if not self.active:   # inactive: nothing on cmd_vel
                return
            now = time.monotonic()
            cmd = self.nav.control(now)
            if cmd.stopped is not None:
                self.get_logger().warning(f"base stopped: {cmd.stopped}", throttle_duration_sec=1.0)
            self.cmd_pub.publish(msgs.twist_msg(cmd.v, cmd.w))
            self.cmd_meter.tick(now)
            if cmd.done and self.nav.navigating:
                self.nav.end("stop")

    # ------------------------------------------------------------ diagnostics

    def _publish_diagnostics(self) -> None:
        if self.nav.agent is None:
            return
        values = {"active": self.active, **self.nav.diagnostics(), "rate/cmd_vel": self.cmd_meter.rate(),
                  "loop_overruns": self.loop.overruns if self.loop is not None else 0}
        level = "warn" if (any(self.nav.stops.values()) and self.nav.navigating) or not self.active else "ok"
        stamp = node_now(self)
        self.diag_pub.publish(msgs.diagnostics_msg(stamp, [msgs.diagnostic_status(
            "streamvln_nav", values, level, "" if self.active else "inactive: base stopped")]))


#: the parameters this node declares (checked by `slowfast` before anything starts)
PARAMS = StreamVLNNavParams


def main(args=None) -> int:
    return run_node(StreamVLNNav, args)


if __name__ == "__main__":
    raise SystemExit(main())

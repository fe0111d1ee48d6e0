"""nav_sim_node: the MuJoCo navigation sim served over ROS 2, in real time.

Publishes what a mobile robot with a RealSense publishes: ``odom`` (nav_msgs/Odometry, base in
the odom frame), ``camera/color/image_raw`` (rgb8), ``camera/color/camera_info``,
``camera/aligned_depth_to_color/image_raw`` (16UC1 mm), plus ``/clock``, ``/diagnostics``
(1 Hz) and ``nav_sim/episode`` (latched JSON: start with the instruction and goal, end with
the metrics). Subscribes ``cmd_vel`` (Twist; the base stops when no command came for
``cmd_timeout`` s; non-finite commands are rejected and counted) and ``nav/status`` (the nav
node's episode events: ``stop`` ends the episode).

Each episode publishes its instruction on ``instruction`` (std_msgs/String) once a subscriber
is there. The episode ends on the agent's STOP or after ``episode_seconds``; the executed path
is scored against the reference path (NE, SR, OS, SPL, nDTW) and, with ``out_dir``, written as
``episode_NNN.json`` + ``episode_NNN.png`` and ``summary.json``.

The sim, its episodes, their timing and their scoring are ``sim.nav.live.LiveNavSim``, without
ROS: the base is integrated at ``physics_hz`` in its own thread, locked to the wall clock, and
the camera renders in another from a snapshot of the state (``sim.render.SnapshotRenderer``).
This node hands it the commands and the STOPs, and publishes what it hands out, stamped with
the ROS time of its capture.
"""
from __future__ import annotations

import dataclasses
import time

import rclpy
from diagnostic_msgs.msg import DiagnosticArray
from geometry_msgs.msg import Twist
from nav_msgs.msg import Odometry
from rclpy.node import Node
from rosgraph_msgs.msg import Clock
from sensor_msgs.msg import CameraInfo, Image
from std_msgs.msg import String

from sim.nav.live import LiveNavConfig, Outlets
from slowfast_ros import msgs, qos
from slowfast_ros.node_util import RateMeter, declare_params, node_now, flush_events, param, run_node


@dataclasses.dataclass
class NavSimNodeParams(LiveNavConfig):
    """The live sim's values (``sim.nav.live.LiveNavConfig``, flat names) and the frames."""

    odom_frame: str = param("odom", "frame of the odometry (the sim's world frame)")
    base_frame: str = param("base_link", "frame of the base")
    camera_frame: str = param("camera_color_optical_frame", "frame of the camera images")


class NavSimNode(Node):
    def __init__(self):
        super().__init__("nav_sim_node")
        from sim.nav.live import LiveNavSim  # noqa: PLC0415 - core import at construction

        self.p: NavSimNodeParams = declare_params(self, NavSimNodeParams())
        p = self.p
        self.exit_code = 0
        self.rejected_cmds = 0
        self.meters = {"odom": RateMeter(), "image": RateMeter(), "cmd_vel": RateMeter()}

        pub = qos.SENSOR_PUB
        self.odom_pub = self.create_publisher(Odometry, "odom", pub)
        self.image_pub = self.create_publisher(Image, "camera/color/image_raw", pub)
        self.info_pub = self.create_publisher(CameraInfo, "camera/color/camera_info", pub)
        self.depth_pub = self.create_publisher(Image, "camera/aligned_depth_to_color/image_raw", pub)
        self.instr_pub = self.create_publisher(String, "instruction", qos.COMMAND)
        self.clock_pub = self.create_publisher(Clock, "/clock", 10)
        self.episode_pub = self.create_publisher(String, "nav_sim/episode", qos.EVENTS)
        self.diag_pub = self.create_publisher(DiagnosticArray, "/diagnostics", 10)
        self.create_subscription(Twist, "cmd_vel", self._on_cmd, qos.COMMAND)
        self.create_subscription(String, "nav/status", self._on_status, qos.LATCHED)
        self.create_timer(1.0, self._publish_diagnostics)

        self.sim = LiveNavSim(p, Outlets(
            now=self._now, odometry=self._publish_odom, frame=self._publish_frame,
            episode=lambda ev: self.episode_pub.publish(msgs.json_msg(ev)),
            instruction=lambda text: self.instr_pub.publish(String(data=text)),
            listeners=self.instr_pub.get_subscription_count, instruction_topic=self.instr_pub.topic_name),
            log=self.get_logger())
        self.env = self.sim.env
        K = self.env.intrinsics
        self.intr = msgs.CameraIntrinsics(p.nav.camera_width, p.nav.camera_height, K[0, 0], K[1, 1], K[0, 2], K[1, 2],
                                          p.camera_frame)
        self.sim.start(self._on_done)
        self.get_logger().info(f"nav sim: {p.nav.layout.rooms_x}x{p.nav.layout.rooms_y} rooms, "
                               f"camera {p.nav.camera_width}x{p.nav.camera_height} "
                               f"@ {p.camera_hz} Hz, episodes {p.episodes or 'unbounded'}")

    # ------------------------------------------------------------ callbacks (store only)

    def _on_cmd(self, msg: Twist) -> None:
        try:
            v, w = msgs.twist_from_msg(msg)
        except ValueError as exc:
            self.rejected_cmds += 1
            self.get_logger().warning(f"cmd_vel rejected: {exc}", throttle_duration_sec=1.0)
            return
        self.sim.command(v, w, time.monotonic())
        self.meters["cmd_vel"].tick()

    def _on_status(self, msg: String) -> None:
        try:
            ev = msgs.json_from_msg(msg)
        except ValueError:
            return
        if ev.get("event") == "stop":
            self.sim.request_stop(ev.get("instruction"))

    def _on_done(self, error: BaseException | None) -> None:
        """The sim's episodes are over (or it failed): the node exits."""
        if error is not None and self.context.ok():
            self.get_logger().error(f"physics thread stopped: {error!r}")
            self.exit_code = 1
        if rclpy.ok():
            flush_events(self.episode_pub)     # the last episode's end reaches its readers
            rclpy.try_shutdown()

    # ------------------------------------------------------------ what the sim hands out

    _now = node_now

    def _publish_odom(self, stamp: float, pose, velocity) -> None:
        p = self.p
        self.odom_pub.publish(msgs.odometry_msg(stamp, p.odom_frame, p.base_frame, pose, velocity))
        self.clock_pub.publish(Clock(clock=msgs.to_time(stamp)))
        self.meters["odom"].tick()

    def _publish_frame(self, stamp: float, rgb, depth) -> None:
        f = self.p.camera_frame
        self.image_pub.publish(msgs.image_msg(stamp, f, rgb, "rgb8"))
        self.depth_pub.publish(msgs.depth_msg_mm(stamp, f, depth))
        self.info_pub.publish(msgs.camera_info_msg(stamp, self.intr))
        self.meters["image"].tick()

    # ------------------------------------------------------------ diagnostics, shutdown

    def _publish_diagnostics(self) -> None:
        values = {f"rate/{k}": m.rate() for k, m in self.meters.items()}
        values.update({"episode": self.sim.episode, "rejected/cmd_vel": self.rejected_cmds,
                       "camera_dropped": self.sim.camera_dropped, "bumps": self.env.bumps,
                       "x": float(self.env.pose[0]), "y": float(self.env.pose[1]), "yaw": float(self.env.pose[2])})
        self.diag_pub.publish(msgs.diagnostics_msg(self._now(), [msgs.diagnostic_status("nav_sim_node", values)]))

    def close(self) -> None:
        self.sim.close()


#: the parameters this node declares (checked by `slowfast` before anything starts)
PARAMS = NavSimNodeParams


def main(args=None) -> int:
    return run_node(NavSimNode, args)


if __name__ == "__main__":
    raise SystemExit(main())
